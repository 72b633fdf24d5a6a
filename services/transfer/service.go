// Package transfer serves berth.services.transfer.v1: pulls from and
// pushes to registries, run in the daemon with package distribution over
// the namespaced content store, with progress relayed to the caller's
// stream; imports of archives uploaded over a stream and exports streamed
// back, with package images/archive (archive.go); image checks.
//
// An import holds a lease as a pull does (unless the request names its
// own), and records no image before the whole upload has arrived: a
// truncated upload is refused even when what arrived was a whole archive.
//
// A pull holds a lease (labelled LeaseLabel) from before its first byte
// until the image record is written, so garbage collection can neither
// take a half-done pull nor keep it forever: the lease is deleted when the
// pull ends, and Recover deletes the leases of pulls a crash interrupted.
// Ingests of interrupted downloads outlive the lease (garbage collection
// keeps an unleased ingest for its ingest_ttl), so the next pull resumes
// them.
package transfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/platforms"
	"github.com/containerd/ttrpc"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/proto"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/diff"
	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/events/topics"
	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/internal/apiconv"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/namespaces"
	imagesv1 "github.com/berthrt/berth/proto/images/v1"
	api "github.com/berthrt/berth/proto/transfer/v1"
	"github.com/berthrt/berth/services"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/metadata"
	"github.com/berthrt/berth/unpack"
)

const (
	// LeaseLabel marks the leases of transfers; its value is "pull" or
	// "import".
	LeaseLabel = "berth.io/transfer"
	// leaseExpiry bounds how long a transfer's lease protects content
	// should neither the transfer nor Recover delete it.
	leaseExpiry = 24 * time.Hour
	// maxConcurrency bounds a request's concurrency.
	maxConcurrency = 16
	// cleanupTimeout bounds deleting a lease after a transfer.
	cleanupTimeout = 10 * time.Second
)

// Config is what the service uses.
type Config struct {
	// Content is the namespaced content store (metadata.DB.ContentStore).
	Content content.Store
	Images  images.Store
	Leases  leases.Manager
	// Publisher receives /images/create and /images/update.
	Publisher services.Publisher
	// HostsDir is the hosts.toml folder ([registry] config_path).
	HostsDir string
	// DockerConfig is the path of a Docker config.json; "" is
	// $DOCKER_CONFIG/config.json or ~/.docker/config.json.
	DockerConfig string
	// Transport is the registries' base transport; nil is the default.
	Transport http.RoundTripper
	// Timeouts bound every registry request; zero fields are
	// distribution.DefaultTimeouts'.
	Timeouts distribution.Timeouts
	// Fetched, when set, counts the bytes pulls read from registries
	// (distribution.ResolverOptions' Fetched).
	Fetched distribution.FetchedFunc
	// MaxImportSize bounds the size of an archive an Import uploads, in
	// bytes; 0 for no bound (each entry is bounded by package
	// images/archive, each request by ChunkSize).
	MaxImportSize int64
	// Log receives warnings about cleanup; nil is slog.Default().
	Log *slog.Logger
	// Snapshotter returns the namespaced snapshotter a pull unpacks
	// into, by name; nil refuses unpacking (NotImplemented).
	Snapshotter func(name string) (snapshots.Snapshotter, error)
	// DefaultSnapshotter is the snapshotter of a request that names none.
	DefaultSnapshotter string
	// Applier applies layers; nil is diff.NewApplier(TempMounts).
	Applier diff.Applier
	// TempMounts is the folder, private to root, under which the default
	// Applier mounts what it cannot write into in place.
	TempMounts string
}

type service struct{ Config }

// Register serves the transfer API on srv. The streaming calls convert
// their own errors (ttrpc has no stream interceptor); Check relies on
// the server's unary interceptor, as the other services do.
func Register(srv *ttrpc.Server, cfg Config) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Applier == nil {
		cfg.Applier = diff.NewApplier(cfg.TempMounts)
	}
	api.RegisterTransferService(srv, &service{cfg})
}

