package transfer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"

	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/events/topics"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/internal/apiconv"
	"github.com/berthrt/berth/internal/transferwire"
	"github.com/berthrt/berth/leases"
	imagesv1 "github.com/berthrt/berth/proto/images/v1"
	api "github.com/berthrt/berth/proto/transfer/v1"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/metadata"
)

// The bounds of the Import and Export streams, shared with the client
// library (see package transferwire).
const (
	ChunkSize    = transferwire.ChunkSize
	ImportWindow = transferwire.ImportWindow
)

// Import reads the archive a client uploads and records its images; see
// the API's documentation for the protocol.
func (s *service) Import(ctx context.Context, stream api.Transfer_ImportServer) (err error) {
	defer errdefs.StreamCall(ctx, "/berth.services.transfer.v1.Transfer/Import").Done(&err)
	return errdefs.ToTTRPC(s.importArchive(ctx, stream))
}

func (s *service) importArchive(ctx context.Context, stream api.Transfer_ImportServer) error {
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("import: no options: %w", errdefs.ErrInvalidArgument)
	} else if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	o := first.GetOptions()
	if o == nil || len(first.GetData()) > 0 || first.GetEnd() != nil {
		return fmt.Errorf("import: the first request carries options, and only them: %w", errdefs.ErrInvalidArgument)
	}
	ctx, err = streamNamespace(ctx, o.GetNamespace())
	if err != nil {
		return err
	}
	opts, err := importOptions(o)
	if err != nil {
		return err
	}
	sn, snName, err := s.unpackTarget(o.GetUnpack(), o.GetSnapshotter())
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	release := func() {}
	if id := o.GetLease(); id != "" {
		ctx = leases.WithLease(ctx, id)
	} else if ctx, release, err = s.lease(ctx, "import"); err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var sendMu sync.Mutex // one Send at a time: the upload's and the relay's
	send := func(m *api.ImportResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	up := newUpload(stream, send, s.MaxImportSize)
	go up.run()
	rl := newRelay(func(batch []*api.Progress) error { return send(&api.ImportResponse{Progress: batch}) })
	is := &importImages{service: s, complete: up.complete, hold: sn != nil}
	res, err := archive.Import(ctx, s.Content, is, up.pr, append(opts, archive.WithProgress(rl.report))...)
	if err == nil {
		// An archive that named no image records nothing, but is whole
		// only with its end.
		err = up.complete()
	}
	if err == nil && sn != nil {
		err = s.unpackImported(ctx, res.Images, o.GetPlatforms(), sn, snName, rl.report)
		if err == nil {
			res.Images, err = is.recordHeld(ctx)
		}
	}
	sendErr := rl.close()
	if err != nil {
		// Ends the upload's goroutine: its Write fails, and its Recv once
		// the stream ends with this call.
		up.pr.CloseWithError(err)
		return err
	}
	release() // before the reply: a client that lists leases next sees none
	if sendErr != nil {
		return sendErr
	}
	result := &api.ImportResult{Format: string(res.Format)}
	for _, img := range res.Images {
		result.Images = append(result.Images, apiconv.ImageToProto(img))
	}
	if res.Index.Digest != "" {
		result.Index = apiconv.DescriptorToProto(res.Index)
	}
	return send(&api.ImportResponse{Result: result})
}

// unpackImported unpacks each image an import recorded into sn, as a
// pull does; images that share a target are unpacked once.
func (s *service) unpackImported(ctx context.Context, imgs []images.Image, want []string, sn snapshots.Snapshotter, snName string, report distribution.ProgressFunc) error {
	done := make(map[digest.Digest]bool, len(imgs))
	for _, img := range imgs {
		if done[img.Target.Digest] {
			continue
		}
		done[img.Target.Digest] = true
		if err := s.unpack(ctx, s.Content, img.Target, want, sn, snName, report); err != nil {
			return fmt.Errorf("import: image %q: %w", img.Name, err)
		}
	}
	return nil
}

