package metadata

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images"
)

// The keys of an image record, v1/<ns>/images/<name>/; doc.go draws them.
var (
	bucketTarget      = []byte("target")
	keyMediaType      = []byte("mediatype")
	keyDigest         = []byte("digest")
	bucketAnnotations = []byte("annotations")
	keyPlatform       = []byte("platform")
	keyURLs           = []byte("urls")
)

// writeImage writes every field of img into ib, replacing what was there.
func writeImage(ib *bolt.Bucket, img images.Image) error {
	if err := putTime(ib, keyCreatedAt, img.CreatedAt); err != nil {
		return err
	}
	if err := putTime(ib, keyUpdatedAt, img.UpdatedAt); err != nil {
		return err
	}
	if err := writeLabels(ib, img.Labels); err != nil {
		return err
	}
	if ib.Bucket(bucketTarget) != nil {
		if err := ib.DeleteBucket(bucketTarget); err != nil {
			return err
		}
	}
	tb, err := ib.CreateBucket(bucketTarget)
	if err != nil {
		return err
	}
	return writeDescriptor(tb, img.Target)
}

// writeDescriptor writes d into the empty bucket b.
func writeDescriptor(b *bolt.Bucket, d ocispec.Descriptor) error {
	if err := b.Put(keyMediaType, []byte(d.MediaType)); err != nil {
		return err
	}
	if err := b.Put(keyDigest, []byte(d.Digest)); err != nil {
		return err
	}
	if err := b.Put(keySize, binary.AppendVarint(nil, d.Size)); err != nil {
		return err
	}
	if len(d.Annotations) > 0 {
		ab, err := b.CreateBucket(bucketAnnotations)
		if err != nil {
			return err
		}
		for k, v := range d.Annotations {
			if v == "" {
				continue
			}
			if err := ab.Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
	}
	if d.Platform != nil {
		raw, err := json.Marshal(d.Platform)
		if err != nil {
			return err
		}
		if err := b.Put(keyPlatform, raw); err != nil {
			return err
		}
	}
	if len(d.URLs) > 0 {
		raw, err := json.Marshal(d.URLs)
		if err != nil {
			return err
		}
		if err := b.Put(keyURLs, raw); err != nil {
			return err
		}
	}
	return nil
}

// readImage reads the image name of ns from ib, copied out of the
// transaction. A record that does not decode is ErrInternal.
func readImage(ns, name string, ib *bolt.Bucket) (images.Image, error) {
	bad := func(what string, err error) error {
		return fmt.Errorf("image %q in namespace %q: %s: %v: %w", name, ns, what, err, errdefs.ErrInternal)
	}
	img := images.Image{Name: name, Labels: readLabels(ib)}
	for _, t := range []struct {
		key []byte
		to  *time.Time
	}{{keyCreatedAt, &img.CreatedAt}, {keyUpdatedAt, &img.UpdatedAt}} {
		if err := t.to.UnmarshalBinary(ib.Get(t.key)); err != nil {
			return images.Image{}, bad(string(t.key), err)
		}
		*t.to = t.to.UTC()
	}
	tb := ib.Bucket(bucketTarget)
	if tb == nil {
		return images.Image{}, bad("target", fmt.Errorf("missing"))
	}
	d, err := readDescriptor(tb)
	if err != nil {
		return images.Image{}, bad("target", err)
	}
	img.Target = d
	return img, nil
}

func readDescriptor(b *bolt.Bucket) (ocispec.Descriptor, error) {
	d := ocispec.Descriptor{
		MediaType: string(b.Get(keyMediaType)),
		Digest:    digest.Digest(b.Get(keyDigest)),
	}
	size, n := binary.Varint(b.Get(keySize))
	if n <= 0 {
		return d, fmt.Errorf("size %x is not a varint", b.Get(keySize))
	}
	d.Size = size
	if ab := b.Bucket(bucketAnnotations); ab != nil {
		d.Annotations = map[string]string{}
		if err := ab.ForEach(func(k, v []byte) error {
			d.Annotations[string(k)] = string(v)
			return nil
		}); err != nil {
			return d, err
		}
	}
	if raw := b.Get(keyPlatform); raw != nil {
		d.Platform = &ocispec.Platform{}
		if err := json.Unmarshal(raw, d.Platform); err != nil {
			return d, fmt.Errorf("platform: %v", err)
		}
	}
	if raw := b.Get(keyURLs); raw != nil {
		if err := json.Unmarshal(raw, &d.URLs); err != nil {
			return d, fmt.Errorf("urls: %v", err)
		}
	}
	return d, nil
}
