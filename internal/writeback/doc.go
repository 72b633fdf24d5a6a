// Package writeback starts writing a file's data to disk while the file
// is still being written (sync_file_range(2), SYNC_FILE_RANGE_WRITE), so
// that the fsync or syncfs that later makes it durable finds little left
// to write and does not hold up the commit behind it: a layer blob's
// fsync before its commit, a layer's syncfs before its snapshot's.
//
// It is a hint and changes no guarantee: what is durable is still what
// the fsync or syncfs said, and an error of the writeback started here
// (EIO) is reported by that call, which is checked. Only data is written
// ahead, never waited for, and only in chunks of Chunk bytes, so a small
// file costs nothing more.
package writeback