// importOptions returns the archive options of an import's first request.
func importOptions(o *api.ImportOptions) ([]archive.Opt, error) {
	opts, err := archivePlatform(o.GetPlatforms(), o.GetAllPlatforms())
	if err != nil {
		return nil, err
	}
	if p := o.GetNamePrefix(); p != "" {
		opts = append(opts, archive.WithNamePrefix(p))
	}
	if n := o.GetIndexName(); n != "" {
		opts = append(opts, archive.WithIndexName(n))
	}
	return opts, nil
}

// archivePlatform returns the archive option of a request's platforms
// and all_platforms.
func archivePlatform(want []string, all bool) ([]archive.Opt, error) {
	ps, err := parsePlatforms(want)
	switch {
	case err != nil:
		return nil, err
	case all && len(ps) > 0:
		return nil, fmt.Errorf("platforms and all_platforms together: %w", errdefs.ErrInvalidArgument)
	case all:
		return []archive.Opt{archive.WithAllPlatforms()}, nil
	case len(ps) > 1:
		return nil, fmt.Errorf("%d platforms: one, or all_platforms: %w", len(ps), errdefs.ErrInvalidArgument)
	case len(ps) == 1:
		return []archive.Opt{archive.WithPlatform(ps[0])}, nil
	}
	return nil, nil
}

// upload moves an Import stream's data into a pipe that archive.Import
// reads. Its goroutine (run) owns the stream's Recv; it acknowledges
// each chunk once Import has taken it, so that a client that keeps to
// ImportWindow never fills the stream's buffer.
type upload struct {
	stream api.Transfer_ImportServer
	send   func(*api.ImportResponse) error
	max    int64 // bound of the archive's size; 0 for none

	pr *io.PipeReader
	pw *io.PipeWriter

	done chan struct{} // closed when run returns
	err  error         // run's result; read after done
}

func newUpload(stream api.Transfer_ImportServer, send func(*api.ImportResponse) error, max int64) *upload {
	pr, pw := io.Pipe()
	return &upload{stream: stream, send: send, max: max, pr: pr, pw: pw, done: make(chan struct{})}
}

// run receives until the upload's end or an error, and closes the pipe
// with it: the reader sees io.EOF only after a whole upload.
func (u *upload) run() {
	defer close(u.done)
	u.err = u.receive()
	u.pw.CloseWithError(u.err)
}

func (u *upload) receive() error {
	var n int64
	for {
		req, err := u.stream.Recv()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("import: the upload ended after %d bytes without its end: truncated: %w", n, errdefs.ErrInvalidArgument)
		} else if err != nil {
			return fmt.Errorf("import: after %d bytes: %w", n, err)
		}
		if req.GetOptions() != nil {
			return fmt.Errorf("import: options after the first request: %w", errdefs.ErrInvalidArgument)
		}
		data := req.GetData()
		if end := req.GetEnd(); end != nil {
			if len(data) > 0 {
				return fmt.Errorf("import: data with the end: %w", errdefs.ErrInvalidArgument)
			}
			if end.GetSize() != n {
				return fmt.Errorf("import: the end says %d bytes, %d arrived: %w", end.GetSize(), n, errdefs.ErrInvalidArgument)
			}
			return nil
		}
		if len(data) == 0 || len(data) > ChunkSize {
			return fmt.Errorf("import: a request of %d bytes of data: 1 to %d: %w", len(data), ChunkSize, errdefs.ErrInvalidArgument)
		}
		if u.max > 0 && n+int64(len(data)) > u.max {
			return fmt.Errorf("import: the archive is larger than the daemon's bound of %d bytes: %w", u.max, errdefs.ErrInvalidArgument)
		}
		if _, err := u.pw.Write(data); err != nil {
			return err // Import stopped reading: its error is the call's
		}
		n += int64(len(data))
		if err := u.send(&api.ImportResponse{Received: n}); err != nil {
			return err
		}
	}
}

// complete reads what Import left of the upload (a tar's padding, say)
// and waits for its end: nil only when the whole upload arrived.
func (u *upload) complete() error {
	if _, err := io.Copy(io.Discard, u.pr); err != nil {
		return err
	}
	<-u.done
	return u.err
}

