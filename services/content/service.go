// Package content serves berth.services.content.v1 over a content.Store
// (in berthd, the namespaced store of package metadata).
package content

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/containerd/ttrpc"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/apiconv"
	api "github.com/berthrt/berth/proto/content/v1"
	"github.com/berthrt/berth/services"
)

type service struct {
	store content.Store
}

// Register serves the content API over store on srv. Errors of the unary
// calls are converted by the server's interceptor; the streaming calls
// convert their own: ttrpc has no stream interceptor for that edge.
func Register(srv *ttrpc.Server, store content.Store) {
	api.RegisterContentService(srv, &service{store: store})
}

func (s *service) Info(ctx context.Context, req *api.InfoRequest) (*api.InfoResponse, error) {
	info, err := s.store.Info(ctx, digest.Digest(req.GetDigest()))
	if err != nil {
		return nil, err
	}
	return &api.InfoResponse{Info: apiconv.ContentInfoToProto(info)}, nil
}

func (s *service) Update(ctx context.Context, req *api.UpdateRequest) (*api.UpdateResponse, error) {
	if req.GetInfo() == nil {
		return nil, fmt.Errorf("info is required: %w", errdefs.ErrInvalidArgument)
	}
	info, err := s.store.Update(ctx, apiconv.ContentInfoFromProto(req.GetInfo()), req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, err
	}
	return &api.UpdateResponse{Info: apiconv.ContentInfoToProto(info)}, nil
}

func (s *service) List(ctx context.Context, req *api.ListContentRequest, stream api.Content_ListServer) (err error) {
	defer errdefs.StreamCall(ctx, "/berth.services.content.v1.Content/List").Done(&err)
	return errdefs.ToTTRPC(s.list(ctx, req, stream))
}

func (s *service) list(ctx context.Context, req *api.ListContentRequest, stream api.Content_ListServer) error {
	ctx, err := services.StreamNamespace(ctx, req.GetNamespace())
	if err != nil {
		return err
	}
	batch := services.NewBatcher(func(infos []*api.Info) error {
		return stream.Send(&api.ListContentResponse{Info: infos})
	})
	err = s.store.Walk(ctx, func(info content.Info) error {
		return batch.Add(apiconv.ContentInfoToProto(info))
	}, req.GetFilters()...)
	if err != nil {
		return err
	}
	return batch.Flush()
}

func (s *service) Delete(ctx context.Context, req *api.DeleteContentRequest) (*emptypb.Empty, error) {
	if err := s.store.Delete(ctx, digest.Digest(req.GetDigest())); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (s *service) Read(ctx context.Context, req *api.ReadContentRequest, stream api.Content_ReadServer) (err error) {
	defer errdefs.StreamCall(ctx, "/berth.services.content.v1.Content/Read").Done(&err)
	return errdefs.ToTTRPC(s.read(ctx, req, stream))
}

func (s *service) read(ctx context.Context, req *api.ReadContentRequest, stream api.Content_ReadServer) (err error) {
	ctx, err = services.StreamNamespace(ctx, req.GetNamespace())
	if err != nil {
		return err
	}
	dgst := digest.Digest(req.GetDigest())
	if req.GetOffset() < 0 || req.GetSize() < 0 {
		return fmt.Errorf("read %s: negative offset %d or size %d: %w", dgst, req.GetOffset(), req.GetSize(), errdefs.ErrInvalidArgument)
	}
	ra, err := s.store.ReaderAt(ctx, ocispec.Descriptor{Digest: dgst})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, ra.Close()) }()
	off, end := req.GetOffset(), ra.Size()
	if off > end {
		return fmt.Errorf("read %s: offset %d is past its end (%d bytes): %w", dgst, off, end, errdefs.ErrInvalidArgument)
	}
	if req.GetSize() > 0 && req.GetSize() < end-off {
		end = off + req.GetSize()
	}
	buf := make([]byte, min(content.ChunkSize, end-off))
	for off < end {
		n, err := ra.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
		if n > 0 {
			// Send marshals before it returns, so buf can be reused.
			if err := stream.Send(&api.ReadContentResponse{Offset: off, Data: buf[:n]}); err != nil {
				return err
			}
			off += int64(n)
		}
		if err != nil && (err != io.EOF || off < end) {
			return fmt.Errorf("read %s at %d: %w", dgst, off, err)
		}
	}
	return nil
}

func (s *service) Status(ctx context.Context, req *api.StatusRequest) (*api.StatusResponse, error) {
	st, err := s.store.Status(ctx, req.GetRef())
	if err != nil {
		return nil, err
	}
	return &api.StatusResponse{Status: apiconv.ContentStatusToProto(st)}, nil
}

func (s *service) ListStatuses(ctx context.Context, req *api.ListStatusesRequest) (*api.ListStatusesResponse, error) {
	list, err := s.store.ListStatuses(ctx, req.GetFilters()...)
	if err != nil {
		return nil, err
	}
	resp := &api.ListStatusesResponse{Statuses: make([]*api.Status, 0, len(list))}
	for _, st := range list {
		resp.Statuses = append(resp.Statuses, apiconv.ContentStatusToProto(st))
	}
	return resp, nil
}

func (s *service) Abort(ctx context.Context, req *api.AbortRequest) (*emptypb.Empty, error) {
	if err := s.store.Abort(ctx, req.GetRef()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}
