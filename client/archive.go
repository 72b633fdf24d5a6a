package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/containerd/platforms"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images/archive/archiveopts"
	"github.com/berthrt/berth/internal/apiconv"
	"github.com/berthrt/berth/internal/transferwire"
	transferv1 "github.com/berthrt/berth/proto/transfer/v1"
)

// Import uploads an OCI image layout or `docker save` archive (a tar, or
// a gzip'd tar) read from r to the daemon, which writes its blobs into
// its content store and records its images, as archive.Import does. It
// returns the images created or updated, in the archive's order.
//
// The daemon works under ctx's lease when it carries one (WithLease),
// else under a lease of its own that it deletes before it answers, so
// garbage collection takes neither half an import nor keeps what a
// failed one left. It records no image unless the whole of r arrived:
// an error reading r, or a cancelled ctx, ends the upload and the import
// with nothing recorded. opts are archive's: WithPlatform,
// WithAllPlatforms, WithNamePrefix, WithIndexName, WithUnpack (the
// daemon unpacks each image once it is recorded, as WithPullUnpack; its
// layers are reported as "unpack-<digest>"), WithProgress (whose
// function is called from a goroutine of Import, one call at a time,
// until Import returns).
func (c *Client) Import(ctx context.Context, r io.Reader, opts ...archiveopts.Opt) ([]*Image, error) {
	const what = "import"
	st, err := archiveopts.ReadOpts(opts...)
	if err != nil {
		return nil, err
	}
	if len(st.Images) > 0 {
		return nil, fmt.Errorf("import: WithImages is an option of Export: %w", errdefs.ErrInvalidArgument)
	}
	ns, err := c.namespace(ctx)
	if err != nil {
		return nil, err
	}
	first := &transferv1.ImportOptions{
		Namespace: ns, AllPlatforms: st.AllPlatforms,
		NamePrefix: st.NamePrefix, IndexName: st.IndexName, Lease: leaseOf(ctx),
		Unpack: st.Unpack, Snapshotter: st.Snapshotter,
	}
	if st.Platform != nil {
		first.Platforms = []string{platforms.Format(*st.Platform)}
	}
	// A connection of its own: closing it is how an upload that fails on
	// this side ends the call in the daemon.
	tc, err := c.dial()
	if err != nil {
		return nil, err
	}
	defer tc.Close()
	stream, err := transferv1.NewTransferClient(tc).Import(ctx)
	if err != nil {
		return nil, transferError(ctx, what, err)
	}
	if err := stream.Send(&transferv1.ImportRequest{Options: first}); err != nil {
		return nil, transferError(ctx, what, err)
	}
	rc := newImportReceiver(stream, st.Progress)
	go rc.run()
	if err := upload(ctx, stream, rc, r); err != nil {
		var local *localError
		if errors.As(err, &local) {
			return nil, local.err // returning closes tc, which ends the call
		}
		// The stream failed: the daemon's reason, when it gave one, comes
		// with the stream's end.
		<-rc.done
		if rc.err != nil {
			return nil, transferError(ctx, what, rc.err)
		}
		return nil, err
	}
	<-rc.done
	if rc.err != nil {
		return nil, transferError(ctx, what, rc.err)
	}
	out := make([]*Image, 0, len(rc.result.GetImages()))
	for _, i := range rc.result.GetImages() {
		out = append(out, NewImage(c, apiconv.ImageFromProto(i)))
	}
	return out, nil
}

// upload sends r's bytes over stream in chunks of at most
// transferwire.ChunkSize, keeping at most transferwire.ImportWindow bytes
// unacknowledged, then the end. It stops early when the receiver has
// ended (the daemon failed the import).
func upload(ctx context.Context, stream transferv1.Transfer_ImportClient, rc *importReceiver, r io.Reader) error {
	buf := make([]byte, transferwire.ChunkSize)
	var sent int64
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			for sent+int64(n)-rc.acked() > transferwire.ImportWindow {
				select {
				case <-rc.ack:
				case <-rc.done:
					return errors.New("import: the daemon ended the upload")
				case <-ctx.Done():
					return &localError{fmt.Errorf("import: %w", context.Cause(ctx))}
				}
			}
			// Send marshals the message before it returns: buf is free.
			if err := stream.Send(&transferv1.ImportRequest{Data: buf[:n]}); err != nil {
				return streamError("import", err)
			}
			sent += int64(n)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return &localError{fmt.Errorf("import: read the archive after %d bytes: %w", sent, rerr)}
		}
	}
	if err := stream.Send(&transferv1.ImportRequest{End: &transferv1.ImportEnd{Size: sent}}); err != nil {
		return streamError("import", err)
	}
	if err := stream.CloseSend(); err != nil {
		return streamError("import", err)
	}
	return nil
}

