package distribution

import (
	"context"
	"sync"

	digest "github.com/opencontainers/go-digest"
)

// flights runs one transfer per digest in a pull or push: a blob that an
// image references twice (a layer shared by two platforms) is fetched
// once, and the second caller waits for the first. The zero value is
// ready to use.
type flights struct {
	mu    sync.Mutex              // guards calls
	calls map[digest.Digest]*call // every digest started
}

// call is one transfer that others may wait for.
type call struct {
	done chan struct{}
	err  error // set before done is closed
}

// do runs fn for dgst unless it runs or ran already, and returns its
// result; a waiter gives up when ctx ends.
func (f *flights) do(ctx context.Context, dgst digest.Digest, fn func() error) error {
	f.mu.Lock()
	c, ok := f.calls[dgst]
	if !ok {
		if f.calls == nil {
			f.calls = map[digest.Digest]*call{}
		}
		c = &call{done: make(chan struct{})}
		f.calls[dgst] = c
	}
	f.mu.Unlock()
	if !ok {
		c.err = fn()
		close(c.done)
		return c.err
	}
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
