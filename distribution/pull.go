package distribution

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/images"
)

// Defaults of a pull.
const (
	// DefaultConcurrency bounds the blobs fetched at once.
	DefaultConcurrency = 3
	// blobAttempts is how often one blob is tried within a pull when the
	// registry fails or the connection drops; each try resumes at the
	// persisted offset.
	blobAttempts = 3
	// busyRetry is how long to wait for a ref another writer holds.
	busyRetry = 100 * time.Millisecond
)

// Image is what a pull produced: the normalised reference and the
// descriptor of its manifest or index, for the image store.
type Image struct {
	Name   string
	Target ocispec.Descriptor
}

type options struct {
	platforms   []ocispec.Platform
	all         bool
	progress    reporter
	concurrency int
	fetched     func(desc ocispec.Descriptor, data []byte) // see WithManifestFetched
}

// Opt sets an option of Pull or Push.
type Opt func(*options) error

func newOptions(opts []Opt) (*options, error) {
	o := &options{concurrency: DefaultConcurrency}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if len(o.platforms) == 0 {
		o.platforms = []ocispec.Platform{DefaultPlatform()}
	}
	return o, nil
}

// WithPlatforms selects, from an index, the first manifest matching each
// of platforms (instead of DefaultPlatform).
func WithPlatforms(platforms ...ocispec.Platform) Opt {
	return func(o *options) error {
		if len(platforms) == 0 {
			return fmt.Errorf("WithPlatforms: no platform: %w", errdefs.ErrInvalidArgument)
		}
		o.platforms = platforms
		return nil
	}
}

// WithAllPlatforms pulls every manifest of an index.
func WithAllPlatforms() Opt {
	return func(o *options) error {
		o.all = true
		return nil
	}
}

// WithProgress sends the progress reports of a pull or push to fn.
func WithProgress(fn ProgressFunc) Opt {
	return func(o *options) error {
		o.progress.fn = fn
		return nil
	}
}

// WithManifestFetched calls fn with each manifest and index of a pull, its
// bytes verified, as soon as it is fetched: long before it is committed,
// which happens only once everything it references is. The root comes
// first. A caller that unpacks while the layers arrive (they are
// committed one by one, each reported StatusDone or StatusExists) learns
// the layers and config from it. fn must not block; it may be called
// from several goroutines at once.
func WithManifestFetched(fn func(desc ocispec.Descriptor, data []byte)) Opt {
	return func(o *options) error {
		o.fetched = fn
		return nil
	}
}

// WithConcurrency bounds the blobs fetched or uploaded at once
// (DefaultConcurrency).
func WithConcurrency(n int) Opt {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("concurrency %d: %w", n, errdefs.ErrInvalidArgument)
		}
		o.concurrency = n
		return nil
	}
}

// Pull fetches the image ref names into store: it resolves ref, selects
// the manifests of the platforms asked for from an index, and fetches
// each manifest's config and layers, at most WithConcurrency blobs at
// once. A manifest or index is committed only after everything it
// references, with berth.io/gc.ref.content.* labels naming those
// children (m.<i> for an index's manifests, config and l.<i> for a
// manifest's blobs), so a failed pull leaves no manifest whose children
// are missing.
//
// Every blob goes through a content Writer under the ref
// "pull-<digest>" and is verified by Commit against its descriptor: a
// registry that sends other bytes makes the pull fail with
// ErrFailedPrecondition, and nothing of that blob is kept. An image
// config (OCI or Docker media type) must be a JSON image config
// (images.CheckConfig), else the pull fails with ErrInvalidArgument
// before its manifest is committed. An
// interrupted download (a dropped connection, a stall, a cancelled ctx,
// a crash) leaves its ingest; the next try, within this pull or a later
// one, resumes it at the persisted offset with a Range request.
//
// The caller holds a lease on ctx (leases.WithLease) so that garbage
// collection keeps what a pull has written until the image is recorded.
func Pull(ctx context.Context, r *Resolver, store content.Store, ref string, opts ...Opt) (Image, error) {
	o, err := newOptions(opts)
	if err != nil {
		return Image{}, err
	}
	parsed, desc, err := r.Resolve(ctx, ref)
	if err != nil {
		return Image{}, err
	}
	repo, err := r.Repository(parsed)
	if err != nil {
		return Image{}, err
	}
	p := &puller{repo: repo, store: store, opts: o, slots: make(chan struct{}, o.concurrency)}
	if err := p.handle(ctx, desc); err != nil {
		return Image{}, err
	}
	return Image{Name: parsed.String(), Target: desc}, nil
}

// puller is the state of one Pull.
type puller struct {
	repo  *Repository
	store content.Store
	opts  *options
	slots chan struct{} // a token per fetch under way

	flights flights
}

