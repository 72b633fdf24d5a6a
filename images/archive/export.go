package archive

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/images/progress"
)

// Export writes the images of WithImages to w as an OCI image layout in a
// tar (uncompressed): oci-layout, then blobs/<algorithm>/<hex> for each
// blob the images reach, each once, then index.json with one entry per
// image, its target descriptor annotated with io.containerd.image.name
// (the whole name) and org.opencontainers.image.ref.name (the tag, or the
// name when it has none), as containerd writes them.
//
// Platforms: of an index, only the manifests for the platform the
// options choose (WithPlatform; linux/amd64 by default) and those
// without a platform are followed, or all under WithAllPlatforms. The
// index itself is written as it is, as containerd does: the image keeps
// its digest, and the archive then lacks the manifests of the other
// platforms, which an importer must not ask for (berth's Import, skopeo
// and containerd take one platform by default).
//
// Every blob is looked up before the first byte is written, so an image
// whose blobs are missing from store is ErrNotFound naming the image and
// the blob, and nothing is written. Blobs are verified against their
// digest while they are copied; a stored blob that does not match makes
// Export fail with ErrFailedPrecondition, and what was written to w is
// then to be thrown away.
func Export(ctx context.Context, store images.InfoProvider, w io.Writer, opts ...Opt) error {
	o, err := newOptions(opts)
	if err != nil {
		return err
	}
	if len(o.ImportOnly) > 0 {
		return fmt.Errorf("export: %s is an option of Import: %w", o.ImportOnly[0], errdefs.ErrInvalidArgument)
	}
	if len(o.Images) == 0 {
		return fmt.Errorf("export: no image (WithImages): %w", errdefs.ErrInvalidArgument)
	}
	blobs, err := reachable(ctx, store, o)
	if err != nil {
		return err
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for _, img := range o.Images {
		d := img.Target
		d.Annotations = maps.Clone(d.Annotations)
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations[images.AnnotationImageName] = img.Name
		d.Annotations[images.AnnotationRefName] = refName(img.Name)
		idx.Manifests = append(idx.Manifests, d)
	}
	index, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	layout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	if err := writeFile(tw, ocispec.ImageLayoutFile, layout); err != nil {
		return err
	}
	dirs := map[digest.Algorithm]bool{}
	if err := writeDir(tw, ocispec.ImageBlobsDir+"/"); err != nil {
		return err
	}
	buf := make([]byte, content.ChunkSize)
	for _, b := range blobs {
		if alg := b.Digest.Algorithm(); !dirs[alg] {
			dirs[alg] = true
			if err := writeDir(tw, ocispec.ImageBlobsDir+"/"+alg.String()+"/"); err != nil {
				return err
			}
		}
		if err := writeBlob(ctx, store, tw, b, buf, o); err != nil {
			return err
		}
	}
	if err := writeFile(tw, ocispec.ImageIndexFile, index); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// reachable returns the blobs of the images o names, each once, in the
// order a walk finds them, after checking that store holds each with its
// descriptor's size.
func reachable(ctx context.Context, store images.InfoProvider, o *options) ([]ocispec.Descriptor, error) {
	var blobs []ocispec.Descriptor
	seen := map[digest.Digest]bool{}
	m := o.matcher()
	for _, img := range o.Images {
		err := images.Walk(ctx, func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
			if seen[desc.Digest] {
				return nil, images.ErrSkipChildren
			}
			seen[desc.Digest] = true
			info, err := store.Info(ctx, desc.Digest)
			if err != nil {
				return nil, err
			}
			if info.Size != desc.Size {
				return nil, fmt.Errorf("blob %s: %d bytes in the store, %d in its descriptor: %w", desc.Digest, info.Size, desc.Size, errdefs.ErrFailedPrecondition)
			}
			blobs = append(blobs, desc)
			children, err := images.Children(ctx, store, desc)
			if err != nil || !images.IsIndex(desc.MediaType) {
				return children, err
			}
			taken := images.SelectPlatforms(children, m)
			if len(taken) == 0 && len(children) > 0 {
				return nil, fmt.Errorf("index %s: no manifest for %s (it has %s): %w", desc.Digest, o.platformString(), platformList(children), errdefs.ErrNotFound)
			}
			return taken, nil
		}, img.Target)
		if err != nil {
			return nil, fmt.Errorf("export: image %q: %w", img.Name, err)
		}
	}
	return blobs, nil
}

// refName is the org.opencontainers.image.ref.name of the image name: its
// tag, or the name when it has none.
func refName(name string) string {
	if r, err := distribution.ParseRef(name); err == nil && r.Tag != "" && r.Digest == "" {
		return r.Tag
	}
	return name
}

// epoch is the modification time of every entry, so that the same
// images make the same archive.
var epoch = time.Unix(0, 0).UTC()

func writeDir(tw *tar.Writer, name string) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch}); err != nil {
		return fmt.Errorf("export: %s: %w", name, err)
	}
	return nil
}

func writeFile(tw *tar.Writer, name string, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
		return fmt.Errorf("export: %s: %w", name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("export: %s: %w", name, err)
	}
	return nil
}

// writeBlob copies the blob desc from store into tw, verifying it.
func writeBlob(ctx context.Context, store content.Provider, tw *tar.Writer, desc ocispec.Descriptor, buf []byte, o *options) (err error) {
	name := ocispec.ImageBlobsDir + "/" + desc.Digest.Algorithm().String() + "/" + desc.Digest.Encoded()
	ra, err := store.ReaderAt(ctx, desc)
	if err != nil {
		return fmt.Errorf("export: blob %s: %w", desc.Digest, err)
	}
	defer func() { err = errors.Join(err, ra.Close()) }()
	if ra.Size() != desc.Size {
		return fmt.Errorf("export: blob %s: %d bytes in the store, %d in its descriptor: %w", desc.Digest, ra.Size(), desc.Size, errdefs.ErrFailedPrecondition)
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o444, Size: desc.Size, ModTime: epoch}); err != nil {
		return fmt.Errorf("export: %s: %w", name, err)
	}
	v := desc.Digest.Verifier()
	m := &meter{report: o.report, p: progress.Progress{Ref: "export-" + desc.Digest.String(), Digest: desc.Digest, MediaType: desc.MediaType, Status: progress.StatusUploading, Total: desc.Size}}
	r := &ctxReader{ctx: ctx, r: content.NewReader(ra)}
	if _, err := io.CopyBuffer(io.MultiWriter(tw, v, m), r, buf); err != nil {
		return fmt.Errorf("export: %s: %w", name, err)
	}
	if !v.Verified() {
		return fmt.Errorf("export: blob %s: the stored bytes do not match their digest: %w", desc.Digest, errdefs.ErrFailedPrecondition)
	}
	m.p.Status = progress.StatusDone
	m.flush()
	return nil
}
