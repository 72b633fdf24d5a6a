package writeback

import "golang.org/x/sys/unix"

// Chunk is how many bytes written wait before their writeback is started.
const Chunk = 8 << 20

// Ahead follows one file written front to back.
type Ahead struct {
	started int64 // writeback has been started for [0, started)
}

// Wrote says that the file fd holds data up to end, the offset after the
// last write; once Chunk bytes wait, their writeback starts. An end
// before what was started (the file was truncated) starts over there.
func (a *Ahead) Wrote(fd int, end int64) {
	if end < a.started {
		a.started = end
	}
	if end-a.started < Chunk {
		return
	}
	// Its error shows again at the fsync or syncfs (see the package doc).
	_ = unix.SyncFileRange(fd, a.started, end-a.started, unix.SYNC_FILE_RANGE_WRITE)
	a.started = end
}
