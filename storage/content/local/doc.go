// Package local is berthd's content store on a folder: the implementation
// of package content's Store that the daemon keeps its blobs in. It holds
// the contract of package content (see its documentation); this page says
// how.
//
// # On disk (NewStore(root))
//
//	<root>/blobs/<algorithm>/<hex>   committed blobs, mode 0444
//	<root>/ingest/<sha256 of ref>/   one folder per ingest; its name is a hash, so no
//	                                 ref, however hostile, names a path
//	  meta                           JSON: the ref as given, expected size and digest,
//	                                 start time
//	  data                           the bytes written so far; its size is the offset
//
// An ingest folder is made complete under a temporary name (".tmp-…")
// and renamed into place, so a crash never leaves one without its meta;
// NewStore removes temporary folders a crash left behind. A resumed
// Writer hashes the data again from the start, so its digest never
// depends on state that a crash could lose.
//
// # Invariants
//
//   - A blob under blobs/ always holds exactly the bytes of its digest: it
//     is linked there only after its size and digest were verified, the
//     data fsynced, and then the folder fsynced.
//   - One Writer per ref at a time in a process. (The daemon is the only
//     process on its root: the metadata file lock sees to that.)
//   - Labels are kept in memory for the store's life only: in the daemon
//     they live in the namespace's records of package metadata, which is
//     also where the created and updated times a namespace sees come from.
package local
