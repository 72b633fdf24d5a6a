// Package namespaces carries the namespace of a request on its context and
// across ttrpc as request metadata. Every object berth keeps lives in exactly
// one namespace; a call without one is refused, never defaulted silently on
// the server side.
package namespaces

import (
	"context"
	"fmt"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/internal/ctxmd"
)

const (
	// Default is the namespace clients use when they are given none.
	Default = "default"
	// MetadataKey is the ttrpc request metadata key that carries the
	// namespace from client to daemon.
	MetadataKey = "berth-namespace"
)

// carrier carries the namespace (package ctxmd).
var carrier = ctxmd.NewKey(MetadataKey)

// WithNamespace returns a context carrying ns, for this process and, through
// ttrpc metadata, for the daemon the context's calls go to.
func WithNamespace(ctx context.Context, ns string) context.Context {
	return carrier.With(ctx, ns)
}

// Namespace returns the namespace of ctx: the value set by WithNamespace, or
// failing that the one received in ttrpc metadata.
func Namespace(ctx context.Context) (string, bool) {
	return carrier.Get(ctx)
}

// NamespaceRequired returns the namespace of ctx, or an error of class
// ErrFailedPrecondition when there is none and of class ErrInvalidArgument
// when it is not a valid identifier.
func NamespaceRequired(ctx context.Context) (string, error) {
	ns, ok := Namespace(ctx)
	if !ok || ns == "" {
		return "", fmt.Errorf("namespace is required: %w", errdefs.ErrFailedPrecondition)
	}
	if err := identifiers.Validate(ns); err != nil {
		return "", fmt.Errorf("namespace: %w", err)
	}
	return ns, nil
}
