// Package ctxmd carries one request-scoped string (the namespace, the
// lease) on a context: for this process as a context value, and for the
// server the context's ttrpc calls go to as request metadata. Packages
// namespaces and leases are the two carriers.
//
// A value set on the context wins over one received in metadata, so a
// server that passes a request's context on (to a store, to a shim) keeps
// what the caller sent unless it sets its own.
package ctxmd

import (
	"context"

	"github.com/containerd/ttrpc"
)

// Key is one carried value: its context key and its metadata key.
type Key struct {
	metadataKey string
}

// NewKey returns the carrier of a value sent as metadataKey. Each call
// returns a distinct context key.
func NewKey(metadataKey string) *Key { return &Key{metadataKey: metadataKey} }

// With returns a context carrying v, for this process and, through ttrpc
// metadata, for the server the context's calls go to. The metadata of ctx
// is copied, never changed in place.
func (k *Key) With(ctx context.Context, v string) context.Context {
	ctx = context.WithValue(ctx, k, v)
	md, ok := ttrpc.GetMetadata(ctx)
	if !ok {
		md = ttrpc.MD{}
	} else {
		md = md.Clone()
	}
	md.Set(k.metadataKey, v)
	return ttrpc.WithMetadata(ctx, md)
}

// Without returns a context that carries no value, even if ctx does: the
// empty string as the context's value, and no metadata.
func (k *Key) Without(ctx context.Context) context.Context {
	ctx = context.WithValue(ctx, k, "")
	if md, ok := ttrpc.GetMetadata(ctx); ok {
		md = md.Clone()
		delete(md, k.metadataKey)
		ctx = ttrpc.WithMetadata(ctx, md)
	}
	return ctx
}

// Get returns the value of ctx: the one set by With or Without (set is
// true even for the empty string), or failing that the one received in
// ttrpc metadata.
func (k *Key) Get(ctx context.Context) (v string, set bool) {
	if v, ok := ctx.Value(k).(string); ok {
		return v, true
	}
	return ttrpc.GetMetadataValue(ctx, k.metadataKey)
}
