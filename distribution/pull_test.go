package distribution_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/images"
)

// recorder collects progress reports.
type recorder struct {
	mu  sync.Mutex
	all []distribution.Progress
}

func (r *recorder) add(p distribution.Progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, p)
}

// last returns the last report of each ref.
func (r *recorder) last() map[string]distribution.Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]distribution.Progress{}
	for _, p := range r.all {
		out[p.Ref] = p
	}
	return out
}

func TestPushPullIndex(t *testing.T) {
	reg := startRegistry(t)
	r := resolver(t, distribution.ResolverOptions{})
	im := newIndex(t)
	ref := reg.Addr + "/berth/busybox:multi"
	push(t, r, im, ref)

	tests := []struct {
		name string
		opts []distribution.Opt
		want []string // platforms whose manifests are pulled
	}{
		{"default linux/amd64", nil, []string{"linux/amd64"}},
		{"platform linux/arm64", []distribution.Opt{distribution.WithPlatforms(mustPlatform(t, "linux/aarch64"))}, []string{"linux/arm64"}},
		{"two platforms", []distribution.Opt{distribution.WithPlatforms(mustPlatform(t, "linux/arm64"), mustPlatform(t, "linux/amd64"))}, []string{"linux/amd64", "linux/arm64"}},
		{"all platforms", []distribution.Opt{distribution.WithAllPlatforms()}, []string{"linux/amd64", "linux/arm64"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newStore(t)
			var rec recorder
			img, err := distribution.Pull(context.Background(), r, store, ref, append(tt.opts, distribution.WithProgress(rec.add))...)
			if err != nil {
				t.Fatal(err)
			}
			if img.Name != ref || img.Target.Digest != im.root.Digest || img.Target.MediaType != ocispec.MediaTypeImageIndex {
				t.Fatalf("image %+v, want %s at %s", img, ref, im.root.Digest)
			}
			requireBlobs(t, store, im, im.root)
			var labels []string
			for _, p := range []string{"linux/amd64", "linux/arm64"} {
				m := im.manifests[p]
				if contains(tt.want, p) {
					requireBlobs(t, store, im, im.reachable(t, m)...)
					requireGCLabels(t, store, im, m)
					labels = append(labels, m.Digest.String())
				} else {
					requireAbsent(t, store, m)
				}
			}
			info, err := store.Info(context.Background(), im.root.Digest)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for k, v := range info.Labels {
				if strings.HasPrefix(k, gc.LabelRefContent+".m.") {
					got = append(got, v)
				}
			}
			if !sameSet(got, labels) {
				t.Fatalf("index labels %v, want the manifests %v", info.Labels, labels)
			}
			for ref, p := range rec.last() {
				if p.Status != distribution.StatusDone || p.Offset != p.Total {
					t.Errorf("last report of %s: %+v, want done", ref, p)
				}
			}
		})
	}
}

// requireGCLabels checks the labels of the manifest m: its config and
// each layer.
func requireGCLabels(t testing.TB, store content.Store, im *testImage, m ocispec.Descriptor) {
	t.Helper()
	info, err := store.Info(context.Background(), m.Digest)
	if err != nil {
		t.Fatal(err)
	}
	children := im.reachable(t, m)[1:]
	if got := info.Labels[gc.LabelRefContent+".config"]; got != children[0].Digest.String() {
		t.Fatalf("manifest %s: config label %q, want %s", m.Digest, got, children[0].Digest)
	}
	for i, l := range children[1:] {
		if got := info.Labels[fmt.Sprintf("%s.l.%d", gc.LabelRefContent, i)]; got != l.Digest.String() {
			t.Fatalf("manifest %s: layer %d label %q, want %s", m.Digest, i, got, l.Digest)
		}
	}
}

func TestPullAgainFindsEverything(t *testing.T) {
	reg := startRegistry(t)
	r := resolver(t, distribution.ResolverOptions{})
	im := newImage(t)
	ref := reg.Addr + "/berth/single:1"
	push(t, r, im, ref)
	store := newStore(t)
	if _, err := distribution.Pull(context.Background(), r, store, ref); err != nil {
		t.Fatal(err)
	}
	var rec recorder
	if _, err := distribution.Pull(context.Background(), r, store, ref, distribution.WithProgress(rec.add)); err != nil {
		t.Fatal(err)
	}
	last := rec.last()
	if len(last) != 3 {
		t.Fatalf("reports %v, want 3 refs", last)
	}
	for ref, p := range last {
		if p.Status != distribution.StatusExists {
			t.Errorf("%s: %+v, want exists", ref, p)
		}
	}
	requireBlobs(t, store, im, im.reachable(t, im.root)...)
	requireGCLabels(t, store, im, im.root)
}

