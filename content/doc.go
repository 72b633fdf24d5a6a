// Package content is the vocabulary of berth's content-addressed blob
// store: image manifests, configs and layers, each stored once under its
// digest and written through resumable ingests that are verified before
// they become blobs. It holds the types (Info, Status), the role
// interfaces and the helpers over them; it imports no store.
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
// both and makes the blob visible atomically; until then the bytes are an
// ingest, visible only through Status. A Writer whose caller goes away
// (Close, a crash of the process) leaves the ingest, and the next Writer
// for the same ref resumes at the offset it reached.
//
// # Implementations
//
// storage/content/local is the store on a folder; storage/metadata wraps it
// into the namespaced view the daemon serves (DB.ContentStore); package
// client implements Store over the content API, so a caller uses the same
// interface in-process and remotely. storage/content/contenttest is the
// suite every implementation runs, and it holds them to this contract:
//
//   - A committed blob holds exactly the bytes of its digest, and is never
//     written twice: Commit of a digest that exists is ErrAlreadyExists,
//     and the ingest is removed.
//   - One Writer per ref at a time: a second one, while the first is open,
//     is ErrUnavailable naming the ref.
//   - Commit failures: a size short of the expected one is
//     ErrFailedPrecondition and keeps the ingest and the Writer, so the
//     caller can write the rest; a digest mismatch, or more bytes than
//     expected, is ErrFailedPrecondition too, but removes the ingest, since
//     those bytes can never become the blob, and a retry starts afresh.
//   - Refs are 1 to MaxRefLength bytes of printable UTF-8 (no control
//     characters, so no NUL); anything else is ErrInvalidArgument.
//   - Labels are bounded as containers' are (MaxLabels, MaxLabelSize).
//   - ReadBlob allocates what the descriptor says (at most
//     MaxReadBlobSize), never what the store holds: a descriptor whose
//     size differs from the stored blob's is refused before a byte is read.
//   - Errors wrap the classes of package errdefs and name the blob or ref.
package content
