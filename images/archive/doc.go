// Package archive moves images between the content store and tar
// archives: Import reads OCI image layouts and `docker save` archives
// (plain or gzip'd) from an io.Reader, Export writes OCI image layouts to
// an io.Writer. The daemon's image service calls them with the streams of
// an upload or a download, and passes WithProgress a function that
// forwards each blob's reports (progress.Progress, the type pulls and
// pushes report with).
//
// # Parts
//
//	import.go   Import: one pass over the tar, every file through a
//	            content Writer; then the OCI layout's images followed
//	            from index.json
//	docker.go   docker save's manifest.json converted to Docker schema 2
//	            manifests, as containerd converts it
//	record.go   image names and records
//	export.go   Export: the reachable blobs, then the tar
//	options.go  Opt (package archiveopts, aliased): platforms, names,
//	            images, progress
//
// # Invariants
//
//   - The archive is read once, front to back; nothing but index.json,
//     manifest.json and oci-layout (each at most images.MaxManifestSize)
//     is held in memory. Blobs are verified by the content store's Commit
//     against the digest their name gives; a blob that fails leaves no
//     ingest.
//   - Import writes image records only after the whole archive has been
//     read and every image's blobs (for the platforms chosen) are found;
//     a refused archive creates or changes no image.
//   - Every manifest and index an import takes is labelled
//     berth.io/gc.ref.content.* with its children (images.GCRefLabels), so
//     garbage collection keeps an imported image whole from its target.
//   - Export writes only blobs the images reach, each once, verified on
//     the way out; nothing is written when a blob is missing.
//   - Errors wrap the classes of package errdefs and name the archive
//     entry, the image or the blob.
package archive