// importImages is the image store of an Import: it records an image only
// once the whole upload has arrived, so that a truncated upload records
// none even when what arrived was a whole archive, and publishes what it
// records. archive.Import calls it from its goroutine.
//
// An import that unpacks holds the images back (hold) until recordHeld,
// after the unpack, as a pull records its image only once unpacked: a
// daemon killed in the middle of the unpack leaves no image that claims
// to be there but has no snapshots, only content and snapshots under the
// import's lease, which Recover deletes and garbage collection sweeps.
type importImages struct {
	*service
	complete func() error
	hold     bool
	held     []images.Image // by Create; read by recordHeld once Import returned
}

func (is *importImages) Create(ctx context.Context, img images.Image) (images.Image, error) {
	if err := is.complete(); err != nil {
		return images.Image{}, err
	}
	if is.hold {
		// Refused now, before the unpack, as the store would refuse what
		// recordHeld records then (an image that exists is pointed at
		// its new target).
		if err := metadata.ValidateImage(images.Image{Name: img.Name, Target: img.Target}); err != nil {
			return images.Image{}, err
		}
		is.held = append(is.held, img)
		return img, nil
	}
	created, err := is.Images.Create(ctx, img)
	if err == nil {
		is.publish(ctx, topics.ImageCreate, &imagesv1.ImageCreate{Name: created.Name, Labels: created.Labels})
	}
	return created, err
}

func (is *importImages) Update(ctx context.Context, img images.Image, fieldpaths ...string) (images.Image, error) {
	if err := is.complete(); err != nil {
		return images.Image{}, err
	}
	updated, err := is.Images.Update(ctx, img, fieldpaths...)
	if err == nil {
		is.publish(ctx, topics.ImageUpdate, &imagesv1.ImageUpdate{Name: updated.Name, Labels: updated.Labels})
	}
	return updated, err
}

// recordHeld records the images Create held back, each created or, when
// it exists, pointed at its new target, and returns them as stored.
func (is *importImages) recordHeld(ctx context.Context) ([]images.Image, error) {
	stored := make([]images.Image, 0, len(is.held))
	for _, img := range is.held {
		rec, err := is.record(ctx, distribution.Image{Name: img.Name, Target: img.Target})
		if err != nil {
			return stored, fmt.Errorf("import: image %q: %w", img.Name, err)
		}
		stored = append(stored, rec)
	}
	return stored, nil
}

// Export streams an archive of the images asked for.
func (s *service) Export(ctx context.Context, req *api.ExportRequest, stream api.Transfer_ExportServer) (err error) {
	defer errdefs.StreamCall(ctx, "/berth.services.transfer.v1.Transfer/Export").Done(&err)
	return errdefs.ToTTRPC(s.export(ctx, req, stream))
}

func (s *service) export(ctx context.Context, req *api.ExportRequest, stream api.Transfer_ExportServer) error {
	ctx, err := streamNamespace(ctx, req.GetNamespace())
	if err != nil {
		return err
	}
	opts, err := archivePlatform(req.GetPlatforms(), req.GetAllPlatforms())
	if err != nil {
		return err
	}
	if len(req.GetImages()) == 0 {
		return fmt.Errorf("export: no image: %w", errdefs.ErrInvalidArgument)
	}
	var imgs []images.Image
	for _, pi := range req.GetImages() {
		img, err := s.exportImage(ctx, pi)
		if err != nil {
			return err
		}
		imgs = append(imgs, img)
	}
	w := &exportWriter{send: stream.Send, buf: make([]byte, 0, ChunkSize), sum: sha256.New()}
	opts = append(opts, archive.WithImages(imgs...))
	if req.GetProgress() {
		opts = append(opts, archive.WithProgress(w.report))
	}
	if err := archive.Export(ctx, s.Content, w, opts...); err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	return stream.Send(&api.ExportResponse{Progress: w.take(), End: &api.ExportEnd{
		Size:   w.size,
		Digest: "sha256:" + hex.EncodeToString(w.sum.Sum(nil)),
	}})
}

// exportImage is the image an export request names: as given when it
// has a target, else the namespace's image of that name.
func (s *service) exportImage(ctx context.Context, pi *imagesv1.Image) (images.Image, error) {
	if pi.GetName() == "" {
		return images.Image{}, fmt.Errorf("export: an image without a name: %w", errdefs.ErrInvalidArgument)
	}
	if pi.GetTarget() == nil {
		return s.Images.Get(ctx, pi.GetName())
	}
	return apiconv.ImageFromProto(pi), nil
}

