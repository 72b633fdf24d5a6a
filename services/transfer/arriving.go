package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
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
// and applies each layer from the bytes the pull has written so far, the
// layer's fetch and its apply going on together; fetching the next layers
// overlaps applying the first (the pull fetches them in order, bottom
// first). A layer's apply gets the blob's last byte only once the pull has
// committed it, that is checked its digest, so no snapshot is committed
// from bytes that are not the blob's; a layer whose bytes the pull fetched
// again, or whose apply failed before the pull checked them, is applied
// again (unpack.Arriving). A failed pull stops the unpack, and its
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
		img, pullErr = distribution.Pull(ctx, r, ar.pullStore(), ref, append(opts,
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
// (they are committed last) are served from memory; a blob the pull is
// writing is read from its ingest as it grows (pullStore), and one that
// is neither is waited for until the pull reports it committed, or ends.
type arriving struct {
	store content.Store

	mu        sync.Mutex                        // guards the fields below
	manifests map[digest.Digest][]byte          // fetched manifests and indexes
	first     *ocispec.Descriptor               // the root: the first manifest fetched
	committed map[digest.Digest]bool            // blobs the pull reported in the store
	ingests   map[digest.Digest]*ingest         // blobs the pull is writing, or wrote
	waiters   map[digest.Digest][]chan struct{} // closed when anything above changes for the digest
	err       error                             // the pull's, once it ended

	rooted chan struct{} // closed once first is set
	ended  chan struct{} // closed when the pull has returned
}

func newArriving(store content.Store) *arriving {
	return &arriving{
		store:     store,
		manifests: map[digest.Digest][]byte{},
		committed: map[digest.Digest]bool{},
		ingests:   map[digest.Digest]*ingest{},
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
	if in := a.ingests[p.Digest]; in != nil && !in.verified {
		// Committed, but not from this pull's ingest (another
		// writer's, or the store had it): what readers were handed of
		// the ingest was never checked.
		a.cutLocked(in, 0)
	}
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
// store once the pull has reported it there, and one the pull is writing
// from its ingest, as it grows (see growing). A committed blob is read
// only once reported, also one the store had before: the pull has put it
// under its lease by then, so garbage collection cannot take it
// mid-unpack; an ingest is under the pull's lease while it is written.
func (a *arriving) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	for {
		a.mu.Lock()
		data, fetched := a.manifests[desc.Digest]
		ready := a.committed[desc.Digest]
		in := a.ingests[desc.Digest]
		var c chan struct{}
		if !fetched && !ready && in == nil {
			c = a.waitLocked(desc.Digest)
		}
		a.mu.Unlock()
		switch {
		case fetched:
			return bytesReaderAt{bytes.NewReader(data)}, nil
		case ready:
			return a.store.ReaderAt(ctx, desc)
		case in != nil:
			return &growing{a: a, ctx: ctx, desc: desc}, nil
		}
		select {
		case <-c:
		case <-a.ended:
			return a.openEnded(ctx, desc)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Settle is unpack.Arriving's: it waits until the pull has committed
// desc, and reports whether a reader was handed bytes of its ingest; or
// the pull's error, when it ended without it.
func (a *arriving) Settle(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	for {
		a.mu.Lock()
		if a.committed[desc.Digest] {
			in := a.ingests[desc.Digest]
			a.mu.Unlock()
			return in != nil && in.handedOut, nil
		}
		c := a.waitLocked(desc.Digest)
		a.mu.Unlock()
		select {
		case <-c:
		case <-a.ended:
			ra, err := a.openEnded(ctx, desc)
			if err != nil {
				return false, err
			}
			a.mu.Lock()
			in := a.ingests[desc.Digest]
			a.mu.Unlock()
			return in != nil && in.handedOut, ra.Close()
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// openEnded opens desc once the pull has ended: everything the pull
// committed is in the store now.
func (a *arriving) openEnded(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	ra, err := a.store.ReaderAt(ctx, desc)
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, a.endErr())
	}
	return ra, err
}

// waitLocked returns a channel closed at the next change for d. Made
// under the lock that every change takes, so that none is missed.
func (a *arriving) waitLocked(d digest.Digest) chan struct{} {
	c := make(chan struct{})
	a.waiters[d] = append(a.waiters[d], c)
	return c
}

// ingest is what the unpack may read of a blob the pull is writing.
type ingest struct {
	ra        io.ReaderAt // the open Writer's bytes; nil between Writers
	written   int64       // bytes of ra that may be read
	readers   []*growing  // reading it, so a rewrite can fail them
	handedOut bool        // a reader was handed bytes of it
	verified  bool        // a Writer of this pull committed it
}

// pullStore is the content store the pull writes through: the store,
// with Writers that tell the unpack what they have written.
func (a *arriving) pullStore() content.Store { return pullStore{Store: a.store, a: a} }

type pullStore struct {
	content.Store
	a *arriving
}

func (s pullStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	w, err := s.Store.Writer(ctx, opts...)
	if err != nil {
		return w, err
	}
	var wo content.WriterOpts
	for _, o := range opts {
		if err := o(&wo); err != nil {
			return nil, errors.Join(err, w.Close())
		}
	}
	if wo.Desc.Digest == "" {
		return w, nil
	}
	var ra io.ReaderAt
	if rr, ok := w.(content.Rereader); ok {
		ra = rr.Reread()
	}
	st, err := w.Status()
	if ra == nil || err != nil {
		// Read once committed, then; what readers were handed of the
		// ingest may now be written again unseen.
		s.a.cut(wo.Desc.Digest, 0)
		return w, nil
	}
	s.a.attach(wo.Desc.Digest, ra, st.Offset)
	return &pullWriter{Writer: w, a: s.a, d: wo.Desc.Digest, ra: ra}, nil
}

// pullWriter reports what a Writer of the pull does to its ingest.
type pullWriter struct {
	content.Writer
	a  *arriving
	d  digest.Digest
	ra io.ReaderAt
}

func (w *pullWriter) Write(p []byte) (int, error) {
	n, err := w.Writer.Write(p)
	if n > 0 {
		w.a.wrote(w.d, int64(n))
	}
	return n, err
}

func (w *pullWriter) Truncate(size int64) error {
	err := w.Writer.Truncate(size)
	// Failed or not, nothing past size is read again from this ingest.
	w.a.cut(w.d, size)
	return err
}

func (w *pullWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	err := w.Writer.Commit(ctx, size, expected, opts...)
	if err == nil {
		w.a.verified(w.d)
		w.a.observe(distribution.Progress{Digest: w.d, Status: distribution.StatusDone})
	}
	w.a.detach(w.d, w.ra)
	return err
}

func (w *pullWriter) Close() error {
	err := w.Writer.Close()
	w.a.detach(w.d, w.ra)
	return err
}

// attach records that a Writer of d is open on ra with offset bytes.
func (a *arriving) attach(d digest.Digest, ra io.ReaderAt, offset int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	in := a.ingests[d]
	if in == nil {
		in = &ingest{}
		a.ingests[d] = in
	}
	a.cutLocked(in, offset)
	in.ra, in.written = ra, offset
	a.wakeLocked(d)
}

// verified records that a Writer of this pull committed d: what readers
// were handed of its ingest is the blob's.
func (a *arriving) verified(d digest.Digest) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if in := a.ingests[d]; in != nil {
		in.verified = true
	}
}

// wrote records n more bytes written to d's ingest.
func (a *arriving) wrote(d digest.Digest, n int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if in := a.ingests[d]; in != nil {
		in.written += n
		a.wakeLocked(d)
	}
}

// cut records that d's ingest was cut to size bytes.
func (a *arriving) cut(d digest.Digest, size int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if in := a.ingests[d]; in != nil {
		a.cutLocked(in, size)
		in.written = min(in.written, size)
		a.wakeLocked(d)
	}
}

// cutLocked fails every reader that was handed bytes of in past size:
// what is written there from now on need not be what it read.
func (a *arriving) cutLocked(in *ingest, size int64) {
	for _, g := range in.readers {
		if g.handed > size {
			g.rewritten = true
		}
	}
}

// detach records that the Writer on ra is closed or committed.
func (a *arriving) detach(d digest.Digest, ra io.ReaderAt) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if in := a.ingests[d]; in != nil && in.ra == ra {
		in.ra = nil
		a.wakeLocked(d)
	}
}

// growing reads a blob while the pull writes it: from its ingest up to
// the bytes written, waiting for more, and from the store once the pull
// has committed it. The blob's last byte comes only from the store: a
// reader that has it has read a blob whose digest the commit checked.
// A reader that was handed bytes the pull then writes again (a fetch
// that started over) fails with unpack.ErrRefetched.
type growing struct {
	a    *arriving
	ctx  context.Context // bounds the waits, with the pull's end
	desc ocispec.Descriptor

	// Under a.mu:
	handed    int64            // end of the furthest bytes read from an ingest
	rewritten bool             // bytes before handed were cut
	committed content.ReaderAt // the blob in the store, once committed
	failed    io.ReaderAt      // an ingest reader that failed: not read again
	closed    bool             // by Close: reads fail, waits end
}

func (g *growing) Size() int64 { return g.desc.Size }

func (g *growing) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("blob %s: read at negative offset %d: %w", g.desc.Digest, off, errdefs.ErrInvalidArgument)
	}
	if off >= g.desc.Size {
		return 0, io.EOF
	}
	var eof error
	if end := g.desc.Size - off; int64(len(p)) > end {
		p, eof = p[:end], io.EOF
	}
	n := 0
	for n < len(p) {
		m, err := g.read(p[n:], off+int64(n))
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, eof
}

// read reads some of p at off, waiting until there is some to read.
func (g *growing) read(p []byte, off int64) (int, error) {
	d, a := g.desc.Digest, g.a
	for {
		a.mu.Lock()
		if g.rewritten {
			a.mu.Unlock()
			return 0, fmt.Errorf("blob %s: %w", d, unpack.ErrRefetched)
		}
		if g.closed {
			a.mu.Unlock()
			return 0, fmt.Errorf("blob %s: read after close: %w", d, os.ErrClosed)
		}
		if ra := g.committed; ra != nil {
			a.mu.Unlock()
			return ra.ReadAt(p, off)
		}
		if a.committed[d] {
			a.mu.Unlock()
			if err := g.openCommitted(a.store.ReaderAt(g.ctx, g.desc)); err != nil {
				return 0, err
			}
			continue
		}
		in := a.ingests[d]
		// The last byte waits for the commit.
		if limit := min(in.written, g.desc.Size-1); in.ra != nil && in.ra != g.failed && off < limit {
			ra, n := in.ra, min(int64(len(p)), limit-off)
			if !slices.Contains(in.readers, g) {
				in.readers = append(in.readers, g)
			}
			// Set before reading, so that a cut meanwhile fails g.
			g.handed = max(g.handed, off+n)
			in.handedOut = true
			a.mu.Unlock()
			if m, _ := ra.ReadAt(p[:n], off); m > 0 {
				return m, nil
			}
			// The Writer closed meanwhile (Commit closes it before
			// the pull reports the blob), or the ingest cannot be
			// read (nothing read, whatever the error): the rest
			// comes from the next Writer, or from the store once
			// committed.
			a.mu.Lock()
			g.failed = ra
			a.mu.Unlock()
			continue
		}
		c := a.waitLocked(d)
		a.mu.Unlock()
		select {
		case <-c:
		case <-a.ended:
			if err := g.openCommitted(a.openEnded(g.ctx, g.desc)); err != nil {
				return 0, err
			}
		case <-g.ctx.Done():
			return 0, g.ctx.Err()
		}
	}
}

// openCommitted keeps ra, the committed blob, to read from now on (or
// closes it, when a concurrent ReadAt kept one already).
func (g *growing) openCommitted(ra content.ReaderAt, err error) error {
	if err != nil {
		return err
	}
	g.a.mu.Lock()
	kept := g.committed == nil
	if kept {
		g.committed = ra
	}
	g.a.mu.Unlock()
	if !kept {
		return ra.Close()
	}
	return nil
}

// Close ends g: a read that waits for the pull returns at once, so that
// an apply that failed need not wait for the network to end its reads.
func (g *growing) Close() error {
	a := g.a
	a.mu.Lock()
	if in := a.ingests[g.desc.Digest]; in != nil {
		in.readers = slices.DeleteFunc(in.readers, func(r *growing) bool { return r == g })
	}
	ra := g.committed
	g.committed, g.closed = nil, true
	a.wakeLocked(g.desc.Digest)
	a.mu.Unlock()
	if ra != nil {
		return ra.Close()
	}
	return nil
}

// Update is the store's: the unpack labels the config, which it has read,
// so it is committed.
func (a *arriving) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	return a.store.Update(ctx, info, fieldpaths...)
}

var _ unpack.Arriving = (*arriving)(nil)

// bytesReaderAt is a content.ReaderAt over bytes in memory.
type bytesReaderAt struct{ *bytes.Reader }

func (bytesReaderAt) Close() error { return nil }
