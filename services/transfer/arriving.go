package transfer

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/unpack"
)

// pullAndUnpack pulls ref and unpacks it into sn at the same time: the
// unpack starts once the pull has fetched the root manifest (or index)
// and applies each layer as soon as the pull has committed it, so that
// fetching the next layers overlaps applying the first (the pull fetches
// them in order, bottom first). A failed pull stops the unpack, and its
// error is the one returned: the pull checks what it fetches (digests,
// the config) and says best what is wrong; an unpack that fails lets the
// pull finish, and its error is returned then.
func (s *service) pullAndUnpack(ctx context.Context, r *distribution.Resolver, ref string, opts []distribution.Opt, want []string, sn snapshots.Snapshotter, snName string, report distribution.ProgressFunc) (distribution.Image, error) {
	ar := newArriving(s.Content)
	uctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		img     distribution.Image
		pullErr error
	)
	go func() {
		img, pullErr = distribution.Pull(ctx, r, s.Content, ref, append(opts,
			distribution.WithManifestFetched(ar.fetched),
			distribution.WithProgress(func(p distribution.Progress) {
				ar.observe(p)
				report(p)
			}))...)
		if pullErr != nil {
			cancel()
		}
		ar.end(pullErr) // last: it publishes img and pullErr
	}()
	root, err := ar.root(uctx)
	if err == nil {
		err = s.unpack(uctx, ar, root, want, sn, snName, report)
	}
	<-ar.ended
	if pullErr != nil {
		return img, pullErr
	}
	return img, err
}

// arriving is the content an unpack reads while a pull is still writing
// it. Manifests and indexes the pull has fetched but not committed yet
// (they are committed last) are served from memory; a blob that is not in
// the store yet is waited for until the pull reports it committed, or
// ends.
type arriving struct {
	store content.Store

	mu        sync.Mutex                        // guards the fields below
	manifests map[digest.Digest][]byte          // fetched manifests and indexes
	first     *ocispec.Descriptor               // the root: the first manifest fetched
	committed map[digest.Digest]bool            // blobs the pull reported in the store
	waiters   map[digest.Digest][]chan struct{} // closed when the digest is fetched or committed
	err       error                             // the pull's, once it ended

	rooted chan struct{} // closed once first is set
	ended  chan struct{} // closed when the pull has returned
}

func newArriving(store content.Store) *arriving {
	return &arriving{
		store:     store,
		manifests: map[digest.Digest][]byte{},
		committed: map[digest.Digest]bool{},
		waiters:   map[digest.Digest][]chan struct{}{},
		rooted:    make(chan struct{}),
		ended:     make(chan struct{}),
	}
}

// fetched is the pull's distribution.WithManifestFetched.
func (a *arriving) fetched(desc ocispec.Descriptor, data []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.manifests[desc.Digest] = data
	a.wakeLocked(desc.Digest)
	if a.first == nil {
		a.first = &desc
		close(a.rooted)
	}
}

// observe is told of every progress report of the pull.
func (a *arriving) observe(p distribution.Progress) {
	if p.Status != distribution.StatusDone && p.Status != distribution.StatusExists {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.committed[p.Digest] = true
	a.wakeLocked(p.Digest)
}

// wakeLocked wakes the readers waiting for d.
func (a *arriving) wakeLocked(d digest.Digest) {
	for _, c := range a.waiters[d] {
		close(c)
	}
	delete(a.waiters, d)
}

// end records that the pull returned err.
func (a *arriving) end(err error) {
	a.mu.Lock()
	a.err = err
	a.mu.Unlock()
	close(a.ended)
}

// root waits for the pull's root manifest or index.
func (a *arriving) root(ctx context.Context) (ocispec.Descriptor, error) {
	select {
	case <-a.rooted:
	case <-a.ended:
		select {
		case <-a.rooted:
		default:
			return ocispec.Descriptor{}, a.endErr()
		}
	case <-ctx.Done():
		return ocispec.Descriptor{}, ctx.Err()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return *a.first, nil
}

// endErr is why waiting for content ended with the pull.
func (a *arriving) endErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return fmt.Errorf("the pull failed: %w", a.err)
	}
	return fmt.Errorf("the pull ended without it: %w", errdefs.ErrNotFound)
}

// ReaderAt opens desc: a fetched manifest from memory, a blob from the
// store once the pull has reported it there. A blob is read only then,
// also one the store had before: the pull has put it under its lease by
// then, so garbage collection cannot take it mid-unpack.
func (a *arriving) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	for {
		a.mu.Lock()
		data, fetched := a.manifests[desc.Digest]
		ready := a.committed[desc.Digest]
		var c chan struct{}
		if !fetched && !ready {
			// Registered under the lock that fetched and observe take,
			// so that neither is missed.
			c = make(chan struct{})
			a.waiters[desc.Digest] = append(a.waiters[desc.Digest], c)
		}
		a.mu.Unlock()
		switch {
		case fetched:
			return bytesReaderAt{bytes.NewReader(data)}, nil
		case ready:
			return a.store.ReaderAt(ctx, desc)
		}
		select {
		case <-c:
		case <-a.ended:
			// Everything the pull committed is in the store now.
			ra, err := a.store.ReaderAt(ctx, desc)
			if errdefs.IsNotFound(err) {
				return nil, fmt.Errorf("blob %s: %w", desc.Digest, a.endErr())
			}
			return ra, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Update is the store's: the unpack labels the config, which it has read,
// so it is committed.
func (a *arriving) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	return a.store.Update(ctx, info, fieldpaths...)
}

var _ unpack.Store = (*arriving)(nil)

// bytesReaderAt is a content.ReaderAt over bytes in memory.
type bytesReaderAt struct{ *bytes.Reader }

func (bytesReaderAt) Close() error { return nil }
