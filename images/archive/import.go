package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode/utf8"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/images/platform"
	"github.com/berthrt/berth/images/progress"
)

// Bounds of an imported archive.
const (
	// MaxEntries bounds the entries of one archive.
	MaxEntries = 1 << 17
	// MaxPathSize bounds an entry's name (and a link's target), in bytes.
	MaxPathSize = 4096
	// maxLayoutSize bounds the oci-layout file.
	maxLayoutSize = 4 << 10
	// maxLinkHops bounds a chain of links in a docker save archive.
	maxLinkHops = 8
)

// Format is the kind of archive Import found.
type Format string

const (
	// FormatOCI is an OCI image layout: oci-layout, index.json, blobs/.
	FormatOCI Format = "oci"
	// FormatDocker is a `docker save` archive: manifest.json naming a
	// config and layer files (legacy <id>/layer.tar folders, <hex>.tar
	// files, or blobs/ paths).
	FormatDocker Format = "docker"
)

// ImageStore is what Import needs of an image store; images.Store
// is one.
type ImageStore interface {
	Create(ctx context.Context, img images.Image) (images.Image, error)
	Update(ctx context.Context, img images.Image, fieldpaths ...string) (images.Image, error)
}

// Result is what an Import found and recorded.
type Result struct {
	Format Format
	// Roots are the archive's images in its order: the entries of
	// index.json, or one Docker schema 2 manifest made of each entry of
	// manifest.json (one root per RepoTag, with the name annotations
	// that Import gave it; one without a name when it has no tag).
	Roots []ocispec.Descriptor
	// Images are the image records created or updated, in the order of
	// Roots. A root without a name (see Import) has none.
	Images []images.Image
	// Index is the archive's whole index, written to the store under
	// WithIndexName; zero otherwise.
	Index ocispec.Descriptor
}

