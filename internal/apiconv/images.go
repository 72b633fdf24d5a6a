package apiconv

import (
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/images"
	imagesv1 "github.com/berthrt/berth/proto/images/v1"
)

// ImageToProto converts an image record to its API form; zero times are
// left unset.
func ImageToProto(img images.Image) *imagesv1.Image {
	out := &imagesv1.Image{
		Name:   img.Name,
		Labels: img.Labels,
		Target: DescriptorToProto(img.Target),
	}
	if !img.CreatedAt.IsZero() {
		out.CreatedAt = timestamppb.New(img.CreatedAt)
	}
	if !img.UpdatedAt.IsZero() {
		out.UpdatedAt = timestamppb.New(img.UpdatedAt)
	}
	return out
}

// ImageFromProto converts an API image; unset times stay zero (a store
// sets its own on Create and Update).
func ImageFromProto(img *imagesv1.Image) images.Image {
	out := images.Image{Name: img.GetName(), Labels: img.GetLabels(), Target: DescriptorFromProto(img.GetTarget())}
	if img.GetCreatedAt() != nil {
		out.CreatedAt = img.GetCreatedAt().AsTime()
	}
	if img.GetUpdatedAt() != nil {
		out.UpdatedAt = img.GetUpdatedAt().AsTime()
	}
	return out
}

// DescriptorToProto converts an OCI descriptor to its API form.
func DescriptorToProto(d ocispec.Descriptor) *imagesv1.Descriptor {
	out := &imagesv1.Descriptor{
		MediaType:   d.MediaType,
		Digest:      d.Digest.String(),
		Size:        d.Size,
		Annotations: d.Annotations,
		Urls:        d.URLs,
	}
	if p := d.Platform; p != nil {
		out.Platform = &imagesv1.Platform{Os: p.OS, Architecture: p.Architecture, Variant: p.Variant, OsVersion: p.OSVersion, OsFeatures: p.OSFeatures}
	}
	return out
}

// DescriptorFromProto converts an API descriptor (nil: the zero one).
func DescriptorFromProto(d *imagesv1.Descriptor) ocispec.Descriptor {
	out := ocispec.Descriptor{
		MediaType:   d.GetMediaType(),
		Digest:      digest.Digest(d.GetDigest()),
		Size:        d.GetSize(),
		Annotations: d.GetAnnotations(),
		URLs:        d.GetUrls(),
	}
	if p := d.GetPlatform(); p != nil {
		out.Platform = &ocispec.Platform{OS: p.GetOs(), Architecture: p.GetArchitecture(), Variant: p.GetVariant(), OSVersion: p.GetOsVersion(), OSFeatures: p.GetOsFeatures()}
	}
	return out
}
