package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images/platform"
	"github.com/berthrt/berth/images/progress"
	"github.com/berthrt/berth/internal/apiconv"
	transferv1 "github.com/berthrt/berth/proto/transfer/v1"
)

// Progress is one report about one blob of a pull or push: its ingest
// ref, digest, media type, status (waiting, downloading, uploading,
// exists, done) and the bytes moved of its total.
type Progress = progress.Progress

// RemoteOpt configures Pull and Push.
type RemoteOpt func(*remoteOptions) error

type remoteOptions struct {
	platforms   []string
	all         bool
	progress    func(Progress)
	creds       *transferv1.Credentials
	plainHTTP   bool
	concurrency int32
	hostsDir    string
	unpack      bool
	snapshotter string
}

// WithPlatforms pulls, from an index, the manifest of each platform
// ("os/arch[/variant]") instead of linux/amd64; Push takes one platform
// and pushes only its manifest of the image's index.
func WithPlatforms(platforms ...string) RemoteOpt {
	return func(o *remoteOptions) error {
		for _, p := range platforms {
			if _, err := platform.Parse(p); err != nil {
				return err
			}
		}
		o.platforms = append(o.platforms, platforms...)
		return nil
	}
}

// WithPlatform is WithPlatforms with one platform.
func WithPlatform(platform string) RemoteOpt { return WithPlatforms(platform) }

// WithAllPlatforms pulls every manifest of an index.
func WithAllPlatforms() RemoteOpt {
	return func(o *remoteOptions) error {
		o.all = true
		return nil
	}
}

// WithPullProgress sends the progress reports of a pull or push to fn,
// in the goroutine that called Pull or Push. The daemon sends a blob's
// byte count at most every 100 ms, and every change of its status.
func WithPullProgress(fn func(Progress)) RemoteOpt {
	return func(o *remoteOptions) error {
		o.progress = fn
		return nil
	}
}

// WithPushProgress is WithPullProgress, named for Push.
func WithPushProgress(fn func(Progress)) RemoteOpt { return WithPullProgress(fn) }

// WithCredentials authenticates to the registry with a user name and
// password (basic auth, or for a token). They travel to the daemon in
// the request. Without them the daemon uses its Docker config.json.
func WithCredentials(username, password string) RemoteOpt {
	return func(o *remoteOptions) error {
		o.creds = &transferv1.Credentials{Username: username, Password: password}
		return nil
	}
}

// WithPlainHTTP reaches a registry that has no hosts.toml in the daemon's
// config over plain HTTP.
func WithPlainHTTP() RemoteOpt {
	return func(o *remoteOptions) error {
		o.plainHTTP = true
		return nil
	}
}

// WithHostsDir has the daemon read registry hosts' settings (mirrors, TLS,
// plain HTTP) from the hosts.toml folder dir, an absolute path on the
// daemon's host in containerd's layout (dir/HOST[:PORT]/hosts.toml),
// instead of its [registry] config_path.
func WithHostsDir(dir string) RemoteOpt {
	return func(o *remoteOptions) error {
		if !filepath.IsAbs(dir) {
			return fmt.Errorf("hosts dir %q: not an absolute path: %w", dir, errdefs.ErrInvalidArgument)
		}
		o.hostsDir = dir
		return nil
	}
}

// WithPullUnpack has the daemon unpack the pulled image's layers (of the
// first WithPlatforms platform, else linux/amd64) into snapshots named by
// their chain IDs, in WithPullSnapshotter's snapshotter or the daemon's
// default, so that containers can be made from it (WithNewSnapshot). Each
// layer is reported as a Progress of ref "unpack-<digest>", status
// "unpacking", then "unpacked" or "exists".
func WithPullUnpack(o *remoteOptions) error {
	o.unpack = true
	return nil
}

// WithPullSnapshotter names the snapshotter WithPullUnpack unpacks into.
func WithPullSnapshotter(name string) RemoteOpt {
	return func(o *remoteOptions) error {
		o.snapshotter = name
		return nil
	}
}

// WithMaxConcurrentTransfers bounds the blobs moved at once (1 to 16;
// the daemon's default is 3).
func WithMaxConcurrentTransfers(n int) RemoteOpt {
	return func(o *remoteOptions) error {
		if n < 1 || n > 16 {
			return fmt.Errorf("concurrent transfers %d: not in 1…16: %w", n, errdefs.ErrInvalidArgument)
		}
		o.concurrency = int32(n)
		return nil
	}
}

func newRemoteOptions(opts []RemoteOpt) (*remoteOptions, error) {
	o := &remoteOptions{}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if o.all && len(o.platforms) > 0 {
		return nil, fmt.Errorf("WithPlatforms and WithAllPlatforms together: %w", errdefs.ErrInvalidArgument)
	}
	if o.snapshotter != "" && !o.unpack {
		return nil, fmt.Errorf("WithPullSnapshotter without WithPullUnpack: %w", errdefs.ErrInvalidArgument)
	}
	return o, nil
}

// Pull has the daemon fetch the image ref ("busybox" is
// docker.io/library/busybox:latest) into its content store, every byte
// verified, and record it as an image named by the normalised ref. It
// returns that image once it is recorded. Cancelling ctx cancels the
// pull in the daemon; what was fetched stays for the next pull to
// resume.
func (c *Client) Pull(ctx context.Context, ref string, opts ...RemoteOpt) (*Image, error) {
	msg, err := c.pull(ctx, ref, false, opts)
	if err != nil {
		return nil, err
	}
	if msg.GetImage() == nil {
		return nil, fmt.Errorf("pull %.200s: the daemon's last message has no image: %w", ref, errdefs.ErrUnavailable)
	}
	return NewImage(c, apiconv.ImageFromProto(msg.GetImage())), nil
}