// Import reads an archive from r once, from its start to its end, and
// writes it into store: an OCI image layout or a `docker save` archive,
// as a tar or a gzip-compressed tar (found by its magic bytes).
//
// Every file of the archive goes into store through a content Writer
// while it is read, verified as it is committed: a blob under
// blobs/<algorithm>/<hex> must have the digest its name gives, or the
// import fails with ErrFailedPrecondition naming the entry and nothing
// of it stays. (Other files are named by the digest of their bytes;
// legacy <id>/json and <id>/VERSION files are skipped.) After the end of
// the tar, Import follows each image from its root: every blob it needs
// must have been in the archive or already in store, with the size its
// descriptor gives; of an index, only the manifests for the platform the
// options choose (WithPlatform, WithAllPlatforms; linux/amd64 by
// default) and those without a platform are needed. Each manifest and
// index gets the berth.io/gc.ref.content.* labels of the children taken
// (images.GCRefLabels), so garbage collection keeps from an image's
// target everything that was imported for it and sweeps the rest.
//
// A docker save archive is converted as containerd converts it: each
// entry of manifest.json becomes a Docker schema 2 manifest over its
// config and layers (media types from the layers' magic bytes), written
// to store, whose platform is the config's. Its uncompressed layers must
// have the digests of the config's rootfs.diff_ids.
//
// Names: an index.json entry's io.containerd.image.name annotation is
// the image name as it is; otherwise its org.opencontainers.image.ref.name,
// which, when it is a whole reference, is normalised as pulls are
// ("busybox:1" is docker.io/library/busybox:1), and when it is a bare tag
// names an image only under WithNamePrefix. A docker archive's RepoTags
// are normalised so too. An image that exists is updated to the new
// target. is may be nil: then Import writes content only.
//
// Hostile archives are refused with an error that names the entry and
// wraps ErrInvalidArgument: a name that is absolute, not clean, leaves
// the archive or is longer than MaxPathSize; more than MaxEntries
// entries; a header the tar reader refuses (archive/tar bounds PAX and
// GNU long-name headers to 1 MiB); a device, FIFO or other special
// file, a sparse file; a symbolic or hard link under blobs/ or to a path outside the
// archive; an entry that appears twice; a blob whose size differs from
// its descriptor's; a blob that is missing; index.json or manifest.json
// larger than images.MaxManifestSize.
//
// Import writes no image record until the whole archive is read and
// checked, so a refused archive leaves no image; the blobs it committed
// before the failure are content without a reference. The caller holds a
// lease on ctx (leases.WithLease), as for a pull: it keeps those blobs
// from garbage collection while Import works, and lets a collection
// after the lease's end sweep what a failed import left.
func Import(ctx context.Context, store content.Store, is ImageStore, r io.Reader, opts ...Opt) (Result, error) {
	o, err := newOptions(opts)
	if err != nil {
		return Result{}, err
	}
	if len(o.ExportOnly) > 0 {
		return Result{}, fmt.Errorf("import: %s is an option of Export: %w", o.ExportOnly[0], errdefs.ErrInvalidArgument)
	}
	if len(o.DaemonOnly) > 0 {
		return Result{}, fmt.Errorf("import: %s is an option of the daemon's import (client.Import): %w", o.DaemonOnly[0], errdefs.ErrInvalidArgument)
	}
	nonce := make([]byte, 6)
	if _, err := rand.Read(nonce); err != nil {
		return Result{}, err
	}
	im := &importer{
		store:   store,
		opts:    o,
		nonce:   hex.EncodeToString(nonce),
		entries: map[string]*entry{},
		blobs:   map[digest.Digest]*entry{},
		dirs:    map[string]bool{},
		done:    map[digest.Digest]bool{},
		buf:     make([]byte, content.ChunkSize),
		peek:    bufio.NewReaderSize(nil, 512),
	}
	src, err := decompress(r)
	if err != nil {
		return Result{}, err
	}
	if err := im.read(ctx, tar.NewReader(src)); err != nil {
		return Result{}, err
	}
	var res Result
	switch {
	case im.index != nil:
		res, err = im.oci(ctx)
	case im.manifest != nil:
		res, err = im.docker(ctx)
	default:
		err = fmt.Errorf("import: the archive has neither index.json nor manifest.json: not an OCI image layout or a docker save archive: %w", errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return Result{}, err
	}
	if err := im.record(ctx, is, &res); err != nil {
		return Result{}, err
	}
	return res, nil
}

// decompress returns r, or r's gzip stream when it starts with gzip's
// magic bytes.
func decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("import: %w", err)
	}
	if bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("import: gzip: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		return zr, nil
	}
	return br, nil
}

// importer is the state of one Import; one goroutine uses it.
type importer struct {
	store content.Store
	opts  *options
	nonce string // makes this import's ingest refs its own

	entries map[string]*entry        // files and links by clean path
	blobs   map[digest.Digest]*entry // files under blobs/ by digest
	dirs    map[string]bool          // folders by clean path
	count   int                      // entries read

	layout, index, manifest []byte // oci-layout, index.json, manifest.json

	done map[digest.Digest]bool // blobs checked and labelled after the read
	buf  []byte                 // the copy buffer
	peek *bufio.Reader          // finds a file's compression
}

// entry is one file or link of the archive.
type entry struct {
	name string             // as the archive spells it
	desc ocispec.Descriptor // digest and size of a file in the store
	// compression of a file, from its magic bytes: "", "gzip" or "zstd".
	compression string
	link        string // for a link: the clean path it points to
	skipped     bool   // a file not written to the store
}

// read reads the whole tar, writing its files into the store.
func (im *importer) read(ctx context.Context, tr *tar.Reader) error {
	last := "the start"
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("import: tar header after %s: %w: %w", last, err, errdefs.ErrInvalidArgument)
		}
		last = fmt.Sprintf("entry %.200q", hdr.Name)
		im.count++
		if im.count > MaxEntries {
			return fmt.Errorf("import: %s: more than %d entries: %w", last, MaxEntries, errdefs.ErrInvalidArgument)
		}
		if err := im.readEntry(ctx, tr, hdr); err != nil {
			return fmt.Errorf("import: %s: %w", last, err)
		}
	}
}

