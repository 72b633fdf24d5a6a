// Package metadata is berthd's metadata store: namespaces, containers,
// images, leases and the per-namespace records of content and snapshots,
// all in one bbolt file (/var/lib/berth/meta.db), and the garbage
// collector over them. It implements the stores of the shared vocabulary
// (containers.Store, images.Store, leases.Manager, and namespaced views of
// a content.Store and a snapshots.Snapshotter); the types themselves live
// in those packages, which import no store.
//
// # Layout
//
//	v1/                                  the layout's major version
//	  .version      → uvarint            schema version (SchemaVersion)
//	  <namespace>/
//	    labels/     <key> → <value>      the namespace's labels
//	    containers/
//	      <id>/
//	        createdat, updatedat → time.Time.MarshalBinary, UTC
//	        image       → reference      (absent when empty)
//	        spec        → OCI runtime spec, JSON as given
//	        snapshotter → name           (absent when empty)
//	        snapshotkey → key            (absent when empty)
//	        runtime/    name → name; options → protobuf Any
//	        labels/     <key> → <value>
//	        extensions/ <key> → protobuf Any
//	    content/
//	      blob/
//	        <digest>/                    the namespace's record of a blob (ContentStore)
//	          size        → varint
//	          createdat, updatedat → time.Time.MarshalBinary, UTC
//	          labels/     <key> → <value>
//	    images/
//	      <name>/                        the image's reference, as given (any printable ASCII)
//	        createdat, updatedat → time.Time.MarshalBinary, UTC
//	        labels/     <key> → <value>
//	        target/
//	          mediatype → string; digest → string; size → varint
//	          annotations/ <key> → <value>
//	          platform  → JSON of ocispec.Platform (absent when none)
//	          urls      → JSON array of strings (absent when none)
//	    leases/
//	      <id>/
//	        createdat   → time.Time.MarshalBinary, UTC
//	        labels/     <key> → <value>  berth.io/gc.expire: RFC 3339
//	        content/    <digest> → ""    resources the lease holds
//	        ingests/    <ref> → ""
//	        snapshots/  <snapshotter>/ <key> → ""
//	    snapshots/
//	      <snapshotter>/
//	        <key>/                       the namespace's record (DB.Snapshotter)
//	          backend   → key underneath  "<namespace>/<n>", n from v1's sequence
//	          kind      → one byte (snapshots.Kind); parent → key (absent when none)
//	          createdat, updatedat → time.Time.MarshalBinary, UTC
//	          labels/   <key> → <value>
//	          children/ <key> → ""       the snapshots whose parent it is
//
// An image name is a reference with '/', ':' and '@' in it, not an
// identifier; bbolt keys are byte strings, so the name is the key as it is
// and no escaping is needed. ValidateImageName bounds it (MaxImageNameSize)
// and refuses white space, control and non-ASCII bytes.
//
// # Garbage collection
//
// GC (gc.go) marks, per namespace, from the roots — images (target and
// labels), containers (snapshot and labels), unexpired leases (every
// resource), content records labelled berth.io/gc.root — along the
// berth.io/gc.ref.content[.<name>] = <digest> and
// berth.io/gc.ref.snapshot.<snapshotter>[/<name>] = <key> labels of what
// it reaches, and sweeps unreached content records and expired leases in
// one transaction; then, outside it, blobs that no namespace records, idle
// ingests that no lease holds, and (through SnapshotCollector) unreached
// snapshots. Commits hold DB.gcLock for reading from the local commit to
// the record, the sweep holds it exclusively: a blob is never swept in
// between. GCScheduler runs it on an interval and shortly after deletes.
//
// A container is one bucket with one key per field, not one encoded
// message: a field added later is a new key that older records simply lack,
// and an update writes and deletes only the keys it knows, so keys written
// by a newer berthd survive an older one. The schema version key starts
// with a dot, which no identifier can, so it never collides with a
// namespace. Open runs the migrations from an older schema version and
// refuses a newer one.
//
// # Invariants
//
//   - Every write is one bbolt Update transaction: it happens entirely or
//     not at all. A call refused for its arguments writes nothing.
//   - Namespaces, container ids and snapshotter names are identifiers
//     (package identifiers). Snapshot keys (in snapshot records, lease
//     resources and gc.ref labels) are arbitrary strings that
//     snapshots.ValidateKey bounds: they are bbolt keys, never paths. Container calls take the
//     namespace from the context (namespaces.NamespaceRequired); an object
//     is visible only in its namespace.
//   - Errors wrap the classes of package errdefs and name the object:
//     `container "web" in namespace "ci": not found`. A stored record that
//     does not decode is ErrInternal.
//   - A namespace is created by NamespaceStore.Create or by the first
//     container created in it, and is deleted only when every bucket under
//     it but its labels is empty; otherwise Delete is ErrFailedPrecondition
//     and says what is left ("namespace "ci": holds 3 containers").
//   - A snapshot Commit spans this file and the snapshotter's own store,
//     which commit apart. It records its intent first, then commits
//     underneath, then turns the active record into the committed one;
//     an intent a crash or an I/O error leaves behind is settled from what
//     the snapshotter holds by the next Commit of the key and by GC, and GC
//     never removes a snapshot that an intent names. So no crash point
//     leaves a committed layer that GC removes, nor a record without its
//     layer (snapshots_crash_test.go kills a process at each step).
//     CheckSnapshots and CheckContainers report where the records and the
//     disk disagree, for `berthd check`.
//   - A container and its snapshot can be made and removed together
//     (containers.Store's CreateWithSnapshot and DeleteWithSnapshot): the
//     two records go in one transaction, so no crash leaves one without
//     the other. The create makes the snapshot underneath inside that
//     transaction, as Prepare does, and removes it again on any error; a
//     crash leaves it to GC (container_create_test.go kills a process at
//     each step).
//   - Open holds bbolt's file lock until Close: a second berthd on the same
//     file waits DefaultOpenTimeout (WithOpenTimeout), then fails with
//     ErrUnavailable naming the file.
//
// # Bounds
//
// Chosen so that one container record stays below ttrpc's 4 MiB message
// limit and a Get always fits one response:
//
//   - a label: non-empty key, key and value valid UTF-8, len(key)+len(value)
//     ≤ MaxLabelSize (4096 bytes, as containerd); at most MaxLabels (256)
//     labels on one object. An empty value means "no label": it is not
//     stored, and SetLabel or an update with it removes the label.
//   - Container.Spec: required, ≤ MaxSpecSize (1 MiB), a JSON object that
//     decodes as an OCI runtime spec (unknown fields allowed).
//   - Container.Image and Runtime.Name: ≤ MaxReferenceSize (4096 bytes),
//     valid UTF-8; Runtime.Name is required.
//   - Runtime.Options: a type URL, ≤ MaxRuntimeOptionsSize (64 KiB).
//   - Extensions: at most MaxExtensions (64), keys non-empty and ≤
//     MaxExtensionKeySize (256 bytes), each with a type URL, together ≤
//     MaxExtensionsSize (1 MiB). A nil value is not stored.
//   - Snapshotter is required when SnapshotKey is set.
//
// # Container updates
//
// containers.Store.Update takes field paths as containerd does: labels,
// labels.<key>, image, spec, extensions, extensions.<key>. A labels.<key>
// or extensions.<key> path whose key is absent from the given container (or
// empty, or nil) removes it. Without field paths every one of those fields
// is replaced. The id, runtime, snapshotter and snapshot key are immutable:
// naming them, or passing a different value without field paths, is
// ErrInvalidArgument naming the field, as is an unknown path. The result is
// validated as on Create; UpdatedAt becomes now and CreatedAt is kept.
//
// # Adding a kind of record
//
// A new kind lives in this package and uses DB.View and DB.Update (or the
// ctx-checking view and update), createKindBucket and kindBucket for
// v1/<namespace>/<kind>, the label helpers, and an entry in kinds so that a
// refused namespace Delete names what it holds. helpers_test.go has the
// shared test helpers: a fresh DB, the identifiers every store must refuse,
// and refusedUnchanged, which checks that a refused call wrote nothing.
package metadata
