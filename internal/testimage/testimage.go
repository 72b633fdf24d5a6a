// Package testimage builds small OCI images in memory for tests and the
// demo: layers from a list of entries (files, folders, symlinks,
// whiteouts), gzip'd, a config with the diff IDs, a manifest, and an OCI
// image layout archive (oci-layout, index.json, blobs/sha256/…) that
// `berthctl images import` reads.
package testimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	_ "crypto/sha256" // go-digest's sha256
	"encoding/json"
	"fmt"
	"io"
	"path"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Entry is one entry of a layer tar.
type Entry struct {
	// Name is the path inside the layer, relative ("etc/passwd").
	Name string
	// Type is tar.TypeReg (the zero value stands for it), TypeDir or
	// TypeSymlink.
	Type byte
	// Mode is the permission bits; 0644 for a file and 0755 for a folder
	// when 0.
	Mode int64
	// Data is a file's content; Link a symlink's target.
	Data []byte
	Link string
}

// File is a regular file entry.
func File(name, data string) Entry { return Entry{Name: name, Data: []byte(data)} }

// Executable is a regular file entry of mode 0755.
func Executable(name string, data []byte) Entry {
	return Entry{Name: name, Data: data, Mode: 0o755}
}

// Dir is a folder entry.
func Dir(name string) Entry { return Entry{Name: name, Type: tar.TypeDir} }

// Symlink is a symbolic link entry.
func Symlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeSymlink, Link: target}
}

// Whiteout deletes name of the layers below (OCI ".wh." file).
func Whiteout(name string) Entry {
	return Entry{Name: path.Join(path.Dir(name), ".wh."+path.Base(name))}
}

// Opaque hides everything the layers below have in the folder dir.
func Opaque(dir string) Entry { return Entry{Name: path.Join(dir, ".wh..wh..opq")} }

// Image is a built image: its blobs and the descriptors that name them.
type Image struct {
	Manifest ocispec.Descriptor
	Config   ocispec.Descriptor
	Layers   []ocispec.Descriptor
	DiffIDs  []digest.Digest
	// Blobs are every blob by digest: layers, config, manifest.
	Blobs map[digest.Digest][]byte
}

// epoch is the time of every entry, so that builds are reproducible.
var epoch = time.Unix(1700000000, 0)

// Build builds a linux/amd64 image of layers (bottom first) with cfg as
// its runtime config.
func Build(cfg ocispec.ImageConfig, layers ...[]Entry) (*Image, error) {
	img := &Image{Blobs: map[digest.Digest][]byte{}}
	for i, entries := range layers {
		raw, err := Tar(entries)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(raw)
		if err := zw.Close(); err != nil {
			return nil, err
		}
		img.Layers = append(img.Layers, img.add(ocispec.MediaTypeImageLayerGzip, gz.Bytes()))
		img.DiffIDs = append(img.DiffIDs, digest.FromBytes(raw))
	}
	spec := ocispec.Image{
		Created:  &epoch,
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config:   cfg,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: img.DiffIDs},
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	img.Config = img.add(ocispec.MediaTypeImageConfig, data)
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: img.Config, Layers: img.Layers}
	if data, err = json.Marshal(m); err != nil {
		return nil, err
	}
	img.Manifest = img.add(ocispec.MediaTypeImageManifest, data)
	return img, nil
}

func (img *Image) add(mediaType string, data []byte) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	img.Blobs[d.Digest] = data
	return d
}

// Tar returns the uncompressed layer tar of entries, in their order.
func Tar(entries []Entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Mode: e.Mode, ModTime: epoch, Format: tar.FormatPAX}
		switch e.Type {
		case 0, tar.TypeReg:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.Data))
			if h.Mode == 0 {
				h.Mode = 0o644
			}
		case tar.TypeDir:
			if h.Mode == 0 {
				h.Mode = 0o755
			}
		case tar.TypeSymlink:
			h.Linkname = e.Link
			h.Mode = 0o777
		default:
			return nil, fmt.Errorf("entry %s: type %q not supported", e.Name, e.Type)
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteOCIArchive writes img as an OCI image layout tar to w, its
// index.json entry annotated with name (io.containerd.image.name).
func (img *Image) WriteOCIArchive(w io.Writer, name string) error {
	manifest := img.Manifest
	manifest.Annotations = map[string]string{"io.containerd.image.name": name}
	index, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{manifest}})
	if err != nil {
		return err
	}
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	tw := tar.NewWriter(w)
	file := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := file(ocispec.ImageLayoutFile, layout); err != nil {
		return err
	}
	if err := file("index.json", index); err != nil {
		return err
	}
	seen := map[digest.Digest]bool{}
	for _, d := range append([]ocispec.Descriptor{img.Manifest, img.Config}, img.Layers...) {
		if seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		if err := file("blobs/sha256/"+d.Digest.Encoded(), img.Blobs[d.Digest]); err != nil {
			return err
		}
	}
	return tw.Close()
}
