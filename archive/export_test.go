package archive

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
