// Package diff applies compressed layers from the content store onto
// mounts, and compares two mounts into a new layer in the content store.
//
// Apply reads a layer blob, decompresses it by media type (gzip, zstd or
// none), computes the digest of the uncompressed tar (the diff ID) while
// extracting it with archive.Apply, and returns it. The mounts are mounted
// into a temporary folder and unmounted again whatever happens; two shapes
// skip the mount: a single overlay mount with an upperdir is applied into
// the upper folder directly with overlay whiteouts (its lowerdirs are the
// parents), and a single writable bind mount into its source folder.
// Decompression and hashing run in a goroutine ahead of the extraction, so
// the two use both cores; the goroutine stops before Apply returns.
//
// Temporary mounts are made only under the folder given to NewApplier and
// NewComparer, which only root may enter, and with nosuid and nodev: they
// show a container's or an image's files, setuid binaries and device
// nodes included, which no other host user may reach (mount.WithTempMount).
//
// Compare mounts both sides read-only, writes the changes as an OCI layer
// tar (archive.Compare) into the content store, gzip'd unless
// WithCompression asks for zstd or none, and labels the blob
// with its diff ID (LabelUncompressed).
//
// The blob is trusted as the content store holds it (the store verified
// it when it was written); what it unpacks to is not (see archive).
package diff
