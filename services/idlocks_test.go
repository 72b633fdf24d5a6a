package services_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/berthrt/berth/services"
)

func lock(t *testing.T, l *services.IDLocks, ns, id string) func() {
	t.Helper()
	unlock, err := l.Lock(context.Background(), ns, id)
	if err != nil {
		t.Fatal(err)
	}
	return unlock
}

func TestIDLocks(t *testing.T) {
	var l services.IDLocks
	// One id: the critical sections never overlap.
	var (
		wg     sync.WaitGroup
		inside int
		mu     sync.Mutex
	)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := lock(t, &l, "ns", "a")
			mu.Lock()
			inside++
			if inside != 1 {
				t.Error("two holders of one id")
			}
			mu.Unlock()
			mu.Lock()
			inside--
			mu.Unlock()
			unlock()
		}()
	}
	wg.Wait()
	// Other ids and namespaces do not wait for a held one.
	unlock := lock(t, &l, "ns", "a")
	lock(t, &l, "ns", "b")()
	lock(t, &l, "other", "a")()
	// A waiter whose context ends gives up, naming the container, and
	// leaves the lock as it was.
	ctx, cancel := context.WithCancel(context.Background())
	waited := make(chan error, 1)
	go func() {
		_, err := l.Lock(ctx, "ns", "a")
		waited <- err
	}()
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("a waiter on a held lock whose context ended: %v, want Canceled", err)
	}
	unlock()
	// A released id can be locked again.
	lock(t, &l, "ns", "a")()
}
