// Package namespaces serves berth.services.namespaces.v1 over the metadata
// store.
package namespaces

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strings"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/events/topics"
	"github.com/berthrt/berth/filters"
	nsctx "github.com/berthrt/berth/namespaces"
	eventsv1 "github.com/berthrt/berth/proto/events/v1"
	api "github.com/berthrt/berth/proto/namespaces/v1"
	"github.com/berthrt/berth/services"
	"github.com/berthrt/berth/storage/metadata"
)

type service struct {
	store     metadata.NamespaceStore
	publisher services.Publisher
}

// Register serves the namespaces API on srv.
func Register(srv *ttrpc.Server, store metadata.NamespaceStore, publisher services.Publisher) {
	api.RegisterNamespacesService(srv, &service{store: store, publisher: publisher})
}

func (s *service) get(ctx context.Context, name string) (*api.Namespace, error) {
	labels, err := s.store.Labels(ctx, name)
	if err != nil {
		return nil, err
	}
	return &api.Namespace{Name: name, Labels: labels}, nil
}

func (s *service) Get(ctx context.Context, req *api.GetNamespaceRequest) (*api.GetNamespaceResponse, error) {
	ns, err := s.get(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &api.GetNamespaceResponse{Namespace: ns}, nil
}

func (s *service) List(ctx context.Context, req *api.ListNamespacesRequest) (*api.ListNamespacesResponse, error) {
	nss, err := s.list(ctx, req)
	if err != nil {
		return nil, err
	}
	resp := &api.ListNamespacesResponse{Namespaces: nss}
	if err := services.CheckListReply("namespaces", resp); err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *service) ListStream(ctx context.Context, req *api.ListNamespacesRequest, stream api.Namespaces_ListStreamServer) (err error) {
	defer errdefs.StreamCall(ctx, "/berth.services.namespaces.v1.Namespaces/ListStream").Done(&err)
	nss, err := s.list(ctx, req)
	if err != nil {
		return errdefs.ToTTRPC(err)
	}
	return services.SendAll(nss, func(batch []*api.Namespace) error {
		return stream.Send(&api.ListNamespacesResponse{Namespaces: batch})
	})
}

func (s *service) list(ctx context.Context, req *api.ListNamespacesRequest) ([]*api.Namespace, error) {
	filter, err := filters.ParseAll(req.GetFilters()...)
	if err != nil {
		return nil, err
	}
	names, err := s.store.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []*api.Namespace
	for _, name := range names {
		ns, err := s.get(ctx, name)
		if errdefs.IsNotFound(err) {
			continue // deleted since List
		}
		if err != nil {
			return nil, err
		}
		if filter.Match(adaptor(ns)) {
			out = append(out, ns)
		}
	}
	return out, nil
}

func (s *service) Create(ctx context.Context, req *api.CreateNamespaceRequest) (*api.CreateNamespaceResponse, error) {
	ns := req.GetNamespace()
	if ns == nil {
		return nil, fmt.Errorf("namespace is required: %w", errdefs.ErrInvalidArgument)
	}
	if err := s.store.Create(ctx, ns.Name, ns.Labels); err != nil {
		return nil, err
	}
	s.publish(ctx, ns.Name, topics.NamespaceCreate, &eventsv1.NamespaceCreate{Name: ns.Name, Labels: ns.Labels})
	return &api.CreateNamespaceResponse{Namespace: ns}, nil
}

// Update applies the labels named by the mask: "labels.<key>" sets (or,
// when absent from the request, removes) one label; "labels" or no mask
// makes the labels exactly those of the request.
func (s *service) Update(ctx context.Context, req *api.UpdateNamespaceRequest) (*api.UpdateNamespaceResponse, error) {
	want := req.GetNamespace()
	if want == nil {
		return nil, fmt.Errorf("namespace is required: %w", errdefs.ErrInvalidArgument)
	}
	current, err := s.store.Labels(ctx, want.Name)
	if err != nil {
		return nil, err
	}
	changes := map[string]string{} // key → new value; "" removes
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		paths = []string{"labels"}
	}
	for _, p := range paths {
		switch {
		case p == "labels":
			for k := range current {
				changes[k] = ""
			}
			maps.Copy(changes, want.Labels)
		case strings.HasPrefix(p, "labels."):
			key := strings.TrimPrefix(p, "labels.")
			changes[key] = want.Labels[key]
		default:
			return nil, fmt.Errorf("namespace %q: cannot update field %q (only labels): %w", want.Name, p, errdefs.ErrInvalidArgument)
		}
	}
	for k, v := range changes {
		if current[k] == v {
			delete(changes, k)
		}
	}
	if err := s.store.SetLabels(ctx, want.Name, changes); err != nil {
		return nil, err
	}
	ns, err := s.get(ctx, want.Name)
	if err != nil {
		return nil, err
	}
	s.publish(ctx, ns.Name, topics.NamespaceUpdate, &eventsv1.NamespaceUpdate{Name: ns.Name, Labels: ns.Labels})
	return &api.UpdateNamespaceResponse{Namespace: ns}, nil
}

func (s *service) Delete(ctx context.Context, req *api.DeleteNamespaceRequest) (*emptypb.Empty, error) {
	if err := s.store.Delete(ctx, req.GetName()); err != nil {
		return nil, err
	}
	s.publish(ctx, req.GetName(), topics.NamespaceDelete, &eventsv1.NamespaceDelete{Name: req.GetName()})
	return &emptypb.Empty{}, nil
}

// publish reports a namespace event in the namespace it is about; a failure
// to publish does not undo the change, it is logged.
func (s *service) publish(ctx context.Context, ns, topic string, ev proto.Message) {
	if err := s.publisher.Publish(nsctx.WithNamespace(ctx, ns), topic, ev); err != nil {
		slog.WarnContext(ctx, "publish namespace event", "namespace", ns, "topic", topic, "error", err)
	}
}

func adaptor(ns *api.Namespace) filters.Adaptor {
	return filters.AdapterFunc(func(path []string) (string, bool) {
		switch {
		case len(path) == 1 && path[0] == "name":
			return ns.Name, true
		case len(path) == 2 && path[0] == "labels":
			v, ok := ns.Labels[path[1]]
			return v, ok
		}
		return "", false
	})
}
