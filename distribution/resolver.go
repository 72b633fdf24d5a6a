package distribution

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/berthrt/berth/errdefs"
)

// Media types of manifests that are not OCI's.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerSchema1      = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1JWS   = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// MaxManifestSize bounds a manifest or index, which is read into memory.
const MaxManifestSize = 4 << 20

// manifestMediaTypes are the manifests a resolve accepts, in the Accept
// header's order.
var manifestMediaTypes = []string{
	ocispec.MediaTypeImageIndex,
	MediaTypeDockerManifestList,
	ocispec.MediaTypeImageManifest,
	MediaTypeDockerManifest,
}

// Credential is a user's credential for a registry host.
type Credential struct {
	Username, Password string
	// RefreshToken is an identity token (OAuth2 refresh token), used
	// instead of Username and Password when set.
	RefreshToken string
}

// CredentialFunc returns the credential for host (host[:port]); a zero
// Credential means none.
type CredentialFunc func(ctx context.Context, host string) (Credential, error)

// ResolverOptions configure a Resolver.
type ResolverOptions struct {
	// HostsDir is the hosts.toml folder (see LoadHosts); "" for none.
	HostsDir string
	// PlainHTTP makes a registry without a hosts.toml plain HTTP.
	PlainHTTP bool
	// Credentials, asked first, are those of the request.
	Credentials CredentialFunc
	// DockerConfig is the path of a Docker config.json whose auths (and
	// credential helpers) are asked when Credentials gives none; "" is
	// $DOCKER_CONFIG/config.json or ~/.docker/config.json; a missing file
	// holds no credentials.
	DockerConfig string
	// Transport is the base transport (its TLS configuration is replaced
	// per host when it is an *http.Transport); nil is a clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
	// UserAgent is sent with every request; "" is "berth".
	UserAgent string
	// Timeouts bound each request; zero fields are DefaultTimeouts'.
	Timeouts Timeouts
	// Fetched, when set, is told of the bytes of manifests and blobs
	// (kind FetchManifest or FetchBlob) as they are read from the host
	// (host[:port], a mirror or the registry) that sends them, verified
	// or not: the registry traffic of pulls. It is called from the
	// reading goroutine and must not block.
	Fetched FetchedFunc
}

// FetchedFunc is told that host sent n more bytes of a manifest or blob.
type FetchedFunc func(host string, kind FetchKind, n int)

// FetchKind is what a fetch reads.
type FetchKind string

// The kinds of FetchedFunc.
const (
	FetchManifest FetchKind = "manifest"
	FetchBlob     FetchKind = "blob"
)

// Resolver reaches registries: it resolves references, fetches and
// pushes manifests and blobs, trying each registry's hosts in order. It is
// safe for concurrent use; bearer tokens are cached for its life.
type Resolver struct {
	opts   ResolverOptions
	cache  auth.Cache
	docker credentials.Store // nil when there is no Docker config

	mu      sync.Mutex              // guards clients
	clients map[string]*auth.Client // by scheme://host
}