// readEntry takes one entry of the tar.
func (im *importer) readEntry(ctx context.Context, tr *tar.Reader, hdr *tar.Header) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, err := cleanPath(hdr.Name)
	if err != nil {
		return err
	}
	if name == "" { // the archive's root folder
		return nil
	}
	dgst, isBlob, err := blobPath(name)
	if err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeDir {
		if _, ok := im.entries[name]; ok {
			return fmt.Errorf("a folder, but a file of that name came before: %w", errdefs.ErrInvalidArgument)
		}
		im.dirs[name] = true
		return nil
	}
	if _, ok := im.entries[name]; ok || im.dirs[name] {
		return fmt.Errorf("duplicate entry: the archive holds %q twice: %w", name, errdefs.ErrInvalidArgument)
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			// A sparse file's size is what it unpacks to, not what the
			// archive holds: a few bytes could claim a terabyte.
			return fmt.Errorf("a sparse file: %w", errdefs.ErrInvalidArgument)
		}
	}
	e := &entry{name: hdr.Name}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // TypeRegA is what old tars write
	case tar.TypeSymlink, tar.TypeLink:
		if isBlob {
			return fmt.Errorf("a link under blobs/: a blob must be a regular file: %w", errdefs.ErrInvalidArgument)
		}
		target, err := linkTarget(name, hdr)
		if err != nil {
			return err
		}
		e.link = target
		im.entries[name] = e
		return nil
	default:
		return fmt.Errorf("type %q is not allowed in an image archive (only files, folders and links): %w", hdr.Typeflag, errdefs.ErrInvalidArgument)
	}
	im.entries[name] = e
	switch {
	case name == "oci-layout":
		im.layout, err = readSmall(tr, hdr, maxLayoutSize)
		e.skipped = true
		return err
	case name == "index.json":
		im.index, err = readSmall(tr, hdr, images.MaxManifestSize)
		e.skipped = true
		return err
	case name == "manifest.json":
		im.manifest, err = readSmall(tr, hdr, images.MaxManifestSize)
		e.skipped = true
		return err
	case name == "repositories", path.Base(name) == "json" && path.Dir(name) != ".", path.Base(name) == "VERSION":
		// Docker's legacy metadata: what it says, manifest.json and the
		// config say too.
		e.skipped = true
		return nil
	}
	if isBlob {
		im.blobs[dgst] = e
	}
	e.desc, e.compression, err = im.write(ctx, tr, hdr.Size, dgst)
	return err
}

// cleanPath checks an entry's name and returns it clean, without a
// leading "./" or a trailing "/"; "" for the archive's root.
func cleanPath(name string) (string, error) {
	switch {
	case len(name) > MaxPathSize:
		return "", fmt.Errorf("a name of %d bytes, more than %d: %w", len(name), MaxPathSize, errdefs.ErrInvalidArgument)
	case !utf8.ValidString(name) || strings.ContainsRune(name, 0):
		return "", fmt.Errorf("the name is not valid UTF-8: %w", errdefs.ErrInvalidArgument)
	}
	n := strings.TrimSuffix(strings.TrimPrefix(name, "./"), "/")
	if n == "" || n == "." {
		return "", nil
	}
	if path.IsAbs(n) || n == ".." || strings.HasPrefix(n, "../") || path.Clean(n) != n {
		return "", fmt.Errorf("the path is absolute, not clean, or leaves the archive: %w", errdefs.ErrInvalidArgument)
	}
	return n, nil
}

