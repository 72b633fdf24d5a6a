// Package images holds what every mover of images shares: the image
// record (Image) and the role of whatever keeps them (Store), the media
// types, the children of a manifest or index (Children), walking an
// image's graph (Walk, Handler), choosing platforms from an index
// (SelectPlatforms, FilterPlatforms, over github.com/containerd/platforms),
// the garbage-collection labels a parent carries for its children
// (GCRefLabels), and Check, which says how much of an image the content
// store holds.
//
// Pull and push (package distribution), import and export (package
// images/archive) and the image service use it, so that an index's
// children are found, filtered and labelled the same way everywhere.
//
// # Invariants
//
//   - A manifest or index is read into memory only up to MaxManifestSize
//     bytes, and only after its size descriptor says it fits; its
//     mediaType field, when set, must agree with its descriptor.
//   - Every child descriptor is checked: a valid digest, a size that is
//     not negative. A bad one is ErrInvalidArgument naming the parent.
//   - Walk visits each digest once, parents before children.
//   - Errors wrap the classes of package errdefs.
package images