// NewResolver returns a Resolver with opts.
func NewResolver(opts ResolverOptions) (*Resolver, error) {
	if opts.UserAgent == "" {
		opts.UserAgent = "berth"
	}
	if opts.Transport == nil {
		opts.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	opts.Timeouts = opts.Timeouts.withDefaults()
	var (
		store *credentials.DynamicStore
		err   error
	)
	if opts.DockerConfig != "" {
		store, err = credentials.NewStore(opts.DockerConfig, credentials.StoreOptions{})
	} else {
		store, err = credentials.NewStoreFromDocker(credentials.StoreOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("docker config: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	return &Resolver{opts: opts, cache: auth.NewCache(), docker: store, clients: map[string]*auth.Client{}}, nil
}

// Repository returns the repository ref names (its tag or digest is not
// used), reached through the hosts of its registry.
func (r *Resolver) Repository(ref Ref) (*Repository, error) {
	hosts, err := LoadHosts(r.opts.HostsDir, ref.Domain, r.opts.PlainHTTP)
	if err != nil {
		return nil, err
	}
	repo := &Repository{ref: ref, timeouts: r.opts.Timeouts}
	for _, h := range hosts {
		c, err := r.client(h)
		if err != nil {
			return nil, err
		}
		rr := &remote.Repository{
			Client:             c,
			Reference:          registry.Reference{Registry: h.Host, Repository: ref.Path},
			PlainHTTP:          h.Scheme == "http",
			ManifestMediaTypes: manifestMediaTypes,
			MaxMetadataBytes:   MaxManifestSize,
			SkipReferrersGC:    true,
		}
		repo.hosts = append(repo.hosts, hostRepo{Host: h, client: c, remote: rr, fetched: r.opts.Fetched})
	}
	return repo, nil
}

// Resolve parses s (see ParseRef) and returns it with the descriptor of
// the manifest or index it names. A Docker schema 1 manifest is refused
// (ErrNotImplemented).
func (r *Resolver) Resolve(ctx context.Context, s string) (Ref, ocispec.Descriptor, error) {
	ref, err := ParseRef(s)
	if err != nil {
		return Ref{}, ocispec.Descriptor{}, err
	}
	repo, err := r.Repository(ref)
	if err != nil {
		return Ref{}, ocispec.Descriptor{}, err
	}
	desc, err := repo.Resolve(ctx, ref.Object())
	return ref, desc, err
}

// client returns the HTTP client for h, made once per host.
func (r *Resolver) client(h Host) (*auth.Client, error) {
	key := h.Scheme + "://" + h.Host
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.clients[key]; ok {
		return c, nil
	}
	tlsCfg, err := h.tlsConfig()
	if err != nil {
		return nil, err
	}
	tr := r.opts.Transport
	if t, ok := tr.(*http.Transport); ok && tlsCfg != nil {
		t = t.Clone()
		t.TLSClientConfig = tlsCfg
		tr = t
	}
	c := &auth.Client{
		Client:     &http.Client{Transport: &boundedTransport{base: tr, t: r.opts.Timeouts}},
		Header:     h.Header.Clone(),
		Credential: r.credential,
		Cache:      r.cache,
	}
	c.SetUserAgent(r.opts.UserAgent)
	r.clients[key] = c
	return c, nil
}

// credential asks the request's credentials, then the Docker config.
func (r *Resolver) credential(ctx context.Context, host string) (auth.Credential, error) {
	if r.opts.Credentials != nil {
		c, err := r.opts.Credentials(ctx, host)
		if err != nil {
			return auth.EmptyCredential, err
		}
		if c != (Credential{}) {
			return auth.Credential{Username: c.Username, Password: c.Password, RefreshToken: c.RefreshToken}, nil
		}
	}
	if r.docker == nil {
		return auth.EmptyCredential, nil
	}
	return credentials.Credential(r.docker)(ctx, host)
}

// Repository is one repository of a registry, reached through the
// registry's hosts: each operation tries the hosts with the capability it
// needs, in order, and answers with the first that succeeds.
type Repository struct {
	ref      Ref
	hosts    []hostRepo
	timeouts Timeouts
}

type hostRepo struct {
	Host
	client  *auth.Client
	remote  *remote.Repository
	fetched FetchedFunc // nil: not counted
}

// Resolve returns the descriptor of the manifest or index that object (a
// tag or a digest) names.
func (r *Repository) Resolve(ctx context.Context, object string) (ocispec.Descriptor, error) {
	var desc ocispec.Descriptor
	ctx = withStep(ctx, stepResolve, r.ref.Path)
	err := r.try(ctx, CapResolve, "resolve "+object, func(h hostRepo) error {
		d, err := h.remote.Resolve(ctx, object)
		var timeout *TimeoutError
		if err != nil && !isClass(err) && !errors.As(err, &timeout) {
			// Some registries answer HEAD without the digest: GET.
			var rc io.ReadCloser
			if d, rc, err = h.remote.FetchReference(ctx, object); err == nil {
				err = rc.Close()
			}
		}
		desc = d
		return err
	})
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := checkManifestType(r.ref.Name()+"@"+desc.Digest.String(), desc.MediaType); err != nil {
		return ocispec.Descriptor{}, err
	}
	if desc.Size > MaxManifestSize {
		return ocispec.Descriptor{}, fmt.Errorf("%s: manifest of %d bytes, more than %d: %w", r.ref.Name(), desc.Size, MaxManifestSize, errdefs.ErrInvalidArgument)
	}
	return desc, nil
}

// checkManifestType refuses what is not a manifest or index berth reads.
func checkManifestType(what, mediaType string) error {
	switch mediaType {
	case ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList, ocispec.MediaTypeImageManifest, MediaTypeDockerManifest:
		return nil
	case mediaTypeDockerSchema1, mediaTypeDockerSchema1JWS:
		return fmt.Errorf("%s: Docker image manifest schema 1 (%s) is deprecated and not supported; push the image again with a current client: %w",
			what, mediaType, errdefs.ErrNotImplemented)
	}
	return fmt.Errorf("%s: media type %q is not an image manifest or index: %w", what, mediaType, errdefs.ErrNotImplemented)
}

// isManifest reports whether desc is fetched from /manifests/.
func isManifest(mediaType string) bool {
	return slices.Contains(manifestMediaTypes, mediaType) || mediaType == mediaTypeDockerSchema1 || mediaType == mediaTypeDockerSchema1JWS
}

// FetchManifest returns the bytes of the manifest or index desc, verified
// against desc's size and digest.
func (r *Repository) FetchManifest(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > MaxManifestSize || desc.Size < 0 {
		return nil, fmt.Errorf("manifest %s: %d bytes, more than %d: %w", desc.Digest, desc.Size, MaxManifestSize, errdefs.ErrInvalidArgument)
	}
	rc, _, err := r.Fetch(ctx, desc, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, desc.Size+1))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w: %w", desc.Digest, err, errdefs.ErrUnavailable)
	}
	if err := verify(desc, data); err != nil {
		return nil, err
	}
	return data, nil
}

// verify checks that data is the blob desc.
func verify(desc ocispec.Descriptor, data []byte) error {
	if int64(len(data)) != desc.Size {
		return fmt.Errorf("%s: got %d bytes or more, expected %d: %w", desc.Digest, len(data), desc.Size, errdefs.ErrFailedPrecondition)
	}
	if got := desc.Digest.Algorithm().FromBytes(data); got != desc.Digest {
		return fmt.Errorf("%s: digest mismatch: the registry sent %s: %w", desc.Digest, got, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// Fetch opens the blob or manifest desc (by its media type) at offset:
// it asks for the bytes from offset on with a Range request, and answers
// with the offset the body starts at, which is 0 when the registry sent
// the whole blob instead. The caller verifies the bytes.
func (r *Repository) Fetch(ctx context.Context, desc ocispec.Descriptor, offset int64) (io.ReadCloser, int64, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, 0, fmt.Errorf("digest %q: %w: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	var (
		body  io.ReadCloser
		start int64
	)
	step := stepBlob
	if isManifest(desc.MediaType) {
		step = stepManifest
	}
	ctx = withStep(ctx, step, r.ref.Path)
	err := r.try(ctx, CapPull, "fetch "+desc.Digest.String(), func(h hostRepo) error {
		var err error
		body, start, err = h.fetch(ctx, desc, offset)
		return err
	})
	return body, start, err
}

func (h hostRepo) fetch(ctx context.Context, desc ocispec.Descriptor, offset int64) (io.ReadCloser, int64, error) {
	ctx = auth.AppendRepositoryScope(ctx, h.remote.Reference, auth.ActionPull)
	kind := "blobs"
	if isManifest(desc.MediaType) {
		kind = "manifests"
	}
	url := fmt.Sprintf("%s://%s/v2/%s/%s/%s", h.Scheme, h.Host.Host, h.remote.Reference.Repository, kind, desc.Digest)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	if kind == "manifests" {
		req.Header.Set("Accept", strings.Join(append([]string{desc.MediaType}, manifestMediaTypes...), ", "))
	} else if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		if kind == "manifests" {
			if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); isManifest(mt) {
				if err := checkManifestType(desc.Digest.String(), mt); err != nil {
					resp.Body.Close()
					return nil, 0, err
				}
			}
		}
		return h.counted(resp.Body, kind), 0, nil
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		var first int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-", &first); err != nil || first != offset {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("GET %s: Content-Range %q does not start at %d: %w", url, resp.Header.Get("Content-Range"), offset, errdefs.ErrUnavailable)
		}
		return h.counted(resp.Body, kind), offset, nil
	}
	defer resp.Body.Close()
	return nil, 0, responseError(resp)
}

// counted reports what is read from body, of the URL kind "manifests" or
// "blobs", to h.fetched. The count sits here, above the transport, so that
// a caller's transport needs no wrapping (a wrapped one would lose the
// per-host TLS settings that client applies to an *http.Transport) and
// each byte is counted for the host that really sent it.
func (h hostRepo) counted(body io.ReadCloser, kind string) io.ReadCloser {
	if h.fetched == nil {
		return body
	}
	k := FetchBlob
	if kind == "manifests" {
		k = FetchManifest
	}
	return &countedBody{ReadCloser: body, host: h.Host.Host, kind: k, fetched: h.fetched}
}

type countedBody struct {
	io.ReadCloser
	host    string
	kind    FetchKind
	fetched FetchedFunc
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.fetched(b.host, b.kind, n)
	}
	return n, err
}

// Exists reports whether the registry holds the blob or manifest desc.
func (r *Repository) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	var ok bool
	ctx = withStep(ctx, stepCheck, r.ref.Path)
	err := r.try(ctx, CapPush, "check "+desc.Digest.String(), func(h hostRepo) error {
		var err error
		ctx := auth.AppendRepositoryScope(ctx, h.remote.Reference, auth.ActionPull, auth.ActionPush)
		if isManifest(desc.MediaType) {
			ok, err = h.remote.Manifests().Exists(ctx, desc)
		} else {
			ok, err = h.remote.Blobs().Exists(ctx, desc)
		}
		return err
	})
	return ok, err
}

