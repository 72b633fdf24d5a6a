package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/containerd/ttrpc"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/apiconv"
	contentv1 "github.com/berthrt/berth/proto/content/v1"
)

// ContentStore returns the daemon's content store as a content.Store, the
// interface of the local store, so that code written against one runs
// against the other. Calls act in the namespace of their context, else the
// client's default. Blobs are read and written in chunks of at most
// content.ChunkSize; a ReaderAt reads each ReadAt as one stream.
func (c *Client) ContentStore() content.Store {
	return &remoteContent{client: c, api: contentv1.NewContentClient(c.api().ttrpc)}
}

// remoteContent is a content.Store over the content API.
type remoteContent struct {
	client *Client
	api    contentv1.ContentClient
}

func (s *remoteContent) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	resp, err := s.api.Info(ctx, &contentv1.InfoRequest{Digest: dgst.String()})
	if err != nil {
		return content.Info{}, err
	}
	return apiconv.ContentInfoFromProto(resp.GetInfo()), nil
}

func (s *remoteContent) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	if err := content.ValidateLabels(info.Labels); err != nil {
		return content.Info{}, fmt.Errorf("blob %s: %w", info.Digest, err)
	}
	resp, err := s.api.Update(ctx, &contentv1.UpdateRequest{
		Info:       apiconv.ContentInfoToProto(info),
		UpdateMask: &fieldmaskpb.FieldMask{Paths: fieldpaths},
	})
	if err != nil {
		return content.Info{}, err
	}
	return apiconv.ContentInfoFromProto(resp.GetInfo()), nil
}

func (s *remoteContent) Walk(ctx context.Context, fn content.WalkFunc, filters ...string) error {
	ns, err := s.client.namespace(ctx)
	if err != nil {
		return err
	}
	stream, err := s.api.List(ctx, &contentv1.ListContentRequest{Filters: filters, Namespace: ns})
	if err != nil {
		return streamError("list content", err)
	}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return nil
		} else if err != nil {
			return streamError("list content", err)
		}
		for _, info := range resp.GetInfo() {
			if err := fn(apiconv.ContentInfoFromProto(info)); err != nil {
				return err
			}
		}
	}
}

func (s *remoteContent) Delete(ctx context.Context, dgst digest.Digest) error {
	_, err := s.api.Delete(ctx, &contentv1.DeleteContentRequest{Digest: dgst.String()})
	return err
}

func (s *remoteContent) Status(ctx context.Context, ref string) (content.Status, error) {
	if err := content.ValidateRef(ref); err != nil {
		return content.Status{}, err // and what protobuf cannot carry never leaves
	}
	resp, err := s.api.Status(ctx, &contentv1.StatusRequest{Ref: ref})
	if err != nil {
		return content.Status{}, err
	}
	return apiconv.ContentStatusFromProto(resp.GetStatus()), nil
}

func (s *remoteContent) ListStatuses(ctx context.Context, filters ...string) ([]content.Status, error) {
	resp, err := s.api.ListStatuses(ctx, &contentv1.ListStatusesRequest{Filters: filters})
	if err != nil {
		return nil, err
	}
	var list []content.Status
	for _, st := range resp.GetStatuses() {
		list = append(list, apiconv.ContentStatusFromProto(st))
	}
	return list, nil
}

func (s *remoteContent) Abort(ctx context.Context, ref string) error {
	if err := content.ValidateRef(ref); err != nil {
		return err
	}
	_, err := s.api.Abort(ctx, &contentv1.AbortRequest{Ref: ref})
	return err
}

// ReaderAt checks that the blob exists and learns its size; each ReadAt
// then reads over a stream of its own, with ctx.
func (s *remoteContent) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	ns, err := s.client.namespace(ctx)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx, desc.Digest)
	if err != nil {
		return nil, err
	}
	return &remoteReader{ctx: ctx, api: s.api, ns: ns, dgst: info.Digest, size: info.Size}, nil
}

