package leases

import (
	"context"
	"testing"

	"github.com/containerd/ttrpc"
)

func TestContext(t *testing.T) {
	ctx := context.Background()
	if _, ok := FromContext(ctx); ok {
		t.Fatal("a lease on an empty context")
	}
	ctx = WithLease(ctx, "l1")
	if id, ok := FromContext(ctx); !ok || id != "l1" {
		t.Errorf("FromContext = %q, %v", id, ok)
	}
	if v, ok := ttrpc.GetMetadataValue(ctx, MetadataKey); !ok || v != "l1" {
		t.Errorf("metadata = %q, %v", v, ok)
	}
	// What a server receives: the metadata only.
	srv := ttrpc.WithMetadata(context.Background(), ttrpc.MD{MetadataKey: []string{"l2"}})
	if id, ok := FromContext(srv); !ok || id != "l2" {
		t.Errorf("from metadata: %q, %v", id, ok)
	}
	without := WithoutLease(ctx)
	if _, ok := FromContext(without); ok {
		t.Error("WithoutLease kept the lease")
	}
	if _, ok := ttrpc.GetMetadataValue(without, MetadataKey); ok {
		t.Error("WithoutLease kept the metadata")
	}
}