// PushBlob uploads the blob desc, read from content, in one request (the
// registry verifies its digest).
func (r *Repository) PushBlob(ctx context.Context, desc ocispec.Descriptor, content io.Reader) error {
	ctx = withStep(ctx, stepPushBlob, r.ref.Path)
	return r.try(ctx, CapPush, "push "+desc.Digest.String(), func(h hostRepo) error {
		return h.remote.Blobs().Push(ctx, desc, content)
	})
}

// PushManifest uploads the manifest or index desc, whose bytes are data,
// under tag (by its digest when tag is "").
func (r *Repository) PushManifest(ctx context.Context, desc ocispec.Descriptor, data []byte, tag string) error {
	if err := verify(desc, data); err != nil {
		return err
	}
	ctx = withStep(ctx, stepPushManifest, r.ref.Path)
	return r.try(ctx, CapPush, "push manifest "+desc.Digest.String(), func(h hostRepo) error {
		if tag == "" {
			return h.remote.Manifests().Push(ctx, desc, bytes.NewReader(data))
		}
		return h.remote.Manifests().PushReference(ctx, desc, bytes.NewReader(data), tag)
	})
}

// try runs op on each host with capability want until one succeeds; an
// error of the request itself (invalid argument, permission denied) or of
// ctx stops it. The error names the repository and wraps a class of
// package errdefs.
func (r *Repository) try(ctx context.Context, want Capabilities, what string, op func(hostRepo) error) error {
	var errs []error
	tried := 0
	for _, h := range r.hosts {
		if !h.Capabilities.Has(want) {
			continue
		}
		tried++
		err := op(h)
		if err == nil {
			return nil
		}
		err = classify(err)
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w", r.ref.Name(), what, ctx.Err())
		}
		errs = append(errs, fmt.Errorf("%s://%s: %w", h.Scheme, h.Host.Host, err))
		if errdefs.IsInvalidArgument(err) || errdefs.IsNotImplemented(err) || errdefs.IsFailedPrecondition(err) {
			break
		}
	}
	if tried == 0 {
		return fmt.Errorf("%s %s: no host of %s has the %s capability: %w", r.ref.Name(), what, r.ref.Domain, want, errdefs.ErrFailedPrecondition)
	}
	if len(errs) == 1 {
		return fmt.Errorf("%s %s: %w", r.ref.Name(), what, errs[0])
	}
	return fmt.Errorf("%s %s: %w", r.ref.Name(), what, errors.Join(errs...))
}