func TestPullByDigest(t *testing.T) {
	reg := startRegistry(t)
	r := resolver(t, distribution.ResolverOptions{})
	im := newImage(t)
	push(t, r, im, reg.Addr+"/berth/pinned:tag")
	store := newStore(t)
	ref := reg.Addr + "/berth/pinned@" + im.root.Digest.String()
	img, err := distribution.Pull(context.Background(), r, store, ref)
	if err != nil {
		t.Fatal(err)
	}
	if img.Name != ref || img.Target.Digest != im.root.Digest {
		t.Fatalf("image %+v", img)
	}
	requireBlobs(t, store, im, im.reachable(t, im.root)...)
}

func TestPullNoPlatform(t *testing.T) {
	reg := startRegistry(t)
	r := resolver(t, distribution.ResolverOptions{})
	im := newIndex(t)
	ref := reg.Addr + "/berth/busybox:multi"
	push(t, r, im, ref)
	store := newStore(t)
	_, err := distribution.Pull(context.Background(), r, store, ref, distribution.WithPlatforms(mustPlatform(t, "linux/s390x")))
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "linux/s390x") {
		t.Fatalf("pull for a platform the index lacks: %v, want not found naming it", err)
	}
	requireAbsent(t, store, im.reachable(t, im.root)...)
}

func TestPullNotFound(t *testing.T) {
	reg := startRegistry(t)
	r := resolver(t, distribution.ResolverOptions{})
	_, err := distribution.Pull(context.Background(), r, newStore(t), reg.Addr+"/berth/absent:1")
	if !errdefs.IsNotFound(err) {
		t.Fatalf("pull of an absent image: %v, want not found", err)
	}
}

// TestPullResumesAfterCancel cancels a pull in the middle of a 10 MiB
// layer, then pulls again through a proxy that logs the requests: the
// second download starts at the offset the first one persisted.
func TestPullResumesAfterCancel(t *testing.T) {
	reg := startRegistry(t)
	r := resolver(t, distribution.ResolverOptions{})
	big := randomLayer(t, 10<<20)
	im := newImage(t, big)
	ref := reg.Addr + "/berth/big:1"
	push(t, r, im, ref)
	bigDesc := im.reachable(t, im.root)[3]

	store := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := distribution.Pull(ctx, r, store, ref, distribution.WithProgress(func(p distribution.Progress) {
		if p.Digest == bigDesc.Digest && p.Status == distribution.StatusDownloading && p.Offset >= 3<<20 {
			cancel()
		}
	}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pull: %v", err)
	}
	st, err := store.Status(context.Background(), "pull-"+bigDesc.Digest.String())
	if err != nil {
		t.Fatalf("the ingest of the big layer: %v", err)
	}
	if st.Offset < 3<<20 || st.Offset >= bigDesc.Size {
		t.Fatalf("ingest offset %d, want between 3 MiB and %d", st.Offset, bigDesc.Size)
	}
	requireAbsent(t, store, im.root, bigDesc)

	p := newProxy(t, reg.Addr)
	var rec recorder
	proxied := p.Addr + "/berth/big:1"
	if _, err := distribution.Pull(context.Background(), r, store, proxied, distribution.WithProgress(rec.add)); err != nil {
		t.Fatal(err)
	}
	requireBlobs(t, store, im, im.reachable(t, im.root)...)
	requireRange(t, p, bigDesc.Digest, st.Offset)
	var first *distribution.Progress
	for _, pr := range rec.all {
		if pr.Digest == bigDesc.Digest && pr.Status == distribution.StatusDownloading {
			first = &pr
			break
		}
	}
	if first == nil || first.Offset != st.Offset {
		t.Fatalf("first download report %+v, want offset %d", first, st.Offset)
	}
}

// requireRange checks that the proxy saw exactly one GET of the blob, and
// that it asked for the bytes from offset on.
func requireRange(t testing.TB, p *proxy, dgst digest.Digest, offset int64) {
	t.Helper()
	gets := p.gets(dgst)
	want := fmt.Sprintf("bytes=%d-", offset)
	if len(gets) == 0 || gets[len(gets)-1].Range != want {
		t.Fatalf("GETs of the blob %v, want the last with Range %q", gets, want)
	}
}

// TestPullRetriesDroppedConnection has a proxy cut the connection in the
// middle of a layer: the same pull resumes from the offset it reached.
func TestPullRetriesDroppedConnection(t *testing.T) {
	p, r, im, bigDesc := proxiedImage(t, 10<<20, "berth/big:1")
	p.cutAfter[bigDesc.Digest] = 5 << 20
	store := newStore(t)
	if _, err := distribution.Pull(context.Background(), r, store, p.Addr+"/berth/big:1"); err != nil {
		t.Fatal(err)
	}
	requireBlobs(t, store, im, im.reachable(t, im.root)...)
	gets := p.gets(bigDesc.Digest)
	if len(gets) != 2 || gets[0].Range != "" || !strings.HasPrefix(gets[1].Range, "bytes=") || gets[1].Range == "bytes=0-" {
		t.Fatalf("GETs of the layer %v, want a whole one then a Range from where it was cut", gets)
	}
}

// TestPullRefusesCorruptBlob has a proxy flip a byte of a layer: the
// pull fails with a digest mismatch, and neither the layer nor its
// manifest is committed, nor an ingest left.
func TestPullRefusesCorruptBlob(t *testing.T) {
	p, r, im, bad := proxiedImage(t, 1<<20, "berth/corrupt:1")
	p.corrupt[bad.Digest] = true
	store := newStore(t)
	_, err := distribution.Pull(context.Background(), r, store, p.Addr+"/berth/corrupt:1")
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), bad.Digest.String()) {
		t.Fatalf("pull of a corrupted layer: %v, want failed precondition naming %s", err, bad.Digest)
	}
	requireAbsent(t, store, im.root, bad)
	sts, err := store.ListStatuses(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.Ref == "pull-"+bad.Digest.String() {
			t.Fatalf("ingest of the corrupted blob left: %+v", st)
		}
	}
}

