package cri

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/unpack"
)

// An image, as the CRI sees it, is every berth image record (name) whose
// target resolves to one config: the image's id is that config's digest,
// as Docker and containerd report it. Its names with a tag are its
// RepoTags; each name's repository at the target's digest is a RepoDigest.

// imageConfig is what the CRI reports of an image's content; it is
// immutable for a target digest, so it is cached by it.
type imageConfig struct {
	id     string // the config's digest
	size   int64  // manifest, config and layers
	config ocispec.Image
}

// imageCache holds the resolved content of the targets seen.
type imageCache struct {
	mu       sync.Mutex // guards byTarget
	byTarget map[string]imageConfig
}

// criImage is one CRI image: its id and the berth images naming it.
type criImage struct {
	imageConfig
	target ocispec.Descriptor
	names  []string
}

// resolve returns the config of target, from the cache or the content
// store.
func (s *Server) resolve(ctx context.Context, target ocispec.Descriptor) (imageConfig, error) {
	s.images.mu.Lock()
	ic, ok := s.images.byTarget[target.Digest.String()]
	s.images.mu.Unlock()
	if ok {
		return ic, nil
	}
	r, err := unpack.Resolve(ctx, s.client.ContentStore(), target, nil)
	if err != nil {
		return imageConfig{}, err
	}
	ic = imageConfig{id: r.Config.Digest.String(), size: r.Manifest.Size + r.Config.Size, config: r.Spec}
	for _, l := range r.Layers {
		ic.size += l.Size
	}
	s.images.mu.Lock()
	s.images.byTarget[target.Digest.String()] = ic
	s.images.mu.Unlock()
	return ic, nil
}

// listImages groups every image of the namespace by id, in name order.
// Images whose content cannot be resolved (a pull in progress, content
// collected) are left out.
func (s *Server) listImages(ctx context.Context) ([]*criImage, error) {
	list, err := s.client.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string]*criImage{}
	var out []*criImage
	for _, img := range list {
		ic, err := s.resolve(ctx, img.Target())
		if err != nil {
			s.log.Debug("cri: image left out of the list", "image", img.Name(), "error", err)
			continue
		}
		ci := byID[ic.id]
		if ci == nil {
			ci = &criImage{imageConfig: ic, target: img.Target()}
			byID[ic.id] = ci
			out = append(out, ci)
		}
		ci.names = append(ci.names, img.Name())
	}
	return out, nil
}

// imageID returns the config digest that ref names when ref is an image
// id: "sha256:<hex>", or the bare 64 hex digits.
func imageID(ref string) (string, bool) {
	if d, err := digest.Parse(ref); err == nil {
		return d.String(), true
	}
	if len(ref) == 64 && strings.Trim(ref, "0123456789abcdef") == "" {
		return "sha256:" + ref, true
	}
	return "", false
}

// normalizeRef returns the full form of an image reference as the CRI
// gives it ("busybox" → "docker.io/library/busybox:latest"; a tag and a
// digest together keep the digest).
func normalizeRef(ref string) (string, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %.200q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	return named.String(), nil
}

// findImage returns the CRI image that ref names: an image id (also the
// id of a name's target) or a reference in any short or long form. Not
// found is ErrNotFound.
func (s *Server) findImage(ctx context.Context, ref string) (*criImage, error) {
	if ref == "" {
		return nil, fmt.Errorf("image reference is empty: %w", errdefs.ErrInvalidArgument)
	}
	id, isID := imageID(ref)
	if !isID {
		name, err := normalizeRef(ref)
		if err != nil {
			return nil, err
		}
		img, err := s.client.GetImage(ctx, name)
		if err != nil {
			return nil, err
		}
		ic, err := s.resolve(ctx, img.Target())
		if err != nil {
			return nil, err
		}
		id = ic.id
	}
	list, err := s.listImages(ctx)
	if err != nil {
		return nil, err
	}
	for _, ci := range list {
		if ci.id == id {
			return ci, nil
		}
	}
	return nil, fmt.Errorf("image %.200q: %w", ref, errdefs.ErrNotFound)
}

