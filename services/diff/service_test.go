package diff

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/ttrpc"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/diff"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/apiconv"
	"github.com/berthrt/berth/namespaces"
	api "github.com/berthrt/berth/proto/diff/v1"
	imagesv1 "github.com/berthrt/berth/proto/images/v1"
	typesv1 "github.com/berthrt/berth/proto/types/v1"
	"github.com/berthrt/berth/storage/content/local"
	"github.com/berthrt/berth/storage/metadata"
)

// serve serves the API over a fresh namespaced content store on a unix
// socket and returns a client of it (with the client side of the error
// edge, so that classes survive the trip) and the store.
func serve(t *testing.T) (api.DiffService, content.Store) {
	t.Helper()
	dir := t.TempDir()
	db, err := metadata.Open(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	localStore, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	store := db.ContentStore(localStore)
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(errdefs.ServerErrors))
	if err != nil {
		t.Fatal(err)
	}
	Register(srv, Config{Content: store, TempMounts: filepath.Join(dir, "tmpmounts")})
	l, err := net.Listen("unix", filepath.Join(dir, "diff.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	conn, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := ttrpc.NewClient(conn, ttrpc.WithUnaryClientInterceptor(errdefs.ClientErrors))
	t.Cleanup(func() { tc.Close() })
	return api.NewDiffClient(tc), store
}

// bind is the mount of folder dir in place.
func bind(dir string) []*typesv1.Mount {
	return []*typesv1.Mount{{Type: "bind", Source: dir, Options: []string{"rbind", "ro"}}}
}

// writeTree makes files (path to content; "" makes a folder) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, data := range files {
		p = filepath.Join(dir, p)
		if data == "" {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// entries returns the names in the layer desc, decompressed by its media
// type, and the digest of its tar.
func entries(t *testing.T, ctx context.Context, store content.Store, desc ocispec.Descriptor) ([]string, digest.Digest) {
	t.Helper()
	ra, err := store.ReaderAt(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	r, err := diff.Decompress(desc.MediaType, content.NewReader(ra))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	d := digest.Canonical.Digester()
	tr := tar.NewReader(io.TeeReader(r, d.Hash()))
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	io.Copy(io.Discard, r)
	return names, d.Digest()
}

// TestDiffApplyRoundTrip compares two trees into a layer of each media
// type and applies it onto a copy of the lower tree: the result has the
// upper tree's files, the deleted one gone, and the diff ID Diff reported
// is the digest of the tar and what Apply returns.
func TestDiffApplyRoundTrip(t *testing.T) {
	svc, store := serve(t)
	ctx := namespaces.WithNamespace(context.Background(), "diff-test")
	lower, upper := t.TempDir(), t.TempDir()
	base := map[string]string{"etc/keep": "k", "etc/gone": "g", "bin/": ""}
	writeTree(t, lower, base)
	writeTree(t, upper, base)
	writeTree(t, upper, map[string]string{"etc/new": "n", "data/": "", "etc/keep": "changed"})
	if err := os.Remove(filepath.Join(upper, "etc/gone")); err != nil {
		t.Fatal(err)
	}
	for _, mt := range []string{"", ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd, ocispec.MediaTypeImageLayer} {
		t.Run(mt, func(t *testing.T) {
			resp, err := svc.Diff(ctx, &api.DiffRequest{Left: bind(lower), Right: bind(upper), MediaType: mt, Labels: map[string]string{"test": "1"}})
			if err != nil {
				t.Fatal(err)
			}
			desc := apiconv.DescriptorFromProto(resp.GetDiff())
			want := mt
			if want == "" {
				want = ocispec.MediaTypeImageLayerGzip
			}
			if desc.MediaType != want {
				t.Errorf("media type %q, want %q", desc.MediaType, want)
			}
			info, err := store.Info(ctx, desc.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if info.Labels["test"] != "1" || info.Labels[diff.LabelUncompressed] != resp.GetDiffId() || info.Size != desc.Size {
				t.Errorf("blob %+v, want labels test=1 and the diff ID %s, size %d", info, resp.GetDiffId(), desc.Size)
			}
			names, tarDigest := entries(t, ctx, store, desc)
			if tarDigest.String() != resp.GetDiffId() {
				t.Errorf("diff ID %s, the tar's digest is %s", resp.GetDiffId(), tarDigest)
			}
			if len(names) == 0 {
				t.Fatal("empty layer for different trees")
			}

			target := t.TempDir()
			writeTree(t, target, base)
			applied, err := svc.Apply(ctx, &api.ApplyRequest{Diff: resp.GetDiff(), Mounts: []*typesv1.Mount{{Type: "bind", Source: target, Options: []string{"rbind"}}}})
			if err != nil {
				t.Fatal(err)
			}
			if got := applied.GetApplied(); got.GetDigest() != resp.GetDiffId() || got.GetMediaType() != ocispec.MediaTypeImageLayer {
				t.Errorf("applied %v, want the diff ID %s", got, resp.GetDiffId())
			}
			for p, want := range map[string]string{"etc/new": "n", "etc/keep": "changed"} {
				if data, err := os.ReadFile(filepath.Join(target, p)); err != nil || string(data) != want {
					t.Errorf("%s after apply: %q, %v; want %q", p, data, err, want)
				}
			}
			if st, err := os.Stat(filepath.Join(target, "data")); err != nil || !st.IsDir() {
				t.Errorf("data after apply: %v", err)
			}
			if _, err := os.Lstat(filepath.Join(target, "etc/gone")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("etc/gone after apply: %v, want it deleted", err)
			}
		})
	}
}

// TestDiffEqualTrees: two equal trees, and no left side against an empty
// folder, give a layer without entries. A second diff to a blob the
// namespace holds still returns, and labels it with, the diff ID.
func TestDiffEqualTrees(t *testing.T) {
	svc, store := serve(t)
	ctx := namespaces.WithNamespace(context.Background(), "diff-test")
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"a": "a", "sub/": ""})
	for name, req := range map[string]*api.DiffRequest{
		"same mounts":       {Left: bind(dir), Right: bind(dir)},
		"nothing, no files": {Right: bind(t.TempDir())},
	} {
		resp, err := svc.Diff(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		desc := apiconv.DescriptorFromProto(resp.GetDiff())
		if names, _ := entries(t, ctx, store, desc); len(names) != 0 {
			t.Errorf("%s: entries %v, want none", name, names)
		}
		// The blob loses its label; the next diff that makes it again
		// sets it.
		if _, err := store.Update(ctx, content.Info{Digest: desc.Digest}, "labels."+diff.LabelUncompressed); err != nil {
			t.Fatal(err)
		}
		again, err := svc.Diff(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		info, err := store.Info(ctx, desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if again.GetDiffId() != resp.GetDiffId() || info.Labels[diff.LabelUncompressed] != resp.GetDiffId() {
			t.Errorf("%s again: diff ID %s, label %q; want %s", name, again.GetDiffId(), info.Labels[diff.LabelUncompressed], resp.GetDiffId())
		}
	}
}

// TestDiffErrors: bad requests fail with a class and a message, and leave
// no ingest behind.
func TestDiffErrors(t *testing.T) {
	svc, store := serve(t)
	ctx := namespaces.WithNamespace(context.Background(), "diff-test")
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	many := make([]*typesv1.Mount, MaxMounts+1)
	for i := range many {
		many[i] = bind(dir)[0]
	}
	diffs := []struct {
		name  string
		req   *api.DiffRequest
		class error
		root  bool // the kernel decides
	}{
		{"no right side", &api.DiffRequest{Left: bind(dir)}, errdefs.ErrInvalidArgument, false},
		{"unknown media type", &api.DiffRequest{Right: bind(dir), MediaType: "application/x-tar"}, errdefs.ErrNotImplemented, false},
		{"docker media type", &api.DiffRequest{Right: bind(dir), MediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip"}, errdefs.ErrNotImplemented, false},
		{"missing bind source", &api.DiffRequest{Right: bind(missing)}, errdefs.ErrNotFound, false},
		{"missing overlay lowerdir", &api.DiffRequest{Right: []*typesv1.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + dir + ":" + missing}}}}, errdefs.ErrNotFound, false},
		{"mount without type", &api.DiffRequest{Right: []*typesv1.Mount{{Source: dir}}}, errdefs.ErrInvalidArgument, false},
		{"too many mounts", &api.DiffRequest{Right: many}, errdefs.ErrInvalidArgument, false},
		{"bad label", &api.DiffRequest{Right: bind(dir), Labels: map[string]string{"": "x"}}, errdefs.ErrInvalidArgument, false},
		{"bad ref", &api.DiffRequest{Right: bind(dir), Ref: "a\nb"}, errdefs.ErrInvalidArgument, false},
		{"unknown filesystem", &api.DiffRequest{Right: []*typesv1.Mount{{Type: "nosuchfs", Source: "none"}}, Ref: "left-over"}, errdefs.ErrInvalidArgument, true},
		{"a block device's filesystem", &api.DiffRequest{Right: []*typesv1.Mount{{Type: "ext4", Source: "/dev/sda1"}}}, errdefs.ErrInvalidArgument, false},
		{"relative bind source", &api.DiffRequest{Right: []*typesv1.Mount{{Type: "bind", Source: "tmp", Options: []string{"rbind"}}}}, errdefs.ErrInvalidArgument, false},
		{"overlay upperdir with ..", &api.DiffRequest{Right: []*typesv1.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + dir, "upperdir=" + dir + "/../x", "workdir=" + dir}}}}, errdefs.ErrInvalidArgument, false},
	}
	for _, tc := range diffs {
		if tc.root && os.Geteuid() != 0 {
			continue
		}
		_, err := svc.Diff(ctx, tc.req)
		if !errors.Is(err, tc.class) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.class)
		}
	}
	layer := &imagesv1.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString("nope").String(), Size: 10}
	applies := []struct {
		name  string
		req   *api.ApplyRequest
		class error
	}{
		{"unknown layer", &api.ApplyRequest{Diff: layer, Mounts: bind(dir)}, errdefs.ErrNotFound},
		{"no mounts", &api.ApplyRequest{Diff: layer}, errdefs.ErrInvalidArgument},
		{"no descriptor", &api.ApplyRequest{Mounts: bind(dir)}, errdefs.ErrInvalidArgument},
		{"bad digest", &api.ApplyRequest{Diff: &imagesv1.Descriptor{MediaType: layer.MediaType, Digest: "sha256:xyz", Size: 1}, Mounts: bind(dir)}, errdefs.ErrInvalidArgument},
	}
	for _, tc := range applies {
		if _, err := svc.Apply(ctx, tc.req); !errors.Is(err, tc.class) {
			t.Errorf("apply, %s: %v, want %v", tc.name, err, tc.class)
		}
	}
	if sts, err := store.ListStatuses(ctx); err != nil || len(sts) != 0 {
		t.Errorf("ingests after failed calls: %v, %v", sts, err)
	}
}