// handle fetches desc and, for a manifest or index, what it references.
func (p *puller) handle(ctx context.Context, desc ocispec.Descriptor) error {
	return p.flights.do(ctx, desc.Digest, func() error {
		switch desc.MediaType {
		case ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList:
			return p.index(ctx, desc)
		case ocispec.MediaTypeImageManifest, MediaTypeDockerManifest:
			return p.manifest(ctx, desc)
		}
		if err := checkManifestType(desc.Digest.String(), desc.MediaType); err != nil {
			return err
		}
		return p.blob(ctx, desc, false)
	})
}

func (p *puller) index(ctx context.Context, desc ocispec.Descriptor) error {
	data, err := p.fetchManifest(ctx, desc)
	if err != nil {
		return err
	}
	var idx ocispec.Index
	if err := decodeManifest(desc, data, &idx.MediaType, &idx); err != nil {
		return err
	}
	p.manifestFetched(desc, data)
	children := p.selectManifests(idx.Manifests)
	if len(children) == 0 {
		var have []string
		for _, m := range idx.Manifests {
			if m.Platform != nil {
				have = append(have, FormatPlatform(*m.Platform))
			}
		}
		var want []string
		for _, pl := range p.opts.platforms {
			want = append(want, FormatPlatform(pl))
		}
		return fmt.Errorf("index %s: no manifest for %v (it has %v): %w", desc.Digest, want, have, errdefs.ErrNotFound)
	}
	// Labels are numbered by the manifest's place in the index, not in
	// the selection, so that a later pull of another platform of the same
	// index adds its label beside this one instead of replacing it.
	position := make(map[digest.Digest]int, len(idx.Manifests))
	for i, m := range idx.Manifests {
		if _, ok := position[m.Digest]; !ok {
			position[m.Digest] = i
		}
	}
	labels := map[string]string{}
	g, gctx := errgroup.WithContext(ctx)
	for _, child := range children {
		if err := checkChild(desc, child); err != nil {
			return err
		}
		if !isManifest(child.MediaType) {
			return fmt.Errorf("index %s: entry %s has media type %q, not a manifest: %w", desc.Digest, child.Digest, child.MediaType, errdefs.ErrInvalidArgument)
		}
		labels[gc.LabelRefContent+".m."+strconv.Itoa(position[child.Digest])] = child.Digest.String()
		g.Go(func() error { return p.handle(gctx, child) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return p.commitManifest(ctx, desc, data, labels)
}

// selectManifests returns the manifests of an index the pull wants: all,
// or the first match of each platform; an entry without a platform is
// always taken (a nested index, for one).
func (p *puller) selectManifests(all []ocispec.Descriptor) []ocispec.Descriptor {
	if p.opts.all {
		return all
	}
	var out []ocispec.Descriptor
	taken := map[digest.Digest]bool{}
	take := func(d ocispec.Descriptor) {
		if !taken[d.Digest] {
			taken[d.Digest] = true
			out = append(out, d)
		}
	}
	for _, want := range p.opts.platforms {
		for _, d := range all {
			if d.Platform != nil && matchPlatform(want, *d.Platform) {
				take(d)
				break
			}
		}
	}
	for _, d := range all {
		if d.Platform == nil {
			take(d)
		}
	}
	return out
}

func (p *puller) manifest(ctx context.Context, desc ocispec.Descriptor) error {
	data, err := p.fetchManifest(ctx, desc)
	if err != nil {
		return err
	}
	var m ocispec.Manifest
	if err := decodeManifest(desc, data, &m.MediaType, &m); err != nil {
		return err
	}
	p.manifestFetched(desc, data)
	if m.Config.Digest == "" {
		return fmt.Errorf("manifest %s: no config: %w", desc.Digest, errdefs.ErrInvalidArgument)
	}
	labels := map[string]string{gc.LabelRefContent + ".config": m.Config.Digest.String()}
	children := append([]ocispec.Descriptor{m.Config}, m.Layers...)
	for i, l := range m.Layers {
		labels[gc.LabelRefContent+".l."+strconv.Itoa(i)] = l.Digest.String()
	}
	for _, child := range children {
		if err := checkChild(desc, child); err != nil {
			return err
		}
		if isManifest(child.MediaType) {
			return fmt.Errorf("manifest %s: blob %s has the media type of a manifest, %q: %w", desc.Digest, child.Digest, child.MediaType, errdefs.ErrInvalidArgument)
		}
	}
	// The blobs are fetched in the manifest's order, config first, then
	// the layers bottom up: each takes a slot here, in turn, so that an
	// unpack that follows the pull gets the layers in the order it
	// applies them.
	g, gctx := errgroup.WithContext(ctx)
	for _, child := range children {
		if err := p.acquire(gctx); err != nil {
			break // the group's error, or ctx's, is returned below
		}
		g.Go(func() error {
			defer p.release()
			return p.flights.do(gctx, child.Digest, func() error { return p.blob(gctx, child, true) })
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The config is small, and one that is not JSON would fail only at
	// unpack or run: refuse it now, before the manifest is committed, so
	// that no image names it.
	if err := images.CheckConfig(ctx, p.store, m.Config); err != nil {
		return fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	return p.commitManifest(ctx, desc, data, labels)
}

// checkChild checks a descriptor that the manifest or index parent holds.
func checkChild(parent, child ocispec.Descriptor) error {
	if err := child.Digest.Validate(); err != nil {
		return fmt.Errorf("%s: child digest %.80q: %w: %w", parent.Digest, child.Digest, err, errdefs.ErrInvalidArgument)
	}
	if child.Size < 0 {
		return fmt.Errorf("%s: child %s has a negative size: %w", parent.Digest, child.Digest, errdefs.ErrInvalidArgument)
	}
	return nil
}

// decodeManifest decodes data into v and checks that its mediaType
// field, when set, agrees with desc.
func decodeManifest(desc ocispec.Descriptor, data []byte, mediaType *string, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("manifest %s: %w: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	if *mediaType != "" && *mediaType != desc.MediaType {
		return fmt.Errorf("manifest %s: its media type %q is not the descriptor's %q: %w", desc.Digest, *mediaType, desc.MediaType, errdefs.ErrInvalidArgument)
	}
	return nil
}

// fetchManifest reads the manifest or index desc from the store when it
// is there, else from the registry.
func (p *puller) fetchManifest(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > MaxManifestSize {
		return nil, fmt.Errorf("manifest %s: %d bytes, more than %d: %w", desc.Digest, desc.Size, MaxManifestSize, errdefs.ErrInvalidArgument)
	}
	if _, err := p.store.Info(ctx, desc.Digest); err == nil {
		if data, err := content.ReadBlob(ctx, p.store, desc); err == nil && verify(desc, data) == nil {
			return data, nil
		}
	}
	if err := p.acquire(ctx); err != nil {
		return nil, err
	}
	defer p.release()
	return p.repo.FetchManifest(ctx, desc)
}

// commitManifest writes the verified manifest data with labels.
func (p *puller) commitManifest(ctx context.Context, desc ocispec.Descriptor, data []byte, labels map[string]string) error {
	ref := pullRef(desc)
	status := StatusDone
	if _, err := p.store.Info(ctx, desc.Digest); err == nil {
		status = StatusExists
	}
	if err := content.WriteBlob(ctx, p.store, ref, bytes.NewReader(data), desc, content.WithLabels(labels)); err != nil {
		return err
	}
	// The blob may have been there already: set the labels anyway.
	fields := make([]string, 0, len(labels))
	for k := range labels {
		fields = append(fields, "labels."+k)
	}
	if _, err := p.store.Update(ctx, content.Info{Digest: desc.Digest, Labels: labels}, fields...); err != nil {
		return err
	}
	p.opts.progress.report(Progress{Ref: ref, Digest: desc.Digest, MediaType: desc.MediaType, Status: status, Offset: desc.Size, Total: desc.Size})
	return nil
}

func (p *puller) manifestFetched(desc ocispec.Descriptor, data []byte) {
	if p.opts.fetched != nil {
		p.opts.fetched(desc, data)
	}
}

func pullRef(desc ocispec.Descriptor) string { return "pull-" + desc.Digest.String() }

func (p *puller) acquire(ctx context.Context) error {
	select {
	case p.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *puller) release() { <-p.slots }

// blob fetches one blob into the store, resuming its ingest.
// hold puts the blob desc, which the store has, under the lease on ctx
// by opening a Writer for it: the metadata store adds a blob it has to
// the caller's lease before it says AlreadyExists, so that a collection
// cannot take it (unreferenced, say, after an earlier pull's lease ended)
// before this pull's manifest references it. A store that opens a Writer
// instead (the bare content store, which has no leases) gets the ingest
// aborted again.
func (p *puller) hold(ctx context.Context, ref string, desc ocispec.Descriptor) error {
	w, err := p.store.Writer(ctx, content.WithRef(ref), content.WithDescriptor(desc))
	switch {
	case errdefs.IsAlreadyExists(err), errdefs.IsUnavailable(err):
		return nil
	case err != nil:
		return err
	}
	return errors.Join(w.Close(), p.store.Abort(ctx, ref))
}

func (p *puller) blob(ctx context.Context, desc ocispec.Descriptor, slotHeld bool) error {
	ref := pullRef(desc)
	pr := Progress{Ref: ref, Digest: desc.Digest, MediaType: desc.MediaType, Total: desc.Size}
	if _, err := p.store.Info(ctx, desc.Digest); err == nil {
		if err := p.hold(ctx, ref, desc); err != nil {
			return err
		}
		pr.Status, pr.Offset = StatusExists, desc.Size
		p.opts.progress.report(pr)
		return nil
	}
	if !slotHeld {
		pr.Status = StatusWaiting
		p.opts.progress.report(pr)
		if err := p.acquire(ctx); err != nil {
			return err
		}
		defer p.release()
	}
	var busy busyWait
	for attempt := 1; ; attempt++ {
		w, err := p.store.Writer(ctx, content.WithRef(ref), content.WithDescriptor(desc))
		switch {
		case errdefs.IsAlreadyExists(err):
			pr.Status, pr.Offset = StatusExists, desc.Size
			p.opts.progress.report(pr)
			return nil
		case errdefs.IsUnavailable(err):
			// Another writer has this blob's ingest: wait while it makes
			// progress.
			if err := busy.wait(ctx, p.store, ref, p.repo.timeouts.idle()); err != nil {
				return fmt.Errorf("blob %s: %w", desc.Digest, err)
			}
			attempt--
			continue
		case err != nil:
			return err
		}
		err = p.download(ctx, w, desc, &pr)
		err = errors.Join(err, w.Close())
		if err == nil {
			pr.Status, pr.Offset = StatusDone, desc.Size
			p.opts.progress.report(pr)
			return nil
		}
		if ctx.Err() != nil || !errdefs.IsUnavailable(err) || attempt == blobAttempts {
			return err
		}
	}
}

// busyWait waits for an ingest another Writer holds, as long as that
// writer moves it on: a pull that holds it is bound by its own Timeouts to
// move a byte or give up within their idle sum, and any other writer is
// given as long.
type busyWait struct {
	offset int64     // the ingest's offset when last seen moving
	since  time.Time // when it was last seen moving; zero before the first wait
}

// wait sleeps busyRetry, then fails when the ingest ref has not moved for
// limit.
func (b *busyWait) wait(ctx context.Context, store content.IngestManager, ref string, limit time.Duration) error {
	select {
	case <-time.After(busyRetry):
	case <-ctx.Done():
		return ctx.Err()
	}
	now := time.Now()
	st, err := store.Status(ctx, ref)
	if err != nil {
		// Gone or committed: the next Writer call tells which.
		b.since = now
		return nil
	}
	if b.since.IsZero() || st.Offset != b.offset {
		b.offset, b.since = st.Offset, now
		return nil
	}
	if idle := now.Sub(b.since); idle >= limit {
		return fmt.Errorf("ingest %q: another writer holds it and wrote no byte for %v: %w", ref, idle.Round(time.Millisecond), errdefs.ErrUnavailable)
	}
	return nil
}

// download writes the rest of desc to w and commits it.
func (p *puller) download(ctx context.Context, w content.Writer, desc ocispec.Descriptor, pr *Progress) error {
	st, err := w.Status()
	if err != nil {
		return err
	}
	offset := st.Offset
	if offset > desc.Size {
		if err := w.Truncate(0); err != nil {
			return err
		}
		offset = 0
	}
	if offset < desc.Size {
		if err := p.copyFrom(ctx, w, desc, offset, pr); err != nil {
			return err
		}
	}
	if err := w.Commit(ctx, desc.Size, desc.Digest); err != nil {
		if errdefs.IsAlreadyExists(err) {
			return nil
		}
		return fmt.Errorf("blob %s from %s: %w", desc.Digest, p.repo.ref.Name(), err)
	}
	return nil
}

// copyFrom fetches desc from offset into w; the resolver's Timeouts cut a
// download that stalls (ErrUnavailable, so the caller resumes it).
func (p *puller) copyFrom(ctx context.Context, w content.Writer, desc ocispec.Descriptor, offset int64, pr *Progress) error {
	rc, start, err := p.repo.Fetch(ctx, desc, offset)
	if err != nil {
		return err
	}
	defer rc.Close()
	if start != offset {
		// The registry ignored the Range request: start again.
		if err := w.Truncate(start); err != nil {
			return err
		}
	}
	m := &meter{r: &p.opts.progress, p: *pr}
	m.p.Status, m.p.Offset = StatusDownloading, start
	m.flush()
	buf := make([]byte, content.ChunkSize)
	remaining := desc.Size - start
	for remaining > 0 {
		n, rerr := rc.Read(buf[:min(int64(len(buf)), remaining)])
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			remaining -= int64(n)
			m.add(n)
		}
		if rerr == io.EOF {
			if remaining > 0 {
				return fmt.Errorf("blob %s: the registry sent %d bytes less than %d: %w", desc.Digest, remaining, desc.Size, errdefs.ErrUnavailable)
			}
			break
		}
		if rerr != nil {
			return fmt.Errorf("blob %s: %w: %w", desc.Digest, rerr, errdefs.ErrUnavailable)
		}
	}
	*pr = m.p
	return nil
}