// blobPath returns the digest that a path under blobs/ names. A folder
// blobs or blobs/<algorithm> is no blob; anything else under blobs/ must
// be blobs/<algorithm>/<encoded digest>.
func blobPath(name string) (digest.Digest, bool, error) {
	rest, ok := strings.CutPrefix(name, "blobs/")
	if !ok {
		return "", false, nil
	}
	alg, encoded, ok := strings.Cut(rest, "/")
	if !ok {
		return "", false, nil // blobs/<algorithm>, a folder
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), encoded)
	if err := d.Validate(); err != nil {
		return "", false, fmt.Errorf("under blobs/ but not blobs/<algorithm>/<encoded digest>: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	return d, true, nil
}

// linkTarget returns the clean path a symbolic or hard link at name
// points to, which must stay inside the archive.
func linkTarget(name string, hdr *tar.Header) (string, error) {
	if len(hdr.Linkname) > MaxPathSize {
		return "", fmt.Errorf("a link target of %d bytes, more than %d: %w", len(hdr.Linkname), MaxPathSize, errdefs.ErrInvalidArgument)
	}
	target := hdr.Linkname
	if hdr.Typeflag == tar.TypeSymlink {
		if path.IsAbs(target) {
			return "", fmt.Errorf("a symbolic link to the absolute path %.200q: %w", target, errdefs.ErrInvalidArgument)
		}
		target = path.Join(path.Dir(name), target)
	}
	clean, err := cleanPath(path.Clean(target))
	if err != nil || clean == "" {
		return "", fmt.Errorf("a link to %.200q, outside the archive: %w", hdr.Linkname, errdefs.ErrInvalidArgument)
	}
	return clean, nil
}

// readSmall reads a file of at most max bytes into memory.
func readSmall(r io.Reader, hdr *tar.Header, max int64) ([]byte, error) {
	if hdr.Size > max {
		return nil, fmt.Errorf("%d bytes, more than %d: %w", hdr.Size, max, errdefs.ErrInvalidArgument)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	return data, nil
}

// write writes the next size bytes of r into the store under a ref of
// this import, as the blob expected when it is set, and returns the
// blob's descriptor (digest and size) and compression. A failure leaves
// no ingest behind.
func (im *importer) write(ctx context.Context, r io.Reader, size int64, expected digest.Digest) (ocispec.Descriptor, string, error) {
	im.peek.Reset(&ctxReader{ctx: ctx, r: r})
	compression := sniff(im.peek)
	ref := "import-" + im.nonce + "-" + fmt.Sprint(im.count)
	if expected != "" {
		ref = "import-" + im.nonce + "-" + expected.String()
	}
	desc := ocispec.Descriptor{Digest: expected, Size: size}
	pr := progress.Progress{Ref: ref, Digest: expected, Status: progress.StatusDownloading, Total: size}
	w, err := im.store.Writer(ctx, content.WithRef(ref), content.WithDescriptor(desc))
	if errdefs.IsAlreadyExists(err) {
		// The store has the blob: read the bytes all the same, so that an
		// archive whose blob does not match its name is refused.
		h := expected.Algorithm().Hash()
		n, err := io.CopyBuffer(h, im.peek, im.buf)
		if err != nil {
			return desc, "", fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
		}
		if got := digest.NewDigest(expected.Algorithm(), h); n != size || got != expected {
			return desc, "", fmt.Errorf("the bytes have digest %s, not the %s its name gives: %w", got, expected, errdefs.ErrFailedPrecondition)
		}
		pr.Status, pr.Offset = progress.StatusExists, size
		im.opts.report(pr)
		return desc, compression, nil
	}
	if err != nil {
		return desc, "", err
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		// Nothing half-written: the ingest of a failed blob goes.
		cctx := context.WithoutCancel(ctx)
		if err := w.Close(); err == nil {
			_ = im.store.Abort(cctx, ref)
		}
	}()
	m := &meter{report: im.opts.report, p: pr}
	if _, err := io.CopyBuffer(io.MultiWriter(w, m), im.peek, im.buf); err != nil {
		return desc, "", fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	if expected == "" {
		desc.Digest = w.Digest()
	}
	if err := w.Commit(ctx, size, expected); err != nil && !errdefs.IsAlreadyExists(err) {
		if errdefs.IsFailedPrecondition(err) && expected != "" {
			return desc, "", fmt.Errorf("the bytes do not match the digest its name gives: %w", err)
		}
		return desc, "", err
	}
	committed = true
	if err := w.Close(); err != nil {
		return desc, "", err
	}
	m.p.Digest, m.p.Status = desc.Digest, progress.StatusDone
	m.flush()
	return desc, compression, nil
}

// sniff names the compression of what br holds from its magic bytes.
func sniff(br *bufio.Reader) string {
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return "gzip"
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zstd"
	}
	return ""
}

// ctxReader stops reading when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// resolve returns the file that the path name (from manifest.json)
// names, following links.
func (im *importer) resolve(name string) (*entry, error) {
	clean, err := cleanPath(name)
	if err != nil || clean == "" {
		return nil, fmt.Errorf("path %.200q: not a path inside the archive: %w", name, errdefs.ErrInvalidArgument)
	}
	p := clean
	for range maxLinkHops {
		e, ok := im.entries[p]
		switch {
		case !ok:
			return nil, fmt.Errorf("entry %.200q: missing from the archive: %w", p, errdefs.ErrInvalidArgument)
		case e.link != "":
			p = e.link
		case e.skipped:
			return nil, fmt.Errorf("entry %.200q: not an image file: %w", p, errdefs.ErrInvalidArgument)
		default:
			return e, nil
		}
	}
	return nil, fmt.Errorf("path %.200q: more than %d links: %w", name, maxLinkHops, errdefs.ErrInvalidArgument)
}

// oci follows the images of an OCI image layout's index.json.
func (im *importer) oci(ctx context.Context) (Result, error) {
	if im.layout == nil {
		return Result{}, fmt.Errorf("import: index.json without oci-layout: not an OCI image layout: %w", errdefs.ErrInvalidArgument)
	}
	var layout ocispec.ImageLayout
	if err := json.Unmarshal(im.layout, &layout); err != nil {
		return Result{}, fmt.Errorf("import: oci-layout: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if layout.Version != ocispec.ImageLayoutVersion {
		return Result{}, fmt.Errorf("import: oci-layout: version %.40q, not %s: %w", layout.Version, ocispec.ImageLayoutVersion, errdefs.ErrNotImplemented)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(im.index, &idx); err != nil {
		return Result{}, fmt.Errorf("import: index.json: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if idx.SchemaVersion != 2 || idx.MediaType != "" && idx.MediaType != ocispec.MediaTypeImageIndex {
		return Result{}, fmt.Errorf("import: index.json: schema version %d, media type %q: not an OCI index: %w", idx.SchemaVersion, idx.MediaType, errdefs.ErrInvalidArgument)
	}
	res := Result{Format: FormatOCI, Roots: idx.Manifests}
	for i, d := range idx.Manifests {
		if err := im.root(ctx, d, fmt.Sprintf("index.json entry %d", i)); err != nil {
			return Result{}, err
		}
	}
	if im.opts.IndexName != "" {
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(im.index), Size: int64(len(im.index))}
		if err := im.writeManifest(ctx, desc, im.index, idx.Manifests); err != nil {
			return Result{}, err
		}
		res.Index = desc
	}
	return res, nil
}

// root checks one image of the archive and follows it.
func (im *importer) root(ctx context.Context, d ocispec.Descriptor, what string) error {
	if err := images.CheckDescriptor(d); err != nil {
		return fmt.Errorf("import: %s: %w", what, err)
	}
	if images.IsSchema1(d.MediaType) {
		return fmt.Errorf("import: %s: Docker schema 1 (%s) is not supported: %w", what, d.MediaType, errdefs.ErrNotImplemented)
	}
	if !images.IsIndex(d.MediaType) && !images.IsManifest(d.MediaType) {
		return fmt.Errorf("import: %s: media type %.100q, not a manifest or an index: %w", what, d.MediaType, errdefs.ErrInvalidArgument)
	}
	return im.follow(ctx, d, what)
}

// follow checks that the blob desc, which parent references, is in the
// archive or the store with desc's size, and for a manifest or index
// follows its children and labels it with them.
func (im *importer) follow(ctx context.Context, desc ocispec.Descriptor, parent string) error {
	if im.done[desc.Digest] {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if e, ok := im.blobs[desc.Digest]; ok {
		if e.desc.Size != desc.Size {
			return fmt.Errorf("import: entry %.200q: %d bytes, but %s gives %s the size %d: %w", e.name, e.desc.Size, parent, desc.Digest, desc.Size, errdefs.ErrInvalidArgument)
		}
	} else {
		info, err := im.store.Info(ctx, desc.Digest)
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("import: entry %q: missing from the archive, and %s references it: %w", "blobs/"+desc.Digest.Algorithm().String()+"/"+desc.Digest.Encoded(), parent, errdefs.ErrInvalidArgument)
		}
		if err != nil {
			return err
		}
		if info.Size != desc.Size {
			return fmt.Errorf("import: blob %s: %d bytes in the store, but %s gives it the size %d: %w", desc.Digest, info.Size, parent, desc.Size, errdefs.ErrInvalidArgument)
		}
	}
	im.done[desc.Digest] = true
	if images.IsConfig(desc.MediaType) {
		if err := images.CheckConfig(ctx, im.store, desc); err != nil {
			return fmt.Errorf("import: %s: %w", parent, err)
		}
		return nil
	}
	if !images.IsIndex(desc.MediaType) && !images.IsManifest(desc.MediaType) {
		return nil
	}
	children, err := images.Children(ctx, im.store, desc)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	what := "manifest " + desc.Digest.String()
	taken := children
	if images.IsIndex(desc.MediaType) {
		what = "index " + desc.Digest.String()
		taken = images.SelectPlatforms(children, im.opts.matcher())
		if len(taken) == 0 && len(children) > 0 {
			return fmt.Errorf("import: %s: no manifest for %s (it has %s): %w", what, im.opts.platformString(), platformList(children), errdefs.ErrNotFound)
		}
	}
	for _, c := range taken {
		if images.IsManifest(desc.MediaType) && (images.IsIndex(c.MediaType) || images.IsManifest(c.MediaType)) {
			return fmt.Errorf("import: %s: blob %s has the media type of a manifest, %q: %w", what, c.Digest, c.MediaType, errdefs.ErrInvalidArgument)
		}
		if err := im.follow(ctx, c, what); err != nil {
			return err
		}
	}
	return im.label(ctx, desc, images.GCRefLabels(desc, children, im.opts.matcher()))
}

// label adds labels to the blob desc.
func (im *importer) label(ctx context.Context, desc ocispec.Descriptor, labels map[string]string) error {
	if len(labels) == 0 {
		return nil
	}
	_, err := im.store.Update(ctx, content.Info{Digest: desc.Digest, Labels: labels}, images.LabelFieldpaths(labels)...)
	return err
}

// writeManifest writes a manifest or index that Import made, labelled
// with the gc references of children.
func (im *importer) writeManifest(ctx context.Context, desc ocispec.Descriptor, data []byte, children []ocispec.Descriptor) error {
	labels := images.GCRefLabels(desc, children, nil)
	ref := "import-" + im.nonce + "-" + desc.Digest.String()
	if err := content.WriteBlob(ctx, im.store, ref, bytes.NewReader(data), desc, content.WithLabels(labels)); err != nil {
		return fmt.Errorf("import: %s: %w", desc.Digest, err)
	}
	im.done[desc.Digest] = true
	return im.label(ctx, desc, labels)
}

func platformList(descs []ocispec.Descriptor) string {
	var have []string
	for _, d := range descs {
		if d.Platform != nil {
			have = append(have, platform.Format(*d.Platform))
		}
	}
	return "[" + strings.Join(have, " ") + "]"
}