// ReadBlob reads the whole blob desc over one Read stream, without the
// Info that ReaderAt asks first (one round trip less for each manifest
// and config an image run reads): it asks for one byte more than
// desc.Size, so that a stored blob of another size shows in what arrives,
// and verifies the digest of the bytes. Only when the stored blob is
// larger does it ask Info, for the error to name its size.
func (s *remoteContent) ReadBlob(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	if err := content.ValidateDigest(desc.Digest); err != nil {
		return nil, err
	}
	if desc.Size < 0 || desc.Size > content.MaxReadBlobSize {
		return nil, fmt.Errorf("content %s: a descriptor of %d bytes, not 0 to %d read into memory: %w", desc.Digest, desc.Size, content.MaxReadBlobSize, errdefs.ErrInvalidArgument)
	}
	ns, err := s.client.namespace(ctx)
	if err != nil {
		return nil, err
	}
	// Cancelled on return: a stream left early (a larger blob) ends.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.api.Read(sctx, &contentv1.ReadContentRequest{Digest: desc.Digest.String(), Size: desc.Size + 1, Namespace: ns})
	if err != nil {
		return nil, blobError(desc, streamError("read "+desc.Digest.String(), err))
	}
	buf := make([]byte, 0, desc.Size)
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		} else if err != nil {
			return nil, blobError(desc, streamError("read "+desc.Digest.String(), err))
		}
		data := resp.GetData()
		if resp.GetOffset() != int64(len(buf)) {
			return nil, fmt.Errorf("content %s: the daemon sent %d bytes at %d, expected them at %d: %w", desc.Digest, len(data), resp.GetOffset(), len(buf), errdefs.ErrInternal)
		}
		if int64(len(buf)+len(data)) > desc.Size {
			cancel()
			return nil, s.largerBlob(ctx, desc)
		}
		buf = append(buf, data...)
	}
	if int64(len(buf)) != desc.Size {
		return nil, fmt.Errorf("content %s: the stored blob is %d bytes, the descriptor says %d: %w", desc.Digest, len(buf), desc.Size, errdefs.ErrFailedPrecondition)
	}
	if got := desc.Digest.Algorithm().FromBytes(buf); got != desc.Digest {
		return nil, fmt.Errorf("content %s: the stored bytes have digest %s: %w", desc.Digest, got, errdefs.ErrFailedPrecondition)
	}
	return buf, nil
}

// largerBlob is the error of a stored blob larger than desc says, with
// its size when Info tells it.
func (s *remoteContent) largerBlob(ctx context.Context, desc ocispec.Descriptor) error {
	stored := fmt.Sprintf("more than %d bytes", desc.Size)
	if info, err := s.Info(ctx, desc.Digest); err == nil {
		stored = fmt.Sprintf("%d bytes", info.Size)
	}
	return fmt.Errorf("content %s: the stored blob is %s, the descriptor says %d: %w", desc.Digest, stored, desc.Size, errdefs.ErrFailedPrecondition)
}

// blobError names the blob in err when the daemon's message does not.
func blobError(desc ocispec.Descriptor, err error) error {
	if strings.Contains(err.Error(), desc.Digest.String()) {
		return err
	}
	return fmt.Errorf("content %s: %w", desc.Digest, err)
}

// remoteReader reads a blob over Read streams. It is safe for concurrent
// use: every ReadAt is its own stream.
type remoteReader struct {
	ctx  context.Context
	api  contentv1.ContentClient
	ns   string
	dgst digest.Digest
	size int64
}

func (r *remoteReader) Size() int64  { return r.size }
func (r *remoteReader) Close() error { return nil }

func (r *remoteReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s: negative offset %d: %w", r.dgst, off, errdefs.ErrInvalidArgument)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), r.size-off)
	if want == 0 {
		return 0, nil // size 0 would ask for the whole rest
	}
	stream, err := r.api.Read(r.ctx, &contentv1.ReadContentRequest{Digest: r.dgst.String(), Offset: off, Size: want, Namespace: r.ns})
	if err != nil {
		return 0, streamError("read "+r.dgst.String(), err)
	}
	n := 0
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		} else if err != nil {
			return n, streamError("read "+r.dgst.String(), err)
		}
		data := resp.GetData()
		if resp.GetOffset() != off+int64(n) || int64(n+len(data)) > want {
			return n, fmt.Errorf("read %s: the daemon sent %d bytes at %d, expected them at %d, at most %d: %w",
				r.dgst, len(data), resp.GetOffset(), off+int64(n), want-int64(n), errdefs.ErrInternal)
		}
		n += copy(p[n:], data)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (s *remoteContent) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	var wo content.WriterOpts
	for _, opt := range opts {
		if err := opt(&wo); err != nil {
			return nil, err
		}
	}
	if err := content.ValidateRef(wo.Ref); err != nil {
		return nil, err
	}
	ns, err := s.client.namespace(ctx)
	if err != nil {
		return nil, err
	}
	w := &remoteWriter{ctx: ctx, store: s, ns: ns, ref: wo.Ref, desc: wo.Desc}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

// remoteWriter writes an ingest over a Write stream, one request in flight
// at a time. A failed request ends the stream on the daemon's side; the
// next call opens a new one, resuming the ingest, if the daemon kept it,
// and otherwise finds the Writer closed. Like any io.Writer it is not safe
// for concurrent use.
type remoteWriter struct {
	ctx    context.Context
	store  *remoteContent
	ns     string
	ref    string
	desc   ocispec.Descriptor
	stream contentv1.Content_WriteClient   // nil when no stream is open
	last   *contentv1.WriteContentResponse // the latest response
	closed bool
}

