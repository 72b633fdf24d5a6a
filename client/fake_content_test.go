package client

import (
	"context"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/errdefs"
	contentv1 "github.com/berthrt/berth/proto/content/v1"
)

// fakeContent serves blobs from memory, Info and Read only, and counts
// the calls (Read in rpcs too: streams pass no interceptor).
type fakeContent struct {
	mu    sync.Mutex
	blobs map[string][]byte // by digest; guarded by mu
	calls int               // Info and Read calls; guarded by mu
	rpcs  *fakeRPCs
}

// put stores data under dgst, which need not be its digest.
func (f *fakeContent) put(dgst digest.Digest, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blobs[dgst.String()] = data
}

// add stores data and returns its digest.
func (f *fakeContent) add(data []byte) digest.Digest {
	d := digest.FromBytes(data)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blobs[d.String()] = data
	return d
}

func (f *fakeContent) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeContent) blob(dgst string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	b, ok := f.blobs[dgst]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", dgst, errdefs.ErrNotFound)
	}
	return b, nil
}

func (f *fakeContent) Info(ctx context.Context, r *contentv1.InfoRequest) (*contentv1.InfoResponse, error) {
	b, err := f.blob(r.Digest)
	if err != nil {
		return nil, err
	}
	return &contentv1.InfoResponse{Info: &contentv1.Info{Digest: r.Digest, Size: int64(len(b))}}, nil
}

// Read converts its error to a status as the daemon's does: a stream
// passes no interceptor.
func (f *fakeContent) Read(ctx context.Context, r *contentv1.ReadContentRequest, srv contentv1.Content_ReadServer) error {
	return errdefs.ToTTRPC(f.read(ctx, r, srv))
}

func (f *fakeContent) read(ctx context.Context, r *contentv1.ReadContentRequest, srv contentv1.Content_ReadServer) error {
	if err := f.rpcs.record(ctx, "/berth.services.content.v1.Content/Read"); err != nil {
		return err
	}
	b, err := f.blob(r.Digest)
	if err != nil {
		return err
	}
	if r.Offset < 0 || r.Offset > int64(len(b)) {
		return fmt.Errorf("offset %d: %w", r.Offset, errdefs.ErrInvalidArgument)
	}
	end := int64(len(b))
	if r.Size > 0 && r.Offset+r.Size < end {
		end = r.Offset + r.Size
	}
	return srv.Send(&contentv1.ReadContentResponse{Offset: r.Offset, Data: b[r.Offset:end]})
}

func (f *fakeContent) Update(context.Context, *contentv1.UpdateRequest) (*contentv1.UpdateResponse, error) {
	return nil, errdefs.ErrNotImplemented
}

func (f *fakeContent) List(context.Context, *contentv1.ListContentRequest, contentv1.Content_ListServer) error {
	return errdefs.ErrNotImplemented
}

func (f *fakeContent) Delete(context.Context, *contentv1.DeleteContentRequest) (*emptypb.Empty, error) {
	return nil, errdefs.ErrNotImplemented
}

func (f *fakeContent) Status(context.Context, *contentv1.StatusRequest) (*contentv1.StatusResponse, error) {
	return nil, errdefs.ErrNotImplemented
}

func (f *fakeContent) ListStatuses(context.Context, *contentv1.ListStatusesRequest) (*contentv1.ListStatusesResponse, error) {
	return nil, errdefs.ErrNotImplemented
}

func (f *fakeContent) Write(context.Context, contentv1.Content_WriteServer) error {
	return errdefs.ErrNotImplemented
}

func (f *fakeContent) Abort(context.Context, *contentv1.AbortRequest) (*emptypb.Empty, error) {
	return nil, errdefs.ErrNotImplemented
}