// Fetch is Pull without the image: the daemon fetches ref's blobs into its
// content store and records no image, as `ctr content fetch` does. The
// root it returns (ref's index or manifest) is labelled berth.io/gc.root,
// so garbage collection keeps it and what it references until the label
// or the blob is removed.
func (c *Client) Fetch(ctx context.Context, ref string, opts ...RemoteOpt) (ocispec.Descriptor, error) {
	msg, err := c.pull(ctx, ref, true, opts)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if msg.GetFetched() == nil {
		return ocispec.Descriptor{}, fmt.Errorf("fetch %.200s: the daemon's last message has no root: %w", ref, errdefs.ErrUnavailable)
	}
	return apiconv.DescriptorFromProto(msg.GetFetched()), nil
}

// pull runs a Pull call and returns its last message.
func (c *Client) pull(ctx context.Context, ref string, fetchOnly bool, opts []RemoteOpt) (*transferv1.PullProgress, error) {
	o, err := newRemoteOptions(opts)
	if err != nil {
		return nil, err
	}
	ns, err := c.namespace(ctx)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("pull %.200s", ref)
	if fetchOnly {
		what = fmt.Sprintf("fetch %.200s", ref)
	}
	var last *transferv1.PullProgress
	err = c.transfer(ctx, what, func(ctx context.Context, api transferv1.TransferClient) (receiver, error) {
		stream, err := api.Pull(ctx, &transferv1.PullRequest{
			Namespace: ns, Ref: ref, Platforms: o.platforms, AllPlatforms: o.all,
			Credentials: o.creds, PlainHttp: o.plainHTTP, Concurrency: o.concurrency,
			HostsDir: o.hostsDir, FetchOnly: fetchOnly, Unpack: o.unpack, Snapshotter: o.snapshotter,
		})
		if err != nil {
			return nil, err
		}
		return receiveStream(stream.Recv, func(m *transferv1.PullProgress) bool { return m.GetImage() != nil || m.GetFetched() != nil }, &last), nil
	}, o.progress)
	if err != nil {
		return nil, err
	}
	return last, nil
}

// Push has the daemon upload the image whose root is desc (an index or a
// manifest in its content store, e.g. an Image's Target) to ref: the
// blobs the registry lacks, then the manifests, then ref's tag. With one
// WithPlatform and an index, only that platform's manifest is pushed.
func (c *Client) Push(ctx context.Context, ref string, desc ocispec.Descriptor, opts ...RemoteOpt) error {
	o, err := newRemoteOptions(opts)
	if err != nil {
		return err
	}
	if o.all {
		return fmt.Errorf("push: WithAllPlatforms: a push is of the whole image unless one platform is named: %w", errdefs.ErrInvalidArgument)
	}
	ns, err := c.namespace(ctx)
	if err != nil {
		return err
	}
	return c.transfer(ctx, fmt.Sprintf("push %.200s", ref), func(ctx context.Context, api transferv1.TransferClient) (receiver, error) {
		stream, err := api.Push(ctx, &transferv1.PushRequest{
			Namespace: ns, Ref: ref, Target: apiconv.DescriptorToProto(desc), Platforms: o.platforms,
			Credentials: o.creds, PlainHttp: o.plainHTTP, Concurrency: o.concurrency, HostsDir: o.hostsDir,
		})
		if err != nil {
			return nil, err
		}
		return receiveStream(stream.Recv, func(m *transferv1.PushProgress) bool { return m.GetPushed() != nil }, nil), nil
	}, o.progress)
}

// receiver returns the next message of a transfer stream: its progress
// reports, and whether it is the last one.
type receiver func() (progress []*transferv1.Progress, last bool, err error)

// receiveStream is the receiver of a stream whose messages carry progress and
// whose last message is the one isLast picks; that one is stored in
// *last when last is not nil.
func receiveStream[M interface{ GetProgress() []*transferv1.Progress }](recv func() (M, error), isLast func(M) bool, last *M) receiver {
	return func() ([]*transferv1.Progress, bool, error) {
		msg, err := recv()
		if err != nil {
			return nil, false, err
		}
		if !isLast(msg) {
			return msg.GetProgress(), false, nil
		}
		if last != nil {
			*last = msg
		}
		return msg.GetProgress(), true, nil
	}
}

// transfer runs one transfer call over a connection of its own, so that
// when ctx is cancelled closing the connection cancels the call in the
// daemon (ttrpc v1.2 has no other way to cancel a stream). It passes the
// progress reports to fn until the last message.
func (c *Client) transfer(ctx context.Context, what string, start func(context.Context, transferv1.TransferClient) (receiver, error), fn func(Progress)) error {
	tc, err := c.dial()
	if err != nil {
		return err
	}
	defer tc.Close()
	recv, err := start(ctx, transferv1.NewTransferClient(tc))
	if err != nil {
		return transferError(ctx, what, err)
	}
	for {
		progress, last, err := recv()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: the daemon ended the stream without a result: %w", what, errdefs.ErrUnavailable)
		}
		if err != nil {
			return transferError(ctx, what, err)
		}
		if fn != nil {
			for _, p := range progress {
				fn(apiconv.ProgressFromProto(p))
			}
		}
		if last {
			return nil
		}
	}
}

// transferError says why a transfer stream failed: ctx's error when it
// ended, else the daemon's, with its class.
func transferError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, context.Cause(ctx))
	}
	return streamError(what, err)
}
