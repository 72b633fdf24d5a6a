package services

import "sync"

// IDLocks serialises calls that must not interleave on one container:
// the containers service's Delete (no task, then delete the record) and
// the tasks service's Create (the record exists, then make the task).
// Without it a Delete could remove a container between a Create's lookup
// and its task, leaving a task whose container is gone. The zero value is
// ready to use; locks of unrelated ids never wait for each other.
type IDLocks struct {
	mu    sync.Mutex
	locks map[string]*idLock
}

type idLock struct {
	mu      sync.Mutex
	holders int // holding or waiting; the entry goes when it drops to 0
}

// Lock locks the container id of namespace ns and returns its unlock.
func (l *IDLocks) Lock(ns, id string) (unlock func()) {
	key := ns + "/" + id
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*idLock{}
	}
	e := l.locks[key]
	if e == nil {
		e = &idLock{}
		l.locks[key] = e
	}
	e.holders++
	l.mu.Unlock()

	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		l.mu.Lock()
		if e.holders--; e.holders == 0 {
			delete(l.locks, key)
		}
		l.mu.Unlock()
	}
}
