package services

import (
	"context"
	"slices"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/namespaces"
)

func TestStreamNamespace(t *testing.T) {
	md := namespaces.WithNamespace(context.Background(), "a")
	for _, tc := range []struct {
		ctx          context.Context
		given, want  string
		invalid, has bool
	}{
		{context.Background(), "b", "b", false, true},
		{md, "", "a", false, true},
		{md, "a", "a", false, true},
		{md, "b", "", true, false},
		{context.Background(), "", "", false, false},
	} {
		ctx, err := StreamNamespace(tc.ctx, tc.given)
		if tc.invalid {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("StreamNamespace(%q): %v, want InvalidArgument", tc.given, err)
			}
			continue
		}
		ns, ok := namespaces.Namespace(ctx)
		if err != nil || ok != tc.has || ns != tc.want {
			t.Errorf("StreamNamespace(%q) = %q, %v, %v; want %q", tc.given, ns, ok, err, tc.want)
		}
	}
}

// TestBatcher checks that items go out in order, in batches that never
// pass ListBatchSize but for one item larger than it, which goes alone,
// and that Flush sends the rest and only once.
func TestBatcher(t *testing.T) {
	var batches [][]*wrapperspb.BytesValue
	b := NewBatcher(func(items []*wrapperspb.BytesValue) error {
		batches = append(batches, items)
		return nil
	})
	item := &wrapperspb.BytesValue{Value: make([]byte, ListBatchSize/3)}
	big := &wrapperspb.BytesValue{Value: make([]byte, 3*ListBatchSize)}
	for _, it := range []*wrapperspb.BytesValue{item, item, item, big, item, item, item, item} {
		if err := b.Add(it); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	total := 0
	for _, batch := range batches {
		sizes = append(sizes, len(batch))
		total += len(batch)
	}
	// Each item is a little over a third of the batch size: a third
	// would take a batch past it.
	if total != 8 || !slices.Equal(sizes, []int{2, 1, 1, 2, 2}) {
		t.Fatalf("batches of %v, want [2 1 1 2 2]", sizes)
	}
}
