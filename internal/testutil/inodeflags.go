package testutil

import (
	"testing"

	"golang.org/x/sys/unix"
)

// InodeFlags reads the inode flags of the folder dir (FS_IOC_GETFLAGS,
// what lsattr shows).
func InodeFlags(t testing.TB, dir string) uint32 {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		t.Fatalf("FS_IOC_GETFLAGS %s: %v", dir, err)
	}
	return flags
}
