// Package services holds berthd's ttrpc services, one package each, over
// the daemon's stores and supervisor. They are wired explicitly in
// cmd/daemon: each has a constructor taking exactly what it uses, and
// registers itself on a ttrpc server with the generated Register function.
//
// Every service validates its input at the edge (identifiers, label bounds,
// sizes) and returns errors of the errdefs classes; the server interceptor
// turns them into ttrpc status codes.
package services

import (
	"context"

	"google.golang.org/protobuf/proto"
)

// Publisher publishes an event in the namespace of ctx.
type Publisher interface {
	Publish(ctx context.Context, topic string, event proto.Message) error
}
