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

// ListBatchSize is the size at which a List stream sends a batch. One
// item (a content or snapshot Info) is at most about 1 MiB (256 labels of
// 4 KiB, two keys of 1 KiB), so a batch stays below 2 MiB, well under
// ttrpc's 4 MiB message limit.
const ListBatchSize = 1 << 20

// Batcher gathers the items of a List stream into messages of about
// ListBatchSize bytes: Add sends a batch once it reaches that size, Flush
// sends what is left.
type Batcher[T proto.Message] struct {
	send  func([]T) error
	items []T
	size  int
}

// NewBatcher returns a batcher that sends each batch with send.
func NewBatcher[T proto.Message](send func([]T) error) *Batcher[T] {
	return &Batcher[T]{send: send}
}

// Add adds item to the batch, and sends the batch when it is full.
func (b *Batcher[T]) Add(item T) error {
	b.items = append(b.items, item)
	if b.size += proto.Size(item); b.size < ListBatchSize {
		return nil
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
