// Package events serves berth.services.events.v1 over the daemon's event
// exchange.
package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/events"
	"github.com/berthrt/berth/internal/apiconv"
	nsctx "github.com/berthrt/berth/namespaces"
	api "github.com/berthrt/berth/proto/events/v1"
)

type service struct {
	exchange *events.Exchange
}

// Register serves the events API on srv.
func Register(srv *ttrpc.Server, exchange *events.Exchange) {
	api.RegisterEventsService(srv, &service{exchange: exchange})
}

// reservedTopics are the topic trees the daemon publishes itself; a client
// may not publish or forward into them, so that a subscriber can trust a
// /tasks/exit to come from the daemon.
var reservedTopics = []string{"/tasks/", "/containers/", "/namespaces/", "/images/", "/content/", "/snapshot/", "/leases/"}

func checkTopic(topic string) error {
	for _, r := range reservedTopics {
		if strings.HasPrefix(topic, r) {
			return fmt.Errorf("topic %q: the %s topics are the daemon's own: %w", topic, strings.TrimSuffix(r, "/"), errdefs.ErrPermissionDenied)
		}
	}
	return nil
}

func (s *service) Publish(ctx context.Context, req *api.PublishRequest) (*emptypb.Empty, error) {
	if req.GetEvent() == nil {
		return nil, fmt.Errorf("publish %q: an event is required: %w", req.GetTopic(), errdefs.ErrInvalidArgument)
	}
	if err := checkTopic(req.GetTopic()); err != nil {
		return nil, err
	}
	if err := s.exchange.Publish(ctx, req.GetTopic(), req.GetEvent()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (s *service) Forward(ctx context.Context, req *api.ForwardRequest) (*emptypb.Empty, error) {
	env := req.GetEnvelope()
	if env == nil || env.GetEvent() == nil {
		return nil, fmt.Errorf("forward: an envelope with an event is required: %w", errdefs.ErrInvalidArgument)
	}
	// A relay forwards within the namespace it calls in, never into
	// another one.
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	if env.GetNamespace() != ns {
		return nil, fmt.Errorf("forward: envelope of namespace %q sent in namespace %q: %w", env.GetNamespace(), ns, errdefs.ErrPermissionDenied)
	}
	if err := checkTopic(env.GetTopic()); err != nil {
		return nil, err
	}
	if err := s.exchange.Forward(ctx, apiconv.EnvelopeFromProto(env)); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Subscribe streams matching events until the client goes away or falls
// too far behind. Errors are converted here: ttrpc has no stream
// interceptor for the server's error edge.
func (s *service) Subscribe(ctx context.Context, req *api.SubscribeRequest, stream api.Events_SubscribeServer) (err error) {
	defer errdefs.StreamCall(ctx, "/berth.services.events.v1.Events/Subscribe").Done(&err)
	return errdefs.ToTTRPC(s.subscribe(ctx, req, stream))
}

func (s *service) subscribe(ctx context.Context, req *api.SubscribeRequest, stream api.Events_SubscribeServer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var since time.Time
	if req.GetSince() != nil {
		since = req.GetSince().AsTime()
	}
	envs, errs := s.exchange.SubscribeSince(ctx, since, req.GetFilters()...)
	for {
		select {
		case env := <-envs:
			if err := stream.Send(apiconv.EnvelopeToProto(env)); err != nil {
				return err
			}
		case err := <-errs:
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
	}
}
