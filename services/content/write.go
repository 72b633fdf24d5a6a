package content

import (
	"context"
	"errors"
	"fmt"
	"io"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/apiconv"
	"github.com/berthrt/berth/leases"
	api "github.com/berthrt/berth/proto/content/v1"
	"github.com/berthrt/berth/services"
)

// Write serves one Write stream: the protocol is documented on
// WriteContentRequest. The stream owns its Writer, and so the ref, until
// it ends; a client that goes away leaves the ingest to be resumed.
func (s *service) Write(ctx context.Context, stream api.Content_WriteServer) (err error) {
	defer errdefs.StreamCall(ctx, "/berth.services.content.v1.Content/Write").Done(&err)
	return errdefs.ToTTRPC(s.write(ctx, stream))
}

func (s *service) write(ctx context.Context, stream api.Content_WriteServer) (err error) {
	req, err := stream.Recv()
	if err == io.EOF {
		return fmt.Errorf("write: the stream ended before its first request: %w", errdefs.ErrInvalidArgument)
	} else if err != nil {
		return err
	}
	ctx, err = services.StreamNamespace(ctx, req.GetNamespace())
	if err != nil {
		return err
	}
	if lease := req.GetLease(); lease != "" {
		ctx = leases.WithLease(ctx, lease)
	}
	ref := req.GetRef()
	w, err := s.store.Writer(ctx, content.WithRef(ref),
		content.WithDescriptor(ocispec.Descriptor{Size: req.GetTotal(), Digest: digest.Digest(req.GetExpected())}))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, w.Close()) }()
	for {
		if req.GetRef() != "" && req.GetRef() != ref {
			return fmt.Errorf("write %q: a request of the stream names ingest %q: %w", ref, req.GetRef(), errdefs.ErrInvalidArgument)
		}
		resp, done, err := handleWrite(ctx, w, req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		if done {
			return nil
		}
		req, err = stream.Recv()
		if err == io.EOF {
			return nil // the client closed without COMMIT: the ingest stays
		} else if err != nil {
			return err
		}
	}
}

// handleWrite acts on one request; done says the stream is over.
func handleWrite(ctx context.Context, w content.Writer, req *api.WriteContentRequest) (*api.WriteContentResponse, bool, error) {
	st, err := w.Status()
	if err != nil {
		return nil, false, err
	}
	switch req.GetAction() {
	case api.WriteAction_WRITE_ACTION_STAT:
		return apiconv.WriteResponse(req.GetAction(), st, w.Digest()), false, nil
	case api.WriteAction_WRITE_ACTION_WRITE, api.WriteAction_WRITE_ACTION_COMMIT:
	default:
		return nil, false, fmt.Errorf("write %q: unknown action %v: %w", st.Ref, req.GetAction(), errdefs.ErrInvalidArgument)
	}
	if len(req.GetData()) > content.ChunkSize {
		return nil, false, fmt.Errorf("write %q: %d bytes in one request, more than %d: %w", st.Ref, len(req.GetData()), content.ChunkSize, errdefs.ErrInvalidArgument)
	}
	switch off := req.GetOffset(); {
	case off > st.Offset:
		return nil, false, fmt.Errorf("write %q: offset %d is past the ingest's offset %d: %w", st.Ref, off, st.Offset, errdefs.ErrFailedPrecondition)
	case off < 0:
		return nil, false, fmt.Errorf("write %q: negative offset %d: %w", st.Ref, off, errdefs.ErrInvalidArgument)
	case off < st.Offset:
		if err := w.Truncate(off); err != nil {
			return nil, false, err
		}
	}
	if len(req.GetData()) > 0 {
		if _, err := w.Write(req.GetData()); err != nil {
			return nil, false, err
		}
	}
	if st, err = w.Status(); err != nil {
		return nil, false, err
	}
	if req.GetAction() == api.WriteAction_WRITE_ACTION_WRITE {
		return apiconv.WriteResponse(req.GetAction(), st, w.Digest()), false, nil
	}
	expected := digest.Digest(req.GetExpected())
	if err := w.Commit(ctx, req.GetTotal(), expected, content.WithLabels(req.GetLabels())); err != nil {
		return nil, false, err
	}
	// The blob's digest: the one verified, else the one computed.
	dgst := w.Digest()
	if expected != "" {
		dgst = expected
	} else if st.Expected != "" {
		dgst = st.Expected
	}
	return apiconv.WriteResponse(req.GetAction(), st, dgst), true, nil
}