// proxiedImage pushes an image with a random layer of size bytes to a
// new registry as name, and returns a proxy in front of the registry,
// the resolver, the image and the layer.
func proxiedImage(t testing.TB, size int, name string) (*proxy, *distribution.Resolver, *testImage, ocispec.Descriptor) {
	t.Helper()
	reg := startRegistry(t)
	r := resolver(t, distribution.ResolverOptions{})
	im := newImage(t, randomLayer(t, size))
	push(t, r, im, reg.Addr+"/"+name)
	return newProxy(t, reg.Addr), r, im, im.reachable(t, im.root)[3]
}

func mustPlatform(t testing.TB, s string) ocispec.Platform {
	t.Helper()
	p, err := distribution.ParsePlatform(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func contains(l []string, s string) bool {
	for _, e := range l {
		if e == s {
			return true
		}
	}
	return false
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

// TestPullSecondPlatformKeepsFirst: pulling one platform of an index, then
// another into the same store, leaves the index labelled with both
// manifests, so GC keeps the first platform too.
func TestPullSecondPlatformKeepsFirst(t *testing.T) {
	reg := startRegistry(t)
	r := resolver(t, distribution.ResolverOptions{})
	im := newIndex(t)
	ref := reg.Addr + "/berth/busybox:two"
	push(t, r, im, ref)
	store := newStore(t)
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		if _, err := distribution.Pull(context.Background(), r, store, ref, distribution.WithPlatforms(mustPlatform(t, p))); err != nil {
			t.Fatal(err)
		}
	}
	info, err := store.Info(context.Background(), im.root.Digest)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for k, v := range info.Labels {
		if strings.HasPrefix(k, gc.LabelRefContent+".m.") {
			got = append(got, v)
		}
	}
	want := []string{im.manifests["linux/amd64"].Digest.String(), im.manifests["linux/arm64"].Digest.String()}
	if !sameSet(got, want) {
		t.Fatalf("index labels %v, want both manifests %v", info.Labels, want)
	}
}

// TestPullRefusesConfigNotJSON pulls images whose config is not an image
// config: each pull is InvalidArgument naming the config, and the
// manifest is not committed. An artifact's config of another media type
// is not read.
func TestPullRefusesConfigNotJSON(t *testing.T) {
	reg := startRegistry(t)
	r := resolver(t, distribution.ResolverOptions{})
	build := func(mediaType string, cfg []byte) *testImage {
		im := &testImage{blobs: map[digest.Digest][]byte{}}
		m := ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    im.add(mediaType, cfg),
			Layers:    []ocispec.Descriptor{im.add(ocispec.MediaTypeImageLayer, randomLayer(t, 1024))},
		}
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		im.root = im.add(ocispec.MediaTypeImageManifest, data)
		return im
	}
	for i, tc := range []struct {
		name      string
		mediaType string
		config    string
		ok        bool
	}{
		{name: "text", mediaType: ocispec.MediaTypeImageConfig, config: "not json"},
		{name: "truncated", mediaType: ocispec.MediaTypeImageConfig, config: `{"architecture":"amd64",`},
		{name: "null", mediaType: ocispec.MediaTypeImageConfig, config: "null"},
		{name: "list", mediaType: ocispec.MediaTypeImageConfig, config: "[]"},
		{name: "wrong types", mediaType: images.MediaTypeDockerConfig, config: `{"architecture":5,"rootfs":{"diff_ids":"x"}}`},
		{name: "artifact", mediaType: "application/vnd.example.config", config: "not json", ok: true},
		{name: "empty object", mediaType: ocispec.MediaTypeImageConfig, config: " {}", ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im := build(tc.mediaType, []byte(tc.config))
			ref := fmt.Sprintf("%s/berth/badconfig:%d", reg.Addr, i)
			push(t, r, im, ref)
			store := newStore(t)
			_, err := distribution.Pull(context.Background(), r, store, ref)
			if tc.ok {
				if err != nil {
					t.Fatalf("pull: %v", err)
				}
				return
			}
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "config "+digest.FromString(tc.config).String()) {
				t.Fatalf("pull: %v, want InvalidArgument naming the config", err)
			}
			requireAbsent(t, store, im.root)
		})
	}
}
