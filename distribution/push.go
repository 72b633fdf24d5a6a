package distribution

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
)

// Push uploads the image desc, read from store, to ref: every blob and
// manifest it references, each only when the registry lacks it (at most
// WithConcurrency at once), each manifest after what it references, and
// desc itself last, under ref's tag (or by digest when ref has none). An
// index whose manifest is not in store is ErrNotFound: a push is of the
// whole image. ref's digest, when it has one, must be desc's.
func Push(ctx context.Context, r *Resolver, store content.Provider, ref string, desc ocispec.Descriptor, opts ...Opt) error {
	o, err := newOptions(opts)
	if err != nil {
		return err
	}
	parsed, err := ParseRef(ref)
	if err != nil {
		return err
	}
	if parsed.Digest != "" && parsed.Digest != desc.Digest {
		return fmt.Errorf("push %s: the reference's digest is not the image's %s: %w", ref, desc.Digest, errdefs.ErrInvalidArgument)
	}
	if err := checkManifestType(desc.Digest.String(), desc.MediaType); err != nil {
		return err
	}
	repo, err := r.Repository(parsed)
	if err != nil {
		return err
	}
	p := &pusher{repo: repo, store: store, opts: o, slots: make(chan struct{}, o.concurrency)}
	data, err := p.children(ctx, desc)
	if err != nil {
		return err
	}
	pr := Progress{Ref: pushRef(desc), Digest: desc.Digest, MediaType: desc.MediaType, Status: StatusDone, Offset: desc.Size, Total: desc.Size}
	if err := repo.PushManifest(ctx, desc, data, parsed.Tag); err != nil {
		return err
	}
	o.progress.report(pr)
	return nil
}

// pusher is the state of one Push.
type pusher struct {
	repo  *Repository
	store content.Provider
	opts  *options
	slots chan struct{} // a token per upload under way

	flights flights
}

func pushRef(desc ocispec.Descriptor) string { return "push-" + desc.Digest.String() }

// children reads the manifest or index desc from the store, pushes what
// it references, and returns its bytes.
func (p *pusher) children(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > MaxManifestSize {
		return nil, fmt.Errorf("manifest %s: %d bytes, more than %d: %w", desc.Digest, desc.Size, MaxManifestSize, errdefs.ErrInvalidArgument)
	}
	data, err := content.ReadBlob(ctx, p.store, desc)
	if err != nil {
		return nil, err
	}
	if err := verify(desc, data); err != nil {
		return nil, err
	}
	var refs []ocispec.Descriptor
	switch desc.MediaType {
	case ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList:
		var idx ocispec.Index
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, fmt.Errorf("index %s: %w: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
		}
		refs = idx.Manifests
	default:
		var m ocispec.Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("manifest %s: %w: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
		}
		refs = append([]ocispec.Descriptor{m.Config}, m.Layers...)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, child := range refs {
		if err := checkChild(desc, child); err != nil {
			return nil, err
		}
		g.Go(func() error { return p.flights.do(gctx, child.Digest, func() error { return p.push(gctx, child) }) })
	}
	return data, g.Wait()
}

// push uploads desc, after its children, unless the registry has it.
func (p *pusher) push(ctx context.Context, desc ocispec.Descriptor) error {
	pr := Progress{Ref: pushRef(desc), Digest: desc.Digest, MediaType: desc.MediaType, Total: desc.Size}
	if isManifest(desc.MediaType) {
		if err := checkManifestType(desc.Digest.String(), desc.MediaType); err != nil {
			return err
		}
		data, err := p.children(ctx, desc)
		if err != nil {
			return err
		}
		return p.unlessExists(ctx, desc, pr, func() error { return p.repo.PushManifest(ctx, desc, data, "") })
	}
	pr.Status = StatusWaiting
	p.opts.progress.report(pr)
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.slots }()
	return p.unlessExists(ctx, desc, pr, func() error {
		ra, err := p.store.ReaderAt(ctx, desc)
		if err != nil {
			return err
		}
		defer ra.Close()
		m := &meter{r: &p.opts.progress, p: pr}
		m.p.Status = StatusUploading
		m.flush()
		return p.repo.PushBlob(ctx, desc, &meteredReader{r: content.NewReader(ra), m: m})
	})
}

// unlessExists runs upload unless the registry has desc, and reports
// which it was.
func (p *pusher) unlessExists(ctx context.Context, desc ocispec.Descriptor, pr Progress, upload func() error) error {
	ok, err := p.repo.Exists(ctx, desc)
	if err != nil {
		return err
	}
	pr.Status = StatusExists
	if !ok {
		if err := upload(); err != nil {
			return err
		}
		pr.Status = StatusDone
	}
	pr.Offset = desc.Size
	p.opts.progress.report(pr)
	return nil
}

// meteredReader reports the bytes read through it.
type meteredReader struct {
	r io.Reader
	m *meter
}

func (r *meteredReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.m.add(n)
	return n, err
}
