// Package gc is the vocabulary of berth's garbage collection, shared by the
// daemon that collects (storage/metadata) and the clients that label what
// they make: the labels that make roots and references, and what one
// collection reports. It imports no store.
//
// Garbage collection marks, per namespace, from the roots — images (their
// target and labels), containers (their snapshot and labels), unexpired
// leases (every resource), content records and snapshots labelled
// LabelRoot — along the LabelRefContent and LabelRefSnapshot labels of
// what it reaches, and removes what it does not reach. A reference never
// leaves the namespace of the object that carries it.
package gc

import "time"

// The labels garbage collection follows. They are set on content records,
// images, containers and snapshots; the references stay within
// the namespace of the object that carries them.
const (
	// LabelRoot on a content record or a snapshot, with any value, makes it a
	// root: it is kept until the label or the record is removed.
	LabelRoot = "berth.io/gc.root"
	// LabelRefContent, alone or followed by "." and any name
	// (berth.io/gc.ref.content.config, berth.io/gc.ref.content.l.0,
	// berth.io/gc.ref.content.m.<digest>), has a digest for value: the
	// object that carries it keeps that blob. An index labels its
	// manifests so, a manifest its config and layers.
	LabelRefContent = "berth.io/gc.ref.content"
	// LabelRefSnapshot followed by "." and a snapshotter name, and
	// optionally "/" and any name (berth.io/gc.ref.snapshot.overlayfs,
	// berth.io/gc.ref.snapshot.overlayfs/1), has a snapshot key for
	// value: the object that carries it keeps that snapshot.
	LabelRefSnapshot = "berth.io/gc.ref.snapshot"
)

// Stats says what one collection removed.
type Stats struct {
	// ContentRecords is the number of namespaces' records of blobs.
	ContentRecords int
	// Blobs and BlobBytes count the blobs removed from the local store:
	// those no namespace records any more.
	Blobs     int
	BlobBytes int64
	// Ingests is the number of stale ingests aborted.
	Ingests int
	// Leases is the number of expired leases deleted.
	Leases int
	// Snapshots is the number of snapshots the collectors removed.
	Snapshots int
	// Duration is how long the collection took, the exclusive part
	// included.
	Duration time.Duration
}
