package fsstore

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// syncFS writes the dirty data and metadata of the filesystem that holds
// dir to disk (syncfs(2)), so that a layer's files are durable before the
// record that says it is committed. One syscall for a whole layer: fsync
// of every file costs a journal commit each on ext4: on this machine's
// ext4, for a fresh tree of 400 files (2 MiB) syncfs took 48 ms and fsync
// of each 403 ms, for 4000 files (40 MiB) 74 ms and 1.7 s
// (BenchmarkLayerSync). syncfs also flushes what others wrote to the same
// filesystem, which the kernel would have written within seconds anyway.
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}