// open starts a stream: its first request names the ingest, and the
// response describes it.
func (w *remoteWriter) open() error {
	stream, err := w.store.api.Write(w.ctx)
	if err != nil {
		return streamError(w.what(), err)
	}
	w.stream = stream
	_, err = w.do(&contentv1.WriteContentRequest{
		Action: contentv1.WriteAction_WRITE_ACTION_STAT, Ref: w.ref, Namespace: w.ns, Lease: leaseOf(w.ctx),
		Total: w.desc.Size, Expected: w.desc.Digest.String(),
	})
	return err
}

// ready makes sure a stream is open, resuming the ingest after a failed
// request ended the previous stream.
func (w *remoteWriter) ready() error {
	if w.closed {
		return fmt.Errorf("%s: writer closed: %w", w.what(), errdefs.ErrFailedPrecondition)
	}
	if w.stream != nil {
		return nil
	}
	if _, err := w.store.Status(w.ctx, w.ref); err != nil {
		if errdefs.IsNotFound(err) {
			w.closed = true
			return fmt.Errorf("%s: the ingest is gone, removed by a failed commit or an abort: %w", w.what(), errdefs.ErrFailedPrecondition)
		}
		return err
	}
	return w.open()
}

// do sends one request and receives its response.
func (w *remoteWriter) do(req *contentv1.WriteContentRequest) (*contentv1.WriteContentResponse, error) {
	if err := w.stream.Send(req); err != nil {
		w.stream = nil
		return nil, streamError(w.what(), err)
	}
	resp, err := w.stream.Recv()
	if err != nil {
		w.stream = nil
		if err == io.EOF {
			err = fmt.Errorf("the daemon ended the stream: %w", errdefs.ErrUnavailable)
		}
		return nil, streamError(w.what(), err)
	}
	w.last = resp
	return resp, nil
}

func (w *remoteWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if err := w.ready(); err != nil {
			return n, err
		}
		chunk := p[n:min(len(p), n+content.ChunkSize)]
		if _, err := w.do(&contentv1.WriteContentRequest{
			Action: contentv1.WriteAction_WRITE_ACTION_WRITE, Offset: w.last.GetOffset(), Data: chunk,
		}); err != nil {
			return n, err
		}
		n += len(chunk)
	}
	return n, nil
}

func (w *remoteWriter) Digest() digest.Digest { return digest.Digest(w.last.GetDigest()) }

func (w *remoteWriter) Status() (content.Status, error) {
	if err := w.ready(); err != nil {
		return content.Status{}, err
	}
	resp, err := w.do(&contentv1.WriteContentRequest{Action: contentv1.WriteAction_WRITE_ACTION_STAT})
	if err != nil {
		return content.Status{}, err
	}
	return apiconv.WriteResponseStatus(w.ref, resp), nil
}

func (w *remoteWriter) Truncate(size int64) error {
	if err := w.ready(); err != nil {
		return err
	}
	if size < 0 || size > w.last.GetOffset() {
		return fmt.Errorf("%s: truncate to %d: must be between 0 and the offset %d: %w", w.what(), size, w.last.GetOffset(), errdefs.ErrInvalidArgument)
	}
	_, err := w.do(&contentv1.WriteContentRequest{Action: contentv1.WriteAction_WRITE_ACTION_WRITE, Offset: size})
	return err
}

func (w *remoteWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	var info content.Info
	for _, opt := range opts {
		if err := opt(&info); err != nil {
			return err
		}
	}
	if err := content.ValidateLabels(info.Labels); err != nil {
		return fmt.Errorf("%s: %w", w.what(), err)
	}
	if err := w.ready(); err != nil {
		return err
	}
	if _, err := w.do(&contentv1.WriteContentRequest{
		Action: contentv1.WriteAction_WRITE_ACTION_COMMIT, Offset: w.last.GetOffset(),
		Total: size, Expected: expected.String(), Labels: info.Labels,
	}); err != nil {
		return err
	}
	w.closed = true
	return w.finish()
}

// Close ends the stream and waits until the daemon has let go of the ref,
// so that a Writer opened next resumes the ingest.
func (w *remoteWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if w.stream == nil {
		return nil
	}
	if err := w.stream.CloseSend(); err != nil {
		w.stream = nil
		return streamError(w.what(), err)
	}
	return w.finish()
}

// finish reads the stream to its end.
func (w *remoteWriter) finish() error {
	defer func() { w.stream = nil }()
	for {
		if _, err := w.stream.Recv(); err == io.EOF {
			return nil
		} else if err != nil {
			return streamError(w.what(), err)
		}
	}
}

func (w *remoteWriter) what() string { return fmt.Sprintf("ingest %q", w.ref) }

// streamError converts an error of a stream: the daemon's status becomes
// its class; a connection that closed is ErrUnavailable.
func streamError(what string, err error) error {
	if errors.Is(err, ttrpc.ErrClosed) {
		return fmt.Errorf("%s: connection closed: %w: %w", what, errdefs.ErrUnavailable, err)
	}
	if errdefs.IsUnavailable(err) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return errdefs.FromTTRPC(err)
}