func (s *service) Pull(ctx context.Context, req *api.PullRequest, stream api.Transfer_PullServer) (err error) {
	defer errdefs.StreamCall(ctx, "/berth.services.transfer.v1.Transfer/Pull").Done(&err)
	return errdefs.ToTTRPC(s.pull(ctx, req, stream))
}

func (s *service) pull(ctx context.Context, req *api.PullRequest, stream api.Transfer_PullServer) error {
	ctx, err := streamNamespace(ctx, req.GetNamespace())
	if err != nil {
		return err
	}
	opts, err := pullOptions(req)
	if err != nil {
		return err
	}
	if req.GetUnpack() && req.GetFetchOnly() {
		return fmt.Errorf("pull %.200q: unpack and fetch_only together: %w", req.GetRef(), errdefs.ErrInvalidArgument)
	}
	sn, snName, err := s.unpackTarget(req.GetUnpack(), req.GetSnapshotter())
	if err != nil {
		return fmt.Errorf("pull %.200q: %w", req.GetRef(), err)
	}
	r, err := s.resolver(req.GetCredentials(), req.GetPlainHttp(), req.GetHostsDir())
	if err != nil {
		return err
	}
	ctx, release, err := s.lease(ctx, "pull")
	if err != nil {
		return err
	}
	defer release()

	rl := newRelay(func(batch []*api.Progress) error { return stream.Send(&api.PullProgress{Progress: batch}) })
	var img distribution.Image
	if sn == nil {
		img, err = distribution.Pull(ctx, r, s.Content, req.GetRef(), append(opts, distribution.WithProgress(rl.report))...)
	} else {
		img, err = s.pullAndUnpack(ctx, r, req.GetRef(), opts, req.GetPlatforms(), sn, snName, rl.report)
	}
	sendErr := rl.close()
	if err != nil {
		return err
	}
	if req.GetFetchOnly() {
		if err := s.root(ctx, img.Target); err != nil {
			return err
		}
		release() // before the reply: a client that lists leases next sees none
		if sendErr != nil {
			return sendErr
		}
		return stream.Send(&api.PullProgress{Fetched: apiconv.DescriptorToProto(img.Target)})
	}
	// The image is recorded even when the client has gone: the work is
	// done, and the next pull would only find it all there.
	stored, err := s.record(ctx, img)
	if err != nil {
		return err
	}
	release() // before the reply: a client that lists leases next sees none
	if sendErr != nil {
		return sendErr
	}
	return stream.Send(&api.PullProgress{Image: apiconv.ImageToProto(stored)})
}

// unpackTarget returns the snapshotter a request's unpack and
// snapshotter fields name (the daemon's default when name is empty),
// and its name; nil when the request does not unpack.
func (s *service) unpackTarget(unpack bool, name string) (snapshots.Snapshotter, string, error) {
	switch {
	case !unpack && name != "":
		return nil, "", fmt.Errorf("a snapshotter without unpack: %w", errdefs.ErrInvalidArgument)
	case !unpack:
		return nil, "", nil
	case s.Snapshotter == nil:
		return nil, "", fmt.Errorf("unpack: this daemon has no snapshotters: %w", errdefs.ErrNotImplemented)
	}
	if name == "" {
		name = s.DefaultSnapshotter
	}
	sn, err := s.Snapshotter(name)
	if err != nil {
		return nil, "", err
	}
	return sn, name, nil
}

