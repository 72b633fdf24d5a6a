// Package proxy is a snapshots.Snapshotter over the snapshots API
// (berth.services.snapshots.v1): berthd reaches an external snapshotter
// program through it (a `[proxy_plugins.NAME] type = "snapshot"` entry of
// its config), and the Go client reaches berthd's snapshotters.
//
// Every error that crosses the API comes back with its class
// (errors.Is(err, errdefs.ErrNotFound) works) whether or not the ttrpc
// client converts errors itself.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/apiconv"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/namespaces"
	api "github.com/berthrt/berth/proto/snapshots/v1"
	"github.com/berthrt/berth/snapshots"
)

// Opt configures a proxy.
type Opt func(*proxy)

// WithNamespace sets how List's namespace is found (ttrpc sends no
// metadata with a stream): by default the context's, if any.
func WithNamespace(fn func(context.Context) (string, error)) Opt {
	return func(p *proxy) { p.namespace = fn }
}

// WithClose sets what Close does; by default nothing.
func WithClose(fn func() error) Opt {
	return func(p *proxy) { p.close = fn }
}

// New returns the snapshotter name served over conn; Close closes conn.
// An empty name means the server's default snapshotter.
func New(conn *ttrpc.Client, name string) snapshots.Snapshotter {
	client := api.NewSnapshotsClient(conn)
	return NewFromClient(func() api.SnapshotsClient { return client }, name, WithClose(conn.Close))
}

// NewFromClient returns the snapshotter name served by the API client that
// client returns; it is called once per call, so that a caller that
// reconnects can hand out the current connection's.
func NewFromClient(client func() api.SnapshotsClient, name string, opts ...Opt) snapshots.Snapshotter {
	p := &proxy{client: client, name: name, namespace: contextNamespace, close: func() error { return nil }}
	for _, opt := range opts {
		opt(p)
	}
	return p
}

type proxy struct {
	client    func() api.SnapshotsClient
	name      string
	namespace func(context.Context) (string, error)
	close     func() error
}

func contextNamespace(ctx context.Context) (string, error) {
	ns, _ := namespaces.Namespace(ctx)
	return ns, nil
}

func (p *proxy) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	if err := validKey(key); err != nil {
		return snapshots.Info{}, err
	}
	resp, err := p.client().Stat(ctx, &api.StatSnapshotRequest{Snapshotter: p.name, Key: key})
	if err != nil {
		return snapshots.Info{}, errdefs.FromTTRPC(err)
	}
	return apiconv.SnapshotInfoFromProto(resp.GetInfo()), nil
}

func (p *proxy) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	if err := validKey(info.Name); err != nil {
		return snapshots.Info{}, err
	}
	resp, err := p.client().Update(ctx, &api.UpdateSnapshotRequest{
		Snapshotter: p.name,
		Info:        apiconv.SnapshotInfoToProto(info),
		UpdateMask:  &fieldmaskpb.FieldMask{Paths: fieldpaths},
	})
	if err != nil {
		return snapshots.Info{}, errdefs.FromTTRPC(err)
	}
	return apiconv.SnapshotInfoFromProto(resp.GetInfo()), nil
}

func (p *proxy) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	if err := validKey(key); err != nil {
		return snapshots.Usage{}, err
	}
	resp, err := p.client().Usage(ctx, &api.UsageRequest{Snapshotter: p.name, Key: key})
	if err != nil {
		return snapshots.Usage{}, errdefs.FromTTRPC(err)
	}
	return snapshots.Usage{Size: resp.GetSize(), Inodes: resp.GetInodes()}, nil
}

func (p *proxy) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	if err := validKey(key); err != nil {
		return nil, err
	}
	resp, err := p.client().Mounts(ctx, &api.MountsRequest{Snapshotter: p.name, Key: key})
	if err != nil {
		return nil, errdefs.FromTTRPC(err)
	}
	return apiconv.MountsFromProto(resp.GetMounts()), nil
}

func (p *proxy) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	info, err := snapshots.ApplyOpts(opts)
	if err != nil {
		return nil, fmt.Errorf("prepare %q: %w", key, err)
	}
	if err := validKeys(key, parent, true); err != nil {
		return nil, err
	}
	resp, err := p.client().Prepare(ctx, &api.PrepareSnapshotRequest{Snapshotter: p.name, Key: key, Parent: parent, Labels: info.Labels})
	if err != nil {
		return nil, errdefs.FromTTRPC(err)
	}
	return apiconv.MountsFromProto(resp.GetMounts()), nil
}

func (p *proxy) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	info, err := snapshots.ApplyOpts(opts)
	if err != nil {
		return nil, fmt.Errorf("view %q: %w", key, err)
	}
	if err := validKeys(key, parent, true); err != nil {
		return nil, err
	}
	resp, err := p.client().View(ctx, &api.ViewSnapshotRequest{Snapshotter: p.name, Key: key, Parent: parent, Labels: info.Labels})
	if err != nil {
		return nil, errdefs.FromTTRPC(err)
	}
	return apiconv.MountsFromProto(resp.GetMounts()), nil
}

func (p *proxy) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	info, err := snapshots.ApplyOpts(opts)
	if err != nil {
		return fmt.Errorf("commit %q: %w", key, err)
	}
	if err := validKeys(name, key, false); err != nil {
		return err
	}
	_, err = p.client().Commit(ctx, &api.CommitSnapshotRequest{Snapshotter: p.name, Name: name, Key: key, Labels: info.Labels})
	return errdefs.FromTTRPC(err)
}

func (p *proxy) Remove(ctx context.Context, key string) error {
	if err := validKey(key); err != nil {
		return err
	}
	_, err := p.client().Remove(ctx, &api.RemoveSnapshotRequest{Snapshotter: p.name, Key: key})
	return errdefs.FromTTRPC(err)
}

// Walk reads the whole list before it calls fn, so that fn may call the
// snapshotter (a stream left open while fn waits on another call would
// hold the server's send).
func (p *proxy) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	ns, err := p.namespace(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := p.client().List(ctx, &api.ListSnapshotsRequest{Snapshotter: p.name, Filters: filters, Namespace: ns})
	if err != nil {
		return streamError(err)
	}
	var infos []snapshots.Info
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		} else if err != nil {
			return streamError(err)
		}
		for _, info := range resp.GetInfo() {
			infos = append(infos, apiconv.SnapshotInfoFromProto(info))
		}
	}
	for _, info := range infos {
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

// Close runs the close function of the proxy (New's: closes the
// connection).
func (p *proxy) Close() error {
	return p.close()
}

// validKey checks a key before it is sent: protobuf cannot carry a string
// that is not UTF-8, and the server would answer with no class.
func validKey(key string) error {
	return snapshots.ValidateKey(key)
}

// validKeys checks two keys; with noneOK the second may be empty (a
// parent that is none).
func validKeys(key, other string, noneOK bool) error {
	if err := validKey(key); err != nil {
		return err
	}
	if noneOK && other == "" {
		return nil
	}
	return validKey(other)
}

// streamError gives a stream's error its class: a closed connection is
// ErrUnavailable.
func streamError(err error) error {
	if errdefs.IsUnavailable(err) {
		return fmt.Errorf("list snapshots: %w", err)
	}
	if errors.Is(err, ttrpc.ErrClosed) {
		return fmt.Errorf("list snapshots: connection closed: %w: %w", errdefs.ErrUnavailable, err)
	}
	return errdefs.FromTTRPC(err)
}
