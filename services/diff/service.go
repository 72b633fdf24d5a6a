// Package diff serves berth.services.diff.v1 over package diff: Apply
// reads layers from, and Diff writes layers into, the content store it is
// given, which in berthd is the namespaced view (package metadata), so
// that each call acts in its request's namespace and under its lease.
//
// Mounts come from the caller and are mounted by the daemon as root: they
// are checked first (a bounded count, a type and a source each, existing
// folders for bind and overlay mounts), so that a bad one is an error of a
// class that names it rather than a bare errno from mount(2).
package diff

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containerd/ttrpc"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/diff"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/apiconv"
	"github.com/berthrt/berth/mount"
	api "github.com/berthrt/berth/proto/diff/v1"
	typesv1 "github.com/berthrt/berth/proto/types/v1"
)

// MaxMounts bounds the mounts of one side of a call.
const MaxMounts = 64

// Config is what the service works with.
type Config struct {
	// Content is the content store layers are read from and written
	// to; in berthd the namespaced one.
	Content content.Store
	// Applier applies layers; diff.NewApplier(TempMounts) when nil.
	Applier diff.Applier
	// TempMounts is the folder, private to root, under which Diff (and
	// the default Applier) mount what they cannot read or write in
	// place, such as a running container's overlay.
	TempMounts string
}

type service struct {
	content    content.Store
	applier    diff.Applier
	tempMounts string
}

// New returns the diff API over cfg, for Register or for a test to call
// in process.
func New(cfg Config) api.DiffService {
	s := &service{content: cfg.Content, applier: cfg.Applier, tempMounts: cfg.TempMounts}
	if s.applier == nil {
		s.applier = diff.NewApplier(cfg.TempMounts)
	}
	return s
}

// Register serves the diff API on srv. Errors are converted by the
// server's interceptor.
func Register(srv *ttrpc.Server, cfg Config) {
	api.RegisterDiffService(srv, New(cfg))
}

func (s *service) Apply(ctx context.Context, req *api.ApplyRequest) (*api.ApplyResponse, error) {
	desc := apiconv.DescriptorFromProto(req.GetDiff())
	if err := checkLayer(desc); err != nil {
		return nil, err
	}
	mounts, err := checkMounts("mounts", req.GetMounts(), true)
	if err != nil {
		return nil, err
	}
	applied, err := s.applier.Apply(ctx, desc, mounts, s.content)
	if err != nil {
		return nil, classify(fmt.Errorf("apply: %w", err))
	}
	return &api.ApplyResponse{Applied: apiconv.DescriptorToProto(applied)}, nil
}

func (s *service) Diff(ctx context.Context, req *api.DiffRequest) (_ *api.DiffResponse, err error) {
	left, err := checkMounts("left", req.GetLeft(), false)
	if err != nil {
		return nil, err
	}
	right, err := checkMounts("right", req.GetRight(), true)
	if err != nil {
		return nil, err
	}
	mediaType := req.GetMediaType()
	if mediaType == "" {
		mediaType = ocispec.MediaTypeImageLayerGzip
	}
	compression, err := layerCompression(mediaType)
	if err != nil {
		return nil, err
	}
	if err := content.ValidateLabels(req.GetLabels()); err != nil {
		return nil, err
	}
	ref := req.GetRef()
	if ref == "" {
		var b [12]byte
		rand.Read(b[:])
		ref = "diff-" + hex.EncodeToString(b[:])
	} else if err := content.ValidateRef(ref); err != nil {
		return nil, err
	}
	labels := maps.Clone(req.GetLabels())
	rec := &recorder{Ingester: s.content}
	desc, err := diff.NewComparer(rec, s.tempMounts).Compare(ctx, left, right,
		diff.WithReference(ref), diff.WithLabels(labels), diff.WithCompression(compression))
	if err != nil {
		// The ingest holds a partial layer nobody will resume.
		if aerr := s.content.Abort(context.WithoutCancel(ctx), ref); aerr != nil && !errdefs.IsNotFound(aerr) {
			err = fmt.Errorf("%w (and abort ingest %q: %v)", err, ref, aerr)
		}
		return nil, classify(fmt.Errorf("diff: %w", err))
	}
	diffID, err := s.diffID(ctx, desc, rec, labels)
	if err != nil {
		return nil, err
	}
	return &api.DiffResponse{Diff: apiconv.DescriptorToProto(desc), DiffId: diffID.String()}, nil
}

// diffID returns the diff ID Compare labelled the new blob with. When the
// namespace held the blob already, Compare's labels were not stored: they
// are set now, so that the blob carries them whoever wrote it first.
func (s *service) diffID(ctx context.Context, desc ocispec.Descriptor, rec *recorder, labels map[string]string) (digest.Digest, error) {
	diffID := digest.Digest(rec.labels[diff.LabelUncompressed])
	if err := diffID.Validate(); err != nil {
		return "", fmt.Errorf("diff: layer %s: no diff ID recorded: %w: %w", desc.Digest, errdefs.ErrInternal, err)
	}
	if !rec.existed {
		return diffID, nil
	}
	set := maps.Clone(labels)
	if set == nil {
		set = map[string]string{}
	}
	set[diff.LabelUncompressed] = diffID.String()
	paths := make([]string, 0, len(set))
	for k := range set {
		paths = append(paths, "labels."+k)
	}
	if _, err := s.content.Update(ctx, content.Info{Digest: desc.Digest, Labels: set}, paths...); err != nil {
		return "", fmt.Errorf("diff: label layer %s: %w", desc.Digest, err)
	}
	return diffID, nil
}

