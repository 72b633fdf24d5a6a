package archive

// SetWorkers sets the number of workers Apply starts (fewer than 2: none)
// until the returned function restores the default.
func SetWorkers(n int) (restore func()) {
	old := workersOverride.Swap(int32(n))
	return func() { workersOverride.Store(old) }
}