// exportWriter cuts what archive.Export writes into responses of at most
// ChunkSize bytes, and carries the progress reports with them. One
// goroutine uses it: archive.Export's, which also calls report.
type exportWriter struct {
	send func(*api.ExportResponse) error
	buf  []byte // pending data; reused once sent (Send marshals at once)
	sum  hash.Hash
	size int64

	progress []*api.Progress // reports not sent yet, latest per ref
	index    map[string]int  // by ref: its report's index in progress
}

func (w *exportWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), ChunkSize-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == ChunkSize {
			if err := w.flush(); err != nil {
				return n - len(p) - k, err
			}
		}
	}
	return n, nil
}

// flush sends the pending data, if any.
func (w *exportWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	w.sum.Write(w.buf)
	w.size += int64(len(w.buf))
	err := w.send(&api.ExportResponse{Data: w.buf, Progress: w.take()})
	w.buf = w.buf[:0]
	return err
}

func (w *exportWriter) report(p distribution.Progress) {
	if w.index == nil {
		w.index = map[string]int{}
	}
	if i, ok := w.index[p.Ref]; ok {
		w.progress[i] = apiconv.ProgressToProto(p)
		return
	}
	w.index[p.Ref] = len(w.progress)
	w.progress = append(w.progress, apiconv.ProgressToProto(p))
}

// take returns the pending reports and forgets them.
func (w *exportWriter) take() []*api.Progress {
	batch := w.progress
	w.progress = nil
	clear(w.index)
	return batch
}

// maxMissing bounds the missing blobs Check lists per image.
const maxMissing = 256

// Check says how much of each image asked for the store holds.
func (s *service) Check(ctx context.Context, req *api.CheckRequest) (*api.CheckResponse, error) {
	ctx, err := streamNamespace(ctx, "")
	if err != nil {
		return nil, err
	}
	m, err := checkMatcher(req.GetPlatforms(), req.GetAllPlatforms())
	if err != nil {
		return nil, err
	}
	var imgs []images.Image
	if len(req.GetFilters()) > 0 || len(req.GetNames()) == 0 {
		if imgs, err = s.Images.List(ctx, req.GetFilters()...); err != nil {
			return nil, err
		}
	}
	for _, name := range req.GetNames() {
		img, err := s.Images.Get(ctx, name)
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	resp := &api.CheckResponse{}
	seen := map[string]bool{}
	for _, img := range imgs {
		if seen[img.Name] {
			continue
		}
		seen[img.Name] = true
		resp.Images = append(resp.Images, s.check(ctx, img, m))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *service) check(ctx context.Context, img images.Image, m platforms.MatchComparer) *api.ImageCheck {
	ic := &api.ImageCheck{Image: apiconv.ImageToProto(img)}
	r, err := images.Check(ctx, s.Content, img.Target, m)
	if err != nil {
		ic.Error = err.Error()
		return ic
	}
	ic.Availability = string(r.Availability)
	ic.Required, ic.Present = int64(r.Required), int64(r.Present)
	ic.Size, ic.PresentSize = r.Size, r.PresentSize
	for _, d := range r.Missing[:min(len(r.Missing), maxMissing)] {
		ic.Missing = append(ic.Missing, apiconv.DescriptorToProto(d))
	}
	return ic
}

// checkMatcher is the platform matcher of a Check request; nil for all.
func checkMatcher(want []string, all bool) (platforms.MatchComparer, error) {
	ps, err := parsePlatforms(want)
	switch {
	case err != nil:
		return nil, err
	case all && len(ps) > 0:
		return nil, fmt.Errorf("platforms and all_platforms together: %w", errdefs.ErrInvalidArgument)
	case all:
		return nil, nil
	case len(ps) > 1:
		return nil, fmt.Errorf("%d platforms: one, or all_platforms: %w", len(ps), errdefs.ErrInvalidArgument)
	case len(ps) == 1:
		return platforms.Only(ps[0]), nil
	}
	return platforms.Only(images.DefaultPlatform()), nil
}
