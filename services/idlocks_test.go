package services_test

import (
	"sync"
	"testing"

	"github.com/berthrt/berth/services"
)

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
			unlock := l.Lock("ns", "a")
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
	unlock := l.Lock("ns", "a")
	l.Lock("ns", "b")()
	l.Lock("other", "a")()
	unlock()
	// A released id can be locked again.
	l.Lock("ns", "a")()
}
