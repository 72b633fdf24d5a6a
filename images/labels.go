package images

import (
	"strconv"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/gc"
)

// GCRefLabels returns the labels that make the manifest or index parent
// keep children in garbage collection, named as package distribution
// names them: berth.io/gc.ref.content.m.<i> for an index's manifests,
// .config and .l.<i> for a manifest's config and layers (children as
// Children returns them: the config first). Other parents get none.
//
// For an index, children are all its manifests and only those m matches
// (or that have no platform; all when m is nil) get a label, numbered by
// their place in the index: the label m.<i> always names the index's i-th
// manifest, so that imports or pulls of other platforms of the same
// index add labels and never replace one.
func GCRefLabels(parent ocispec.Descriptor, children []ocispec.Descriptor, m platforms.MatchComparer) map[string]string {
	labels := map[string]string{}
	switch {
	case IsIndex(parent.MediaType):
		for i, c := range children {
			if m == nil || c.Platform == nil || m.Match(*c.Platform) {
				labels[gc.LabelRefContent+".m."+strconv.Itoa(i)] = c.Digest.String()
			}
		}
	case IsManifest(parent.MediaType) && len(children) > 0:
		labels[gc.LabelRefContent+".config"] = children[0].Digest.String()
		for i, c := range children[1:] {
			labels[gc.LabelRefContent+".l."+strconv.Itoa(i)] = c.Digest.String()
		}
	}
	return labels
}

// LabelFieldpaths returns the content.Manager Update field paths that set
// labels and nothing else.
func LabelFieldpaths(labels map[string]string) []string {
	fields := make([]string, 0, len(labels))
	for k := range labels {
		fields = append(fields, "labels."+k)
	}
	return fields
}
