// Package events serves berth.services.events.v1 over the daemon's event
// exchange.
package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/events"
	api "github.com/berthrt/berth/proto/events/v1"
)

type service struct {
	exchange *events.Exchange
}

// Register serves the events API on srv.
func Register(srv *ttrpc.Server, exchange *events.Exchange) {
	api.RegisterEventsService(srv, &service{exchange: exchange})
}

func (s *service) Publish(ctx context.Context, req *api.PublishRequest) (*emptypb.Empty, error) {
	if req.GetEvent() == nil {
		return nil, fmt.Errorf("publish %q: an event is required: %w", req.GetTopic(), errdefs.ErrInvalidArgument)
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
	if err := s.exchange.Forward(ctx, FromProto(env)); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Subscribe streams matching events until the client goes away or falls
// too far behind. Errors are converted here: ttrpc has no stream
// interceptor for the server's error edge.
func (s *service) Subscribe(ctx context.Context, req *api.SubscribeRequest, stream api.Events_SubscribeServer) error {
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
			if err := stream.Send(ToProto(env)); err != nil {
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

// ToProto converts an exchange envelope to its API form.
func ToProto(env *events.Envelope) *api.Envelope {
	return &api.Envelope{Timestamp: timestamppb.New(env.Timestamp), Namespace: env.Namespace, Topic: env.Topic, Event: env.Event}
}

// FromProto converts an API envelope to the exchange's form.
func FromProto(env *api.Envelope) *events.Envelope {
	return &events.Envelope{Timestamp: env.GetTimestamp().AsTime(), Namespace: env.GetNamespace(), Topic: env.GetTopic(), Event: env.GetEvent()}
}