// isClass reports whether err already has a class of package errdefs, or
// an HTTP status that gives one.
func isClass(err error) bool {
	c := classify(err)
	return !errdefs.IsUnavailable(c) && !errdefs.IsUnknown(c)
}

// classify wraps err with the class of package errdefs it belongs to.
func classify(err error) error {
	for _, class := range []error{errdefs.ErrNotFound, errdefs.ErrInvalidArgument, errdefs.ErrPermissionDenied,
		errdefs.ErrFailedPrecondition, errdefs.ErrUnavailable, errdefs.ErrNotImplemented, errdefs.ErrUnknown} {
		if errors.Is(err, class) {
			return err
		}
	}
	var resp *errcode.ErrorResponse
	switch {
	case errors.Is(err, auth.ErrBasicCredentialNotFound):
		return fmt.Errorf("%w (the registry asks for credentials): %w", err, errdefs.ErrPermissionDenied)
	case errors.Is(err, errdef.ErrNotFound):
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	case errors.As(err, &resp):
		return fmt.Errorf("%w: %w", err, statusClass(resp.StatusCode))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
	}
	return fmt.Errorf("%w: %w", err, errdefs.ErrUnknown)
}

// statusClass is the class of an HTTP error status.
func statusClass(code int) error {
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return errdefs.ErrPermissionDenied
	case code == http.StatusNotFound:
		return errdefs.ErrNotFound
	case code == http.StatusTooManyRequests || code >= 500:
		return errdefs.ErrUnavailable
	case code == http.StatusRequestedRangeNotSatisfiable:
		return errdefs.ErrFailedPrecondition
	case code >= 400:
		return errdefs.ErrInvalidArgument
	}
	return errdefs.ErrUnknown
}

// responseError reads the registry's error answer (bounded) into an
// errcode.ErrorResponse.
func responseError(resp *http.Response) error {
	e := &errcode.ErrorResponse{Method: resp.Request.Method, URL: resp.Request.URL, StatusCode: resp.StatusCode}
	var body struct {
		Errors errcode.Errors `json:"errors"`
	}
	if data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<10)); err == nil && json.Unmarshal(data, &body) == nil {
		e.Errors = body.Errors
	}
	return fmt.Errorf("%w: %w", e, statusClass(resp.StatusCode))
}