// recorder is an Ingester that records what its one Writer commits: the
// labels (Compare's diff ID among them), and whether the blob existed.
type recorder struct {
	content.Ingester
	labels  map[string]string
	existed bool
}

func (r *recorder) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	w, err := r.Ingester.Writer(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return recordingWriter{Writer: w, rec: r}, nil
}

type recordingWriter struct {
	content.Writer
	rec *recorder
}

func (w recordingWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	var info content.Info
	for _, opt := range opts {
		if err := opt(&info); err != nil {
			return err
		}
	}
	w.rec.labels = info.Labels
	err := w.Writer.Commit(ctx, size, expected, opts...)
	w.rec.existed = errdefs.IsAlreadyExists(err)
	return err
}

// layerCompression returns the compression of a layer media type Diff
// may write: the three OCI layer types.
func layerCompression(mediaType string) (diff.Compression, error) {
	for _, c := range []diff.Compression{diff.Gzip, diff.Zstd, diff.Uncompressed} {
		if c.MediaType() == mediaType {
			return c, nil
		}
	}
	return "", fmt.Errorf("diff: layer media type %q (known: %s, %s, %s): %w", mediaType,
		ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd, ocispec.MediaTypeImageLayer, errdefs.ErrNotImplemented)
}

// checkLayer checks the descriptor of a layer to apply.
func checkLayer(desc ocispec.Descriptor) error {
	switch {
	case desc.MediaType == "":
		return fmt.Errorf("apply: layer descriptor without a media type: %w", errdefs.ErrInvalidArgument)
	case desc.Size <= 0:
		return fmt.Errorf("apply: layer %s: size %d, want a positive one: %w", desc.Digest, desc.Size, errdefs.ErrInvalidArgument)
	}
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("apply: layer digest %.80q: %w: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// checkMounts converts one side's mounts and checks them: at most
// MaxMounts, at least one when required, each with a type and a source;
// the folders a bind or overlay mount names must exist.
func checkMounts(side string, ms []*typesv1.Mount, required bool) ([]mount.Mount, error) {
	switch {
	case len(ms) == 0 && required:
		return nil, fmt.Errorf("%s: no mounts: %w", side, errdefs.ErrInvalidArgument)
	case len(ms) > MaxMounts:
		return nil, fmt.Errorf("%s: %d mounts, more than %d: %w", side, len(ms), MaxMounts, errdefs.ErrInvalidArgument)
	}
	mounts := apiconv.MountsFromProto(ms)
	for i, m := range mounts {
		if m.Type == "" || m.Source == "" {
			return nil, fmt.Errorf("%s[%d]: type %q, source %q: both are required: %w", side, i, m.Type, m.Source, errdefs.ErrInvalidArgument)
		}
		// What snapshotters hand out, and nothing else: the daemon mounts
		// these as root, and a filesystem type would have the kernel
		// parse whatever device or image the caller names.
		if m.Type != "bind" && m.Type != "overlay" {
			return nil, fmt.Errorf("%s[%d]: mount type %q: only bind and overlay mounts are diffed: %w", side, i, m.Type, errdefs.ErrInvalidArgument)
		}
		for _, dir := range folders(m) {
			if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
				return nil, fmt.Errorf("%s[%d]: %s mount of %q: %q is not an absolute, clean path: %w", side, i, m.Type, m.Source, dir, errdefs.ErrInvalidArgument)
			}
			if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s[%d]: %s mount of %q: %q does not exist: %w", side, i, m.Type, m.Source, dir, errdefs.ErrNotFound)
			} else if err != nil {
				return nil, fmt.Errorf("%s[%d]: %s mount of %q: %w: %w", side, i, m.Type, m.Source, err, errdefs.ErrInvalidArgument)
			}
		}
	}
	return mounts, nil
}

// folders returns the paths a mount needs to exist: a bind mount's
// source, an overlay's lower, upper and work folders.
func folders(m mount.Mount) []string {
	var dirs []string
	if m.Type == "bind" || hasOption(m, "bind") || hasOption(m, "rbind") {
		dirs = append(dirs, m.Source)
	}
	if m.Type == "overlay" {
		for _, o := range m.Options {
			k, v, _ := strings.Cut(o, "=")
			switch k {
			case "lowerdir":
				dirs = append(dirs, strings.Split(v, ":")...)
			case "upperdir", "workdir":
				dirs = append(dirs, v)
			}
		}
	}
	return dirs
}

func hasOption(m mount.Mount, opt string) bool {
	for _, o := range m.Options {
		if o == opt {
			return true
		}
	}
	return false
}

// classify gives an error that has no class yet one from the errno it
// wraps: a mount or file operation that the kernel refused for what the
// caller passed is InvalidArgument, one it refused for rights
// PermissionDenied.
func classify(err error) error {
	for _, class := range []error{errdefs.ErrNotFound, errdefs.ErrAlreadyExists, errdefs.ErrInvalidArgument,
		errdefs.ErrFailedPrecondition, errdefs.ErrUnavailable, errdefs.ErrNotImplemented, errdefs.ErrPermissionDenied,
		errdefs.ErrInternal, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, class) {
			return err
		}
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	switch errno {
	case syscall.EPERM, syscall.EACCES:
		return fmt.Errorf("%w: %w", err, errdefs.ErrPermissionDenied)
	case syscall.EINVAL, syscall.ENOENT, syscall.ENOTDIR, syscall.ENODEV, syscall.ENOTBLK, syscall.EROFS:
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	return err
}
