package services

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/namespaces"
)

// StreamNamespace returns ctx in the namespace of a streaming call: the
// request metadata's, else the one the request names (ttrpc's Go client
// does not send metadata on streams, so streaming requests carry a
// namespace field). Both given and different is ErrInvalidArgument;
// neither leaves ctx without a namespace, for the store to refuse.
func StreamNamespace(ctx context.Context, given string) (context.Context, error) {
	ns, ok := namespaces.Namespace(ctx)
	switch {
	case given == "":
		return ctx, nil
	case ok && ns != given:
		return nil, fmt.Errorf("namespace %q in the request, %q in its metadata: %w", given, ns, errdefs.ErrInvalidArgument)
	}
	return namespaces.WithNamespace(ctx, given), nil
}

// ListBatchSize bounds the items of one message of a List stream, unless
// one item alone is larger. Every item is bounded below ttrpc's 4 MiB
// message limit (a content or snapshot Info at about 1 MiB: 256 labels of
// 4 KiB, two keys of 1 KiB; a container, the largest, at about 3.1 MiB),
// so a message always fits.
const ListBatchSize = 1 << 20

// Batcher gathers the items of a List stream into messages of at most
// ListBatchSize bytes of items: Add sends the batch first when the item
// would take it past that size, Flush sends what is left.
type Batcher[T proto.Message] struct {
	send  func([]T) error
	items []T
	size  int
}

// NewBatcher returns a batcher that sends each batch with send.
func NewBatcher[T proto.Message](send func([]T) error) *Batcher[T] {
	return &Batcher[T]{send: send}
}

// Add adds item to the batch, after sending the batch when item would
// take it past ListBatchSize.
func (b *Batcher[T]) Add(item T) error {
	n := proto.Size(item)
	if len(b.items) > 0 && b.size+n > ListBatchSize {
		if err := b.Flush(); err != nil {
			return err
		}
	}
	b.items = append(b.items, item)
	b.size += n
	return nil
}

// SendAll sends items in batches of Batcher.
func SendAll[T proto.Message](items []T, send func([]T) error) error {
	b := NewBatcher(send)
	for _, it := range items {
		if err := b.Add(it); err != nil {
			return err
		}
	}
	return b.Flush()
}

// Flush sends the items not sent yet, if any.
func (b *Batcher[T]) Flush() error {
	if len(b.items) == 0 {
		return nil
	}
	err := b.send(b.items)
	b.items, b.size = nil, 0
	return err
}