// toCRI returns the CRI's view of ci.
func (s *Server) toCRI(ci *criImage) *runtimeapi.Image {
	img := &runtimeapi.Image{Id: ci.id, Size: uint64(ci.size), Spec: &runtimeapi.ImageSpec{Image: ci.id}}
	sandbox, _ := normalizeRef(s.cfg.SandboxImage)
	for _, name := range ci.names {
		if name == sandbox {
			img.Pinned = true
		}
		named, err := reference.ParseNormalizedNamed(name)
		if err != nil {
			continue // a name given through the API that is no reference
		}
		if _, ok := named.(reference.Tagged); ok {
			img.RepoTags = append(img.RepoTags, name)
		}
		if d, err := reference.WithDigest(reference.TrimNamed(named), ci.target.Digest); err == nil && !slices.Contains(img.RepoDigests, d.String()) {
			img.RepoDigests = append(img.RepoDigests, d.String())
		}
	}
	user, _, _ := strings.Cut(ci.config.Config.User, ":")
	if uid, err := strconv.ParseInt(user, 10, 64); err == nil {
		img.Uid = &runtimeapi.Int64Value{Value: uid}
	} else {
		img.Username = user
	}
	return img
}

// ListImages lists the images, grouped by id, optionally those that
// filter.image names.
func (s *Server) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	ctx = nsContext(ctx)
	if ref := req.GetFilter().GetImage().GetImage(); ref != "" {
		ci, err := s.findImage(ctx, ref)
		if errdefs.IsNotFound(err) {
			return &runtimeapi.ListImagesResponse{}, nil
		}
		if err != nil {
			return nil, err
		}
		return &runtimeapi.ListImagesResponse{Images: []*runtimeapi.Image{s.toCRI(ci)}}, nil
	}
	list, err := s.listImages(ctx)
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListImagesResponse{}
	for _, ci := range list {
		resp.Images = append(resp.Images, s.toCRI(ci))
	}
	return resp, nil
}

// ImageStatus reports one image; an image that does not exist is no
// error but an empty response, as the CRI asks.
func (s *Server) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ci, err := s.findImage(nsContext(ctx), req.GetImage().GetImage())
	if errdefs.IsNotFound(err) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ImageStatusResponse{Image: s.toCRI(ci)}
	if req.GetVerbose() {
		resp.Info = map[string]string{"names": strings.Join(ci.names, ","), "target": ci.target.Digest.String()}
	}
	return resp, nil
}

// PullImage pulls and unpacks an image, with the request's credentials
// over the daemon's registry settings, and returns its id.
func (s *Server) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	ctx = nsContext(ctx)
	name, err := normalizeRef(req.GetImage().GetImage())
	if err != nil {
		return nil, err
	}
	opts := []client.RemoteOpt{client.WithPullUnpack}
	if auth := req.GetAuth(); auth != nil {
		user, pass, err := credentials(auth)
		if err != nil {
			return nil, err
		}
		if user != "" || pass != "" {
			opts = append(opts, client.WithCredentials(user, pass))
		}
	}
	img, err := s.client.Pull(ctx, name, opts...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", name, err)
	}
	ic, err := s.resolve(ctx, img.Target())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PullImageResponse{ImageRef: ic.id}, nil
}

// credentials returns the user name and password (or token) of a CRI
// AuthConfig: username and password, else the base64 "user:password" of
// auth, else an identity or registry token as the password.
func credentials(a *runtimeapi.AuthConfig) (string, string, error) {
	switch {
	case a.Username != "" || a.Password != "":
		return a.Username, a.Password, nil
	case a.Auth != "":
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return "", "", fmt.Errorf("auth: not base64: %w", errdefs.ErrInvalidArgument)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return "", "", fmt.Errorf("auth: not user:password: %w", errdefs.ErrInvalidArgument)
		}
		return user, pass, nil
	case a.IdentityToken != "":
		return "", a.IdentityToken, nil
	case a.RegistryToken != "":
		return "", a.RegistryToken, nil
	}
	return "", "", nil
}

// RemoveImage removes every name of the image; an image that does not
// exist is no error.
func (s *Server) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	ctx = nsContext(ctx)
	ci, err := s.findImage(ctx, req.GetImage().GetImage())
	if errdefs.IsNotFound(err) {
		return &runtimeapi.RemoveImageResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	for _, name := range ci.names {
		if err := s.client.DeleteImage(ctx, name); err != nil && !errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("remove image %s: %w", name, err)
		}
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

// ImageFsInfo reports the filesystem that holds the snapshots: its used
// bytes and inodes as statfs counts them.
func (s *Server) ImageFsInfo(context.Context, *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.cfg.ImageFSDir, &st); err != nil {
		return nil, fmt.Errorf("image filesystem %s: %w", s.cfg.ImageFSDir, err)
	}
	usage := &runtimeapi.FilesystemUsage{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: s.cfg.ImageFSDir},
		UsedBytes:  &runtimeapi.UInt64Value{Value: (st.Blocks - st.Bfree) * uint64(st.Bsize)},
		InodesUsed: &runtimeapi.UInt64Value{Value: st.Files - st.Ffree},
	}
	return &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{usage}}, nil
}