// unpack unpacks, into sn, the manifest of target for the first of
// platforms (the default platform when there is none), reporting each
// layer as a blob of ref "unpack-<digest>".
func (s *service) unpack(ctx context.Context, cs unpack.Store, target ocispec.Descriptor, want []string, sn snapshots.Snapshotter, snName string, report distribution.ProgressFunc) error {
	ps, err := parsePlatforms(want)
	if err != nil {
		return err
	}
	var m platforms.MatchComparer
	if len(ps) > 0 {
		m = platforms.Only(ps[0])
	}
	img, err := unpack.Resolve(ctx, cs, target, m)
	if err != nil {
		return fmt.Errorf("unpack %s: %w", target.Digest, err)
	}
	_, err = unpack.Unpack(ctx, img, unpack.Options{
		Content: cs, Snapshotter: sn, SnapshotterName: snName, Applier: s.Applier,
		Progress: func(layer ocispec.Descriptor, st unpack.Status) {
			p := distribution.Progress{Ref: "unpack-" + layer.Digest.String(), Digest: layer.Digest, MediaType: layer.MediaType, Status: distribution.Status(st), Total: layer.Size}
			if st != unpack.StatusUnpacking {
				p.Offset = layer.Size
			}
			report(p)
		},
	})
	return err
}

// pullOptions returns the distribution options a request asks for.
func pullOptions(req *api.PullRequest) ([]distribution.Opt, error) {
	var opts []distribution.Opt
	ps, err := parsePlatforms(req.GetPlatforms())
	if err != nil {
		return nil, err
	}
	switch {
	case req.GetAllPlatforms() && len(ps) > 0:
		return nil, fmt.Errorf("platforms and all_platforms together: %w", errdefs.ErrInvalidArgument)
	case req.GetAllPlatforms():
		opts = append(opts, distribution.WithAllPlatforms())
	case len(ps) > 0:
		opts = append(opts, distribution.WithPlatforms(ps...))
	}
	if n, err := concurrency(req.GetConcurrency()); err != nil {
		return nil, err
	} else if n > 0 {
		opts = append(opts, distribution.WithConcurrency(n))
	}
	return opts, nil
}

// root labels the fetched root target with gc.LabelRoot, so that
// garbage collection keeps it, and what its gc.ref labels reach, after
// the pull's lease is gone.
func (s *service) root(ctx context.Context, target ocispec.Descriptor) error {
	info := content.Info{Digest: target.Digest, Labels: map[string]string{
		gc.LabelRoot: time.Now().UTC().Format(time.RFC3339),
	}}
	if _, err := s.Content.Update(ctx, info, "labels."+gc.LabelRoot); err != nil {
		return fmt.Errorf("fetch %s: label the root: %w", target.Digest, err)
	}
	return nil
}

// record creates the image img names, or points the existing one at the
// pulled target (its labels stay), and publishes the change.
func (s *service) record(ctx context.Context, img distribution.Image) (images.Image, error) {
	rec := images.Image{Name: img.Name, Target: img.Target}
	// Two tries: the image may be deleted between a Create that finds it
	// and the Update.
	for try := 0; ; try++ {
		created, err := s.Images.Create(ctx, rec)
		if err == nil {
			s.publish(ctx, topics.ImageCreate, &imagesv1.ImageCreate{Name: created.Name, Labels: created.Labels})
			return created, nil
		}
		if !errdefs.IsAlreadyExists(err) {
			return images.Image{}, err
		}
		updated, err := s.Images.Update(ctx, rec, "target")
		if err == nil {
			s.publish(ctx, topics.ImageUpdate, &imagesv1.ImageUpdate{Name: updated.Name, Labels: updated.Labels})
			return updated, nil
		}
		if !errdefs.IsNotFound(err) || try > 0 {
			return images.Image{}, err
		}
	}
}

func (s *service) Push(ctx context.Context, req *api.PushRequest, stream api.Transfer_PushServer) (err error) {
	defer errdefs.StreamCall(ctx, "/berth.services.transfer.v1.Transfer/Push").Done(&err)
	return errdefs.ToTTRPC(s.push(ctx, req, stream))
}

