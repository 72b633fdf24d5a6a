package distribution_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
)

// TestPushUploadsOnlyMissing pushes an image, then another that shares
// its layer, through a logging proxy: the shared layer is not uploaded
// again, manifests go after their blobs, the tag last.
func TestPushUploadsOnlyMissing(t *testing.T) {
	reg := startRegistry(t)
	p := newProxy(t, reg.Addr)
	r := resolver(t, distribution.ResolverOptions{})
	first := newImage(t)
	push(t, r, first, p.Addr+"/berth/a:1")
	n := len(p.log())

	second := newIndex(t) // shares the busybox layer with first
	var rec recorder
	if err := distribution.Push(context.Background(), r, second.store(t), p.Addr+"/berth/a:2", second.root, distribution.WithProgress(rec.add)); err != nil {
		t.Fatal(err)
	}
	shared := first.reachable(t, first.root)[2]
	if got := rec.last()["push-"+shared.Digest.String()]; got.Status != distribution.StatusExists {
		t.Fatalf("shared layer: %+v, want exists", got)
	}
	// Blobs upload concurrently, so only this order is promised: a
	// manifest's PUT starts after the uploads of all its blobs ended, and
	// the tag's PUT starts after everything else ended.
	uploaded := map[string]int{} // digest -> end of the PUT that completed its upload
	manifests := map[string]proxyRequest{}
	var tag *proxyRequest
	lastEnd, posts := 0, 0
	for _, req := range p.log()[n:] {
		switch {
		case req.Method == http.MethodPost && strings.HasSuffix(req.Path, "/blobs/uploads/"):
			posts++
		case req.Method == http.MethodPut && strings.Contains(req.Path, "/blobs/uploads/"):
			uploaded[req.Digest] = req.End
		case req.Method == http.MethodPut && strings.HasSuffix(req.Path, "/manifests/2"):
			tag = &req
			continue
		case req.Method == http.MethodPut && strings.Contains(req.Path, "/manifests/"):
			manifests[req.Path[strings.LastIndex(req.Path, "/")+1:]] = req
		}
		lastEnd = max(lastEnd, req.End)
	}
	// 2 configs and 2 own layers (the shared layer is not sent), 2 manifests.
	if posts != 4 || len(uploaded) != 4 || len(manifests) != 2 || tag == nil {
		t.Fatalf("%d uploads started, %d completed, %d manifests by digest, tag %v; want 4, 4, 2 and the tag", posts, len(uploaded), len(manifests), tag != nil)
	}
	if _, ok := uploaded[shared.Digest.String()]; ok {
		t.Fatalf("the shared layer %s was uploaded again", shared.Digest)
	}
	for platform, m := range second.manifests {
		put, ok := manifests[m.Digest.String()]
		if !ok {
			t.Fatalf("manifest of %s (%s) not put by digest", platform, m.Digest)
		}
		for _, b := range second.reachable(t, m)[1:] {
			if end, ok := uploaded[b.Digest.String()]; ok && end > put.Start {
				t.Fatalf("manifest of %s put before its blob %s was uploaded", platform, b.Digest)
			}
		}
	}
	if tag.Start < lastEnd {
		t.Fatalf("the tag was put before all blobs and manifests were")
	}
	store := newStore(t)
	if _, err := distribution.Pull(context.Background(), r, store, reg.Addr+"/berth/a:2", distribution.WithAllPlatforms()); err != nil {
		t.Fatal(err)
	}
	requireBlobs(t, store, second, second.reachable(t, second.root)...)
}

func TestPushIncomplete(t *testing.T) {
	reg := startRegistry(t)
	r := resolver(t, distribution.ResolverOptions{})
	im := newIndex(t)
	store := im.store(t)
	arm := im.manifests["linux/arm64"]
	if err := store.Delete(context.Background(), arm.Digest); err != nil {
		t.Fatal(err)
	}
	err := distribution.Push(context.Background(), r, store, reg.Addr+"/berth/partial:1", im.root)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), arm.Digest.String()) {
		t.Fatalf("push of an index without one manifest: %v, want not found naming it", err)
	}
	if _, _, err := r.Resolve(context.Background(), reg.Addr+"/berth/partial:1"); !errdefs.IsNotFound(err) {
		t.Fatalf("the tag of a failed push: %v, want not found", err)
	}
}

func TestPushRefusesOtherDigest(t *testing.T) {
	r := resolver(t, distribution.ResolverOptions{})
	im := newImage(t)
	err := distribution.Push(context.Background(), r, im.store(t), "127.0.0.1:1/x@"+someDigest, im.root)
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("push to another digest: %v, want invalid argument", err)
	}
}

// TestSchema1Refused serves a Docker schema 1 manifest from a fake
// registry: the pull is refused with a clear error.
func TestSchema1Refused(t *testing.T) {
	body := `{"schemaVersion":1,"name":"old","tag":"1","fsLayers":[],"history":[],"signatures":[]}`
	addr := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		w.Header().Set("Content-Type", "application/vnd.docker.distribution.manifest.v1+prettyjws")
		w.Header().Set("Docker-Content-Digest", someDigest)
		w.Header().Set("Content-Length", "86")
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte(body))
		}
	}))
	r := resolver(t, distribution.ResolverOptions{})
	store := newStore(t)
	_, err := distribution.Pull(context.Background(), r, store, addr+"/old:1")
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "schema 1") {
		t.Fatalf("pull of a schema 1 image: %v, want not implemented naming schema 1", err)
	}
	if err := store.Walk(context.Background(), func(i content.Info) error {
		t.Errorf("blob %s stored", i.Digest)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestManifestSizeBound refuses a manifest larger than MaxManifestSize
// before reading it.
func TestManifestSizeBound(t *testing.T) {
	addr := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
		w.Header().Set("Docker-Content-Digest", someDigest)
		w.Header().Set("Content-Length", "8388608")
		w.WriteHeader(http.StatusOK)
	}))
	_, err := distribution.Pull(context.Background(), resolver(t, distribution.ResolverOptions{}), newStore(t), addr+"/huge:1")
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("pull of a huge manifest: %v, want invalid argument", err)
	}
}