// localError is an upload's failure on the client's side: reading the
// archive, or ctx.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// importReceiver reads an Import stream's responses as they come (the
// daemon must never find the stream's buffer full): its goroutine (run)
// owns Recv, calls the progress function, and signals acknowledgements.
type importReceiver struct {
	stream   transferv1.Transfer_ImportClient
	progress func(Progress)

	mu       sync.Mutex // guards received
	received int64      // the latest acknowledgement

	ack    chan struct{} // an acknowledgement arrived; buffered 1
	done   chan struct{} // closed when run returns
	result *transferv1.ImportResult
	err    error // run's result, read after done
}

func newImportReceiver(stream transferv1.Transfer_ImportClient, progress func(Progress)) *importReceiver {
	return &importReceiver{stream: stream, progress: progress, ack: make(chan struct{}, 1), done: make(chan struct{})}
}

func (rc *importReceiver) run() {
	defer close(rc.done)
	for {
		msg, err := rc.stream.Recv()
		if errors.Is(err, io.EOF) {
			rc.err = fmt.Errorf("the daemon ended the stream without a result: %w", errdefs.ErrUnavailable)
			return
		}
		if err != nil {
			rc.err = err
			return
		}
		if rc.progress != nil {
			for _, p := range msg.GetProgress() {
				rc.progress(apiconv.ProgressFromProto(p))
			}
		}
		if n := msg.GetReceived(); n > 0 {
			rc.mu.Lock()
			rc.received = max(rc.received, n)
			rc.mu.Unlock()
			select {
			case rc.ack <- struct{}{}:
			default: // a signal is pending already
			}
		}
		if msg.GetResult() != nil {
			rc.result = msg.GetResult()
			return
		}
	}
}

func (rc *importReceiver) acked() int64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.received
}

// Export has the daemon write the images of archive.WithImages (e.g.
// archive.WithImages(img.Metadata())) as an OCI image layout tar, as
// archive.Export does, and copies it to w as it streams in. An image
// with a target is exported as given, so an image deleted meanwhile
// still exports while its blobs last. WithPlatform and WithAllPlatforms
// choose an index's manifests; WithProgress's function is called from
// Export's goroutine. It returns nil only when w received the whole
// archive, checked against the size and digest the daemon ends with; on
// an error what was written to w is to be thrown away. Blobs that are
// missing are ErrNotFound before anything is written.
func (c *Client) Export(ctx context.Context, w io.Writer, opts ...archiveopts.Opt) error {
	const what = "export"
	st, err := archiveopts.ReadOpts(opts...)
	if err != nil {
		return err
	}
	switch {
	case st.NamePrefix != "":
		return fmt.Errorf("export: WithNamePrefix is an option of Import: %w", errdefs.ErrInvalidArgument)
	case st.IndexName != "":
		return fmt.Errorf("export: WithIndexName is an option of Import: %w", errdefs.ErrInvalidArgument)
	case len(st.Images) == 0:
		return fmt.Errorf("export: no image (WithImages): %w", errdefs.ErrInvalidArgument)
	}
	ns, err := c.namespace(ctx)
	if err != nil {
		return err
	}
	req := &transferv1.ExportRequest{Namespace: ns, AllPlatforms: st.AllPlatforms, Progress: st.Progress != nil}
	if st.Platform != nil {
		req.Platforms = []string{platforms.Format(*st.Platform)}
	}
	for _, img := range st.Images {
		req.Images = append(req.Images, apiconv.ImageToProto(img))
	}
	tc, err := c.dial()
	if err != nil {
		return err
	}
	defer tc.Close()
	stream, err := transferv1.NewTransferClient(tc).Export(ctx, req)
	if err != nil {
		return transferError(ctx, what, err)
	}
	sum := sha256.New()
	var size int64
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("export: the daemon ended the stream after %d bytes without its end: the archive is truncated: %w", size, errdefs.ErrUnavailable)
		}
		if err != nil {
			return transferError(ctx, what, err)
		}
		if st.Progress != nil {
			for _, p := range msg.GetProgress() {
				st.Progress(apiconv.ProgressFromProto(p))
			}
		}
		if data := msg.GetData(); len(data) > 0 {
			if _, err := w.Write(data); err != nil {
				return fmt.Errorf("export: write the archive: %w", err)
			}
			sum.Write(data)
			size += int64(len(data))
		}
		if end := msg.GetEnd(); end != nil {
			got := "sha256:" + hex.EncodeToString(sum.Sum(nil))
			if end.GetSize() != size || end.GetDigest() != got {
				return fmt.Errorf("export: the daemon sent %d bytes (%s), its end says %d (%s): %w",
					size, got, end.GetSize(), end.GetDigest(), errdefs.ErrInternal)
			}
			return nil
		}
	}
}
