package services

import (
	"context"
	"fmt"
	"sync"
)

// IDLocks serialises calls that must not interleave on one container:
// the containers service's Delete (no task, then delete the record) and
// the tasks service's Create (the record exists, then make the task).
// Without it a Delete could remove a container between a Create's lookup
// and its task, leaving a task whose container is gone. The zero value is
// ready to use; locks of unrelated ids never wait for each other, and a
// caller waits for a held one only as long as its context lets it.
type IDLocks struct {
	mu    sync.Mutex // guards locks
	locks map[string]*idLock
}

type idLock struct {
	held    chan struct{} // one token while held: a lock a waiter can give up on
	holders int           // holding or waiting; guarded by IDLocks.mu; the entry goes at 0
}

// Lock locks the container id of namespace ns and returns its unlock. It
// fails with ctx's error, naming the container, when ctx ends first.
func (l *IDLocks) Lock(ctx context.Context, ns, id string) (unlock func(), err error) {
	key := ns + "/" + id
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*idLock{}
	}
	e := l.locks[key]
	if e == nil {
		e = &idLock{held: make(chan struct{}, 1)}
		l.locks[key] = e
	}
	e.holders++
	l.mu.Unlock()

	drop := func() {
		l.mu.Lock()
		if e.holders--; e.holders == 0 {
			delete(l.locks, key)
		}
		l.mu.Unlock()
	}
	select {
	case e.held <- struct{}{}:
	case <-ctx.Done():
		drop()
		return nil, fmt.Errorf("container %q in namespace %q: waiting for another call on it: %w", id, ns, ctx.Err())
	}
	return func() {
		<-e.held
		drop()
	}, nil
}
