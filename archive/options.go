package archive

// Convention is how whiteouts are written into the target.
type Convention int

const (
	// Plain deletes what a whiteout names and empties an opaque folder.
	Plain Convention = iota
	// Overlay writes overlayfs whiteouts: 0/0 character devices and the
	// trusted.overlay.opaque xattr.
	Overlay
)

// Limits bound what a layer may ask of Apply.
type Limits struct {
	// MaxEntries is the number of tar entries.
	MaxEntries int
	// MaxNameLen bounds a name and a link name, in bytes.
	MaxNameLen int
	// MaxXattrSize bounds one xattr value, in bytes.
	MaxXattrSize int
	// MaxSparseSize bounds the size a sparse file expands to, in bytes.
	MaxSparseSize int64
}

// DefaultLimits are the limits Apply uses unless WithLimits is given.
var DefaultLimits = Limits{
	MaxEntries:    1 << 20,
	MaxNameLen:    4096,     // PATH_MAX
	MaxXattrSize:  64 << 10, // XATTR_SIZE_MAX
	MaxSparseSize: 16 << 30,
}

// ApplyOpt sets an option of Apply.
type ApplyOpt func(*applyOptions)

type applyOptions struct {
	convention Convention
	parents    []string
	devices    bool
	noSetuid   bool
	limits     Limits
	// madeParents is told of the folders made for entries of the layer
	// that has no entry for them.
	madeParents func(names []string)
}

// WithConvention sets the whiteout convention (Plain by default).
func WithConvention(c Convention) ApplyOpt {
	return func(o *applyOptions) { o.convention = c }
}

// WithParents names the lower folders of an overlay upper that Apply
// writes into, topmost first: a parent folder the layer does not create
// takes its metadata from them, and a hardlink whose target is only in
// them copies the target up first.
func WithParents(dirs ...string) ApplyOpt {
	return func(o *applyOptions) { o.parents = append([]string(nil), dirs...) }
}

// WithMadeParents has fn told, once Apply has succeeded, of the folders
// it made because an entry needed them while the layer has no entry for
// them, sorted (a folder before what is in it), relative to root. Applied
// without WithParents, they have the default metadata (root's owner when
// running as root, 0755); InheritParents gives them their lower folders'
// later. A folder an entry describes later is not named; one an entry
// replaced later may be (InheritParents skips what is no folder now).
func WithMadeParents(fn func(names []string)) ApplyOpt {
	return func(o *applyOptions) { o.madeParents = fn }
}

// WithDevices lets the layer create character and block devices.
func WithDevices() ApplyOpt {
	return func(o *applyOptions) { o.devices = true }
}

// WithoutSetuid clears setuid and setgid bits.
func WithoutSetuid() ApplyOpt {
	return func(o *applyOptions) { o.noSetuid = true }
}

// WithLimits replaces DefaultLimits; a zero field keeps its default.
func WithLimits(l Limits) ApplyOpt {
	return func(o *applyOptions) {
		if l.MaxEntries > 0 {
			o.limits.MaxEntries = l.MaxEntries
		}
		if l.MaxNameLen > 0 {
			o.limits.MaxNameLen = l.MaxNameLen
		}
		if l.MaxXattrSize > 0 {
			o.limits.MaxXattrSize = l.MaxXattrSize
		}
		if l.MaxSparseSize > 0 {
			o.limits.MaxSparseSize = l.MaxSparseSize
		}
	}
}