func (s *service) push(ctx context.Context, req *api.PushRequest, stream api.Transfer_PushServer) error {
	ctx, err := streamNamespace(ctx, req.GetNamespace())
	if err != nil {
		return err
	}
	ref, err := distribution.ParseRef(req.GetRef())
	if err != nil {
		return err
	}
	target, what, err := s.pushRoot(ctx, req, ref)
	if err != nil {
		return err
	}
	desc, err := s.pushTarget(ctx, target, req.GetPlatforms())
	if err != nil {
		return fmt.Errorf("push %s: %w", what, err)
	}
	var opts []distribution.Opt
	if n, err := concurrency(req.GetConcurrency()); err != nil {
		return err
	} else if n > 0 {
		opts = append(opts, distribution.WithConcurrency(n))
	}
	r, err := s.resolver(req.GetCredentials(), req.GetPlainHttp(), req.GetHostsDir())
	if err != nil {
		return err
	}
	rl := newRelay(func(batch []*api.Progress) error { return stream.Send(&api.PushProgress{Progress: batch}) })
	err = distribution.Push(ctx, r, s.Content, req.GetRef(), desc, append(opts, distribution.WithProgress(rl.report))...)
	if sendErr := rl.close(); err == nil {
		err = sendErr
	}
	if err != nil {
		return err
	}
	return stream.Send(&api.PushProgress{Pushed: apiconv.DescriptorToProto(desc)})
}

// pushRoot returns the root a push request names, and how to name it in
// an error: the request's target, else the image named image, else ref.
func (s *service) pushRoot(ctx context.Context, req *api.PushRequest, ref distribution.Ref) (ocispec.Descriptor, string, error) {
	if t := req.GetTarget(); t != nil {
		if req.GetImage() != "" {
			return ocispec.Descriptor{}, "", fmt.Errorf("push %s: image and target together: %w", ref, errdefs.ErrInvalidArgument)
		}
		desc := apiconv.DescriptorFromProto(t)
		if err := images.CheckDescriptor(desc); err != nil {
			return ocispec.Descriptor{}, "", fmt.Errorf("push %s: target: %w", ref, err)
		}
		return desc, desc.Digest.String(), nil
	}
	name := req.GetImage()
	if name == "" {
		name = ref.String()
	}
	img, err := s.Images.Get(ctx, name)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	return img.Target, fmt.Sprintf("image %q", name), nil
}

// pushTarget is what a push of target uploads: target itself, or, with a
// platform, the manifest of target's index for that platform.
func (s *service) pushTarget(ctx context.Context, target ocispec.Descriptor, want []string) (ocispec.Descriptor, error) {
	ps, err := parsePlatforms(want)
	switch {
	case err != nil:
		return ocispec.Descriptor{}, err
	case len(ps) == 0 || !images.IsIndex(target.MediaType):
		return target, nil
	case len(ps) > 1:
		return ocispec.Descriptor{}, fmt.Errorf("%d platforms: push one platform's manifest or the whole index: %w", len(ps), errdefs.ErrInvalidArgument)
	}
	children, err := images.Children(ctx, s.Content, target)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	for _, d := range images.SelectPlatforms(children, platforms.Only(ps[0])) {
		if d.Platform != nil && images.IsManifest(d.MediaType) {
			return d, nil
		}
	}
	return ocispec.Descriptor{}, fmt.Errorf("no manifest for %s in index %s: %w", platforms.Format(ps[0]), target.Digest, errdefs.ErrNotFound)
}

// resolver returns a resolver for one request: the request's hosts.toml
// folder, else the daemon's, and the daemon's Docker config, with the
// request's credentials asked first.
func (s *service) resolver(creds *api.Credentials, plainHTTP bool, hostsDir string) (*distribution.Resolver, error) {
	if hostsDir == "" {
		hostsDir = s.HostsDir
	} else if err := checkHostsDir(hostsDir); err != nil {
		return nil, err
	}
	opts := distribution.ResolverOptions{
		HostsDir:     hostsDir,
		PlainHTTP:    plainHTTP,
		DockerConfig: s.DockerConfig,
		Transport:    s.Transport,
		Timeouts:     s.Timeouts,
		Fetched:      s.Fetched,
	}
	if creds.GetUsername() != "" || creds.GetPassword() != "" || creds.GetIdentityToken() != "" {
		c := distribution.Credential{Username: creds.GetUsername(), Password: creds.GetPassword(), RefreshToken: creds.GetIdentityToken()}
		opts.Credentials = func(context.Context, string) (distribution.Credential, error) { return c, nil }
	}
	return distribution.NewResolver(opts)
}

