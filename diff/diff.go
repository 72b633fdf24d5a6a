package diff

import (
	"context"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/archive"
	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/mount"
)

// LabelUncompressed is the label of a compressed layer blob that gives
// the digest of its uncompressed tar (its diff ID).
const LabelUncompressed = "berth.io/uncompressed"

// Applier applies layers onto mounts. It is an interface because the diff
// service serves it over ttrpc and its client implements it too.
type Applier interface {
	// Apply extracts the layer desc, read from provider, onto mounts and
	// returns the descriptor of the uncompressed tar (media type
	// ocispec.MediaTypeImageLayer, its digest the diff ID). A media type
	// that is not a layer of a known compression is ErrNotImplemented;
	// a hostile layer is ErrInvalidArgument. On error the mounts may hold
	// part of the layer: the caller discards the snapshot.
	Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount, provider content.Provider, opts ...archive.ApplyOpt) (ocispec.Descriptor, error)
}

// Comparer writes the difference of two mounts as a layer.
type Comparer interface {
	// Compare writes the changes from lower to upper (lower may be
	// empty: everything in upper is new) as an OCI layer, gzip'd unless
	// WithCompression says otherwise, into the content store and returns
	// its descriptor, labelled with LabelUncompressed.
	Compare(ctx context.Context, lower, upper []mount.Mount, opts ...CompareOpt) (ocispec.Descriptor, error)
}

// CompareOpt sets an option of Compare.
type CompareOpt func(*compareOptions)

type compareOptions struct {
	ref         string
	labels      map[string]string
	compression Compression
}

// WithCompression sets how the layer is compressed (Gzip by default); the
// descriptor's media type is the compression's MediaType.
func WithCompression(c Compression) CompareOpt {
	return func(o *compareOptions) { o.compression = c }
}

// WithReference names the content ingest (a unique one by default).
func WithReference(ref string) CompareOpt {
	return func(o *compareOptions) { o.ref = ref }
}

// WithLabels adds labels to the layer blob.
func WithLabels(labels map[string]string) CompareOpt {
	return func(o *compareOptions) { o.labels = labels }
}

// withMounted runs fn on a folder that shows mounts. A single overlay
// with an upperdir, or a single bind mount (writable, unless readOnly),
// is used in place; anything else is mounted on a temporary folder under
// tempMounts (mount.WithTempMount: private to root, nosuid, nodev), which
// is unmounted and removed afterwards, also when fn fails.
func withMounted(tempMounts string, mounts []mount.Mount, readOnly bool, fn func(root string, opts ...archive.ApplyOpt) error) error {
	if !readOnly {
		if dir, lowers, isOverlay, ok := inPlace(mounts); ok && isOverlay {
			return fn(dir, archive.WithConvention(archive.Overlay), archive.WithParents(lowers...))
		} else if ok {
			return fn(dir)
		}
	} else if len(mounts) == 1 && mounts[0].Target == "" && isBind(mounts[0]) {
		return fn(mounts[0].Source)
	}
	if readOnly {
		mounts = mount.ReadOnly(mounts)
	}
	return mount.WithTempMount(tempMounts, mounts, func(root string) error { return fn(root) })
}

// WritableDir returns the folder that a layer applied onto mounts is
// written into in place, without mounting anything, and the lower folders
// (topmost first) beneath it: the upperdir and lowerdirs of a single
// overlay mount, or the source of a single writable bind mount (no
// lowers). ok is false for any other shape.
func WritableDir(mounts []mount.Mount) (dir string, lowers []string, ok bool) {
	dir, lowers, _, ok = inPlace(mounts)
	return dir, lowers, ok
}

func inPlace(mounts []mount.Mount) (dir string, lowers []string, isOverlay, ok bool) {
	if len(mounts) != 1 || mounts[0].Target != "" {
		return "", nil, false, false
	}
	m := mounts[0]
	if m.Type == "overlay" {
		upper, lowers, ok := overlayDirs(m)
		return upper, lowers, true, ok
	}
	if isBind(m) && !hasOption(m, "ro") {
		return m.Source, nil, false, true
	}
	return "", nil, false, false
}

// overlayDirs returns an overlay mount's upperdir and lowerdirs (topmost
// first).
func overlayDirs(m mount.Mount) (upper string, lowers []string, ok bool) {
	for _, o := range m.Options {
		if v, found := strings.CutPrefix(o, "upperdir="); found {
			upper = v
		} else if v, found := strings.CutPrefix(o, "lowerdir="); found {
			lowers = strings.Split(v, ":")
		}
	}
	return upper, lowers, upper != ""
}

func isBind(m mount.Mount) bool {
	return m.Type == "bind" || hasOption(m, "bind") || hasOption(m, "rbind")
}

func hasOption(m mount.Mount, opt string) bool {
	for _, o := range m.Options {
		if o == opt {
			return true
		}
	}
	return false
}
