package archive

import "sync"

// SetWorkers sets the number of workers Apply starts (fewer than 2: none)
// until the returned function restores the default.
func SetWorkers(n int) (restore func()) {
	old := workersOverride.Swap(int32(n))
	return func() { workersOverride.Store(old) }
}

// SetHooks sets the workers' test hooks (parallel.go) until the returned
// function clears them.
func SetHooks(wait func(files, bytes int), job func(index int), done func(index int, err error)) (restore func()) {
	testHookWait, testHookJob, testHookDone = wait, job, done
	return func() { testHookWait, testHookJob, testHookDone = nil, nil, nil }
}

// MaxInFlight is the bound on the memory held by files in flight.
const MaxInFlight = maxInFlight

// HoldWorkers keeps each file in flight until the reading goroutine
// next waits for the workers (for room, or a drain), until the returned
// function ends it: each entry after a file meets it in flight.
func HoldWorkers() (restore func()) {
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	gen := 0
	given := map[int]int{}
	testHookGive = func(index int) {
		mu.Lock()
		given[index] = gen
		mu.Unlock()
	}
	open := func() {
		mu.Lock()
		gen++
		cond.Broadcast()
		mu.Unlock()
	}
	testHookDrain = open
	testHookWait = func(int, int) { open() }
	testHookJob = func(index int) {
		mu.Lock()
		for gen <= given[index] {
			cond.Wait()
		}
		mu.Unlock()
	}
	return func() { testHookGive, testHookDrain, testHookWait, testHookJob = nil, nil, nil, nil }
}
