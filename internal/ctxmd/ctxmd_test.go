package ctxmd

import (
	"context"
	"testing"

	"github.com/containerd/ttrpc"
)

func TestCarrier(t *testing.T) {
	a, b := NewKey("x-a"), NewKey("x-b")
	ctx := a.With(context.Background(), "one")
	if v, set := a.Get(ctx); v != "one" || !set {
		t.Fatalf("Get after With = %q, %v", v, set)
	}
	if v, set := b.Get(ctx); v != "" || set {
		t.Fatalf("another key's Get = %q, %v; want nothing", v, set)
	}
	if md, _ := ttrpc.GetMetadataValue(ctx, "x-a"); md != "one" {
		t.Fatalf("metadata x-a = %q, want one", md)
	}
	// A server's context: only the metadata carries the value.
	server := ttrpc.WithMetadata(context.Background(), ttrpc.MD{"x-a": []string{"two"}})
	if v, set := a.Get(server); v != "two" || !set {
		t.Fatalf("Get from metadata = %q, %v", v, set)
	}
	// The context's value wins over metadata, and With copies the metadata.
	over := a.With(server, "three")
	if v, _ := a.Get(over); v != "three" {
		t.Fatalf("Get = %q, want the value set, three", v)
	}
	if md, _ := ttrpc.GetMetadataValue(server, "x-a"); md != "two" {
		t.Fatalf("With changed the parent's metadata to %q", md)
	}
	none := a.Without(over)
	if v, set := a.Get(none); v != "" || !set {
		t.Fatalf("Get after Without = %q, %v; want the empty value, set", v, set)
	}
	if _, ok := ttrpc.GetMetadataValue(none, "x-a"); ok {
		t.Fatal("Without left the metadata")
	}
}
