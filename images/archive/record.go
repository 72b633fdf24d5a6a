package archive

import (
	"context"
	"fmt"
	"strings"

	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images"
)

// record creates or updates the image records of res's roots (and of
// its index under WithIndexName) in is. Every name is found and checked
// before the first record is written.
func (im *importer) record(ctx context.Context, is ImageStore, res *Result) error {
	var imgs []images.Image
	byName := map[string]int{}
	add := func(img images.Image, what string) error {
		if err := images.ValidateImageName(img.Name); err != nil {
			return fmt.Errorf("import: %s: %w", what, err)
		}
		if i, ok := byName[img.Name]; ok && imgs[i].Target.Digest != img.Target.Digest {
			return fmt.Errorf("import: %s: the name %q is given to %s and %s: %w", what, img.Name, imgs[i].Target.Digest, img.Target.Digest, errdefs.ErrInvalidArgument)
		} else if ok {
			return nil
		}
		byName[img.Name] = len(imgs)
		imgs = append(imgs, img)
		return nil
	}
	for i, root := range res.Roots {
		// A docker archive's roots carry the name docker() chose.
		name := root.Annotations[images.AnnotationImageName]
		if res.Format == FormatOCI {
			var err error
			if name, err = im.ociName(root.Annotations); err != nil {
				return fmt.Errorf("import: index.json entry %d: %w", i, err)
			}
		}
		if name == "" {
			continue
		}
		if err := add(images.Image{Name: name, Target: root}, fmt.Sprintf("root %d", i)); err != nil {
			return err
		}
	}
	if im.opts.IndexName != "" {
		if err := add(images.Image{Name: im.opts.IndexName, Target: res.Index}, "WithIndexName"); err != nil {
			return err
		}
	}
	if is == nil {
		return nil
	}
	for _, img := range imgs {
		stored, err := is.Create(ctx, img)
		if errdefs.IsAlreadyExists(err) {
			stored, err = is.Update(ctx, img, "target")
		}
		if err != nil {
			return fmt.Errorf("import: image %q: %w", img.Name, err)
		}
		res.Images = append(res.Images, stored)
	}
	return nil
}

// ociName is the image name of an index.json entry with annotations a
// (see Import); "" for none.
func (im *importer) ociName(a map[string]string) (string, error) {
	prefix := im.opts.NamePrefix
	if name := a[images.AnnotationImageName]; name != "" {
		if prefix != "" && !hasImagePrefix(name, prefix) {
			return "", nil
		}
		return name, nil
	}
	ref := a[images.AnnotationRefName]
	switch {
	case ref == "":
		return "", nil
	case !strings.ContainsAny(ref, "/:@"): // a bare tag
		if prefix == "" {
			return "", nil
		}
		ref = prefix + ":" + ref
	case prefix != "" && !hasImagePrefix(ref, prefix):
		return "", nil
	}
	r, err := distribution.ParseRef(ref)
	if err != nil {
		return "", fmt.Errorf("annotation %s: %w", images.AnnotationRefName, err)
	}
	return r.String(), nil
}