// lease creates the lease of a transfer of kind in the namespace of ctx
// and returns ctx carrying it, and the function that deletes it (once,
// however often it is called).
func (s *service) lease(ctx context.Context, kind string) (context.Context, func(), error) {
	l, err := s.Leases.Create(ctx, leases.Lease{Labels: map[string]string{
		LeaseLabel:         kind,
		leases.ExpireLabel: time.Now().Add(leaseExpiry).UTC().Format(time.RFC3339Nano),
	}})
	if err != nil {
		return nil, nil, fmt.Errorf("%s lease: %w", kind, err)
	}
	var once sync.Once
	release := func() {
		once.Do(func() {
			cctx, cancel := context.WithTimeout(leases.WithoutLease(context.WithoutCancel(ctx)), cleanupTimeout)
			defer cancel()
			if err := s.Leases.Delete(cctx, l.ID); err != nil {
				s.Log.WarnContext(cctx, "delete transfer lease", "lease", l.ID, "error", err)
			}
		})
	}
	return leases.WithLease(ctx, l.ID), release, nil
}

func (s *service) publish(ctx context.Context, topic string, ev proto.Message) {
	if s.Publisher == nil {
		return
	}
	if err := s.Publisher.Publish(ctx, topic, ev); err != nil {
		s.Log.WarnContext(ctx, "publish image event", "topic", topic, "error", err)
	}
}

// Recover deletes the transfer leases of every namespace: at the
// daemon's start no transfer is under way, so they are what transfers
// interrupted by a crash left. It returns how many it deleted.
func Recover(ctx context.Context, nss metadata.NamespaceStore, lm leases.Manager) (int, error) {
	list, err := nss.List(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, ns := range list {
		nctx := namespaces.WithNamespace(ctx, ns)
		ls, err := lm.List(nctx, "labels."+fmt.Sprintf("%q", LeaseLabel))
		if err != nil {
			errs = append(errs, fmt.Errorf("namespace %q: %w", ns, err))
			continue
		}
		for _, l := range ls {
			if err := lm.Delete(nctx, l.ID); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("namespace %q: lease %q: %w", ns, l.ID, err))
				continue
			}
			n++
		}
	}
	return n, errors.Join(errs...)
}

// checkHostsDir checks a request's hosts_dir: an absolute path of a
// folder, so that a typo is an error rather than a pull without the
// hosts' settings.
func checkHostsDir(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("hosts_dir %.200q: not an absolute path: %w", dir, errdefs.ErrInvalidArgument)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("hosts_dir: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if !fi.IsDir() {
		return fmt.Errorf("hosts_dir %.200q: not a folder: %w", dir, errdefs.ErrInvalidArgument)
	}
	return nil
}

// parsePlatforms parses "os/arch[/variant]" strings.
func parsePlatforms(ss []string) ([]ocispec.Platform, error) {
	var ps []ocispec.Platform
	for _, s := range ss {
		p, err := distribution.ParsePlatform(s)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// concurrency checks a request's concurrency; 0 is the default.
func concurrency(n int32) (int, error) {
	if n < 0 || n > maxConcurrency {
		return 0, fmt.Errorf("concurrency %d: not in 0…%d: %w", n, maxConcurrency, errdefs.ErrInvalidArgument)
	}
	return int(n), nil
}

// streamNamespace is services.StreamNamespace for calls that need a
// namespace: neither in the metadata nor in the request is an error here.
func streamNamespace(ctx context.Context, given string) (context.Context, error) {
	ctx, err := services.StreamNamespace(ctx, given)
	if err != nil {
		return nil, err
	}
	if _, err := namespaces.NamespaceRequired(ctx); err != nil {
		return nil, err
	}
	return ctx, nil
}
