// Package content is berth's content-addressed blob store: image
// manifests, configs and layers, each stored once under its digest and
// written through resumable ingests that are verified before they become
// blobs.
//
// # Roles
//
// The store is a few small interfaces, each what one kind of caller needs,
// composed into Store:
//
//	Provider       ReaderAt(desc): read a committed blob
//	Ingester       Writer(WithRef(ref), WithDescriptor(desc)): start or resume an ingest
//	Manager        Info, Update (labels), Walk (with filters), Delete
//	IngestManager  Status, ListStatuses, Abort: the ingests under way
//
// The life of a blob: a caller asks an Ingester for a Writer under a ref
// (a name the caller chooses, such as "layer-sha256:…"), writes the bytes,
// and calls Commit with the size and digest it expects. Commit verifies
// both and makes the blob visible in one atomic rename; until then the
// bytes are an ingest, visible only through Status. A Writer whose caller
// goes away (Close, a crash of the process) leaves the ingest on disk, and
// the next Writer for the same ref resumes at the offset it reached.
//
// NewStore is the local store on a folder. Package metadata wraps it into
// the namespaced view the daemon serves (DB.ContentStore), and package
// client implements Store over the content API, so a caller uses the same
// interface in-process and remotely. Package contenttest is the test suite
// every implementation runs.
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
//     data fsynced, and then the folder fsynced. A blob is never written
//     twice: Commit of a digest that exists is ErrAlreadyExists, and the
//     ingest is removed.
//   - One Writer per ref at a time in a process: a second one, while the
//     first is open, is ErrUnavailable naming the ref. (The daemon is the
//     only process on its root: the metadata file lock sees to that.)
//   - Commit failures: a size short of the expected one is
//     ErrFailedPrecondition and keeps the ingest and the Writer, so the
//     caller can write the rest; a digest mismatch, or more bytes than
//     expected, is ErrFailedPrecondition too, but removes the ingest, since
//     those bytes can never become the blob, and a retry starts afresh.
//   - Refs are 1 to MaxRefLength bytes of printable UTF-8 (no control
//     characters, so no NUL); anything else is ErrInvalidArgument.
//   - ReadBlob allocates what the descriptor says (at most
//     MaxReadBlobSize), never what the store holds: a descriptor whose
//     size differs from the stored blob's is refused before a byte is read.
//   - Errors wrap the classes of package errdefs and name the blob or ref.
//
// # Labels
//
// The local store keeps labels in memory for its life only: in the daemon
// they live in the namespace's records of package metadata, which is also
// where the created and updated times a namespace sees come from. Labels
// are bounded as containers' are (MaxLabels, MaxLabelSize).
package content
