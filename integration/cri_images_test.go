package integration

import (
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/internal/testimage"
)

func TestCRIVersionStatus(t *testing.T) {
	e := newCRIEnv(t)
	ctx := e.ctx(t)
	v, err := e.rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "berth" || v.RuntimeApiVersion != "v1" || v.RuntimeVersion == "" {
		t.Errorf("Version: %v", v)
	}
	st, err := e.rt.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	conds := map[string]*runtimeapi.RuntimeCondition{}
	for _, c := range st.GetStatus().GetConditions() {
		conds[c.Type] = c
	}
	if c := conds[runtimeapi.RuntimeReady]; c == nil || !c.Status {
		t.Errorf("RuntimeReady: %v", c)
	}
	if conds[runtimeapi.NetworkReady] == nil {
		t.Errorf("no NetworkReady condition: %v", st)
	}
	rc, err := e.rt.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rc.GetLinux().GetCgroupDriver() != runtimeapi.CgroupDriver_CGROUPFS {
		t.Errorf("cgroup driver %v", rc.GetLinux().GetCgroupDriver())
	}
}

func TestCRIImages(t *testing.T) {
	e := newCRIEnv(t)
	ctx := e.ctx(t)
	repo := strings.TrimSuffix(e.busybox, ":latest")

	// Users: a numeric one is reported as uid, a name as username.
	entries, err := testimage.BusyboxEntries("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	for ref, user := range map[string]string{e.reg.Addr + "/uid:1": "1002:1002", e.reg.Addr + "/name:1": "www-data"} {
		img, err := testimage.Build(ocispec.ImageConfig{User: user, Cmd: []string{"sh"}}, entries)
		if err != nil {
			t.Fatal(err)
		}
		pushTestimage(t, ref, img)
	}

	pull := func(ref string) string {
		t.Helper()
		r, err := e.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		if err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
		if !strings.HasPrefix(r.ImageRef, "sha256:") {
			t.Fatalf("pull %s: image ref %q is no image id", ref, r.ImageRef)
		}
		return r.ImageRef
	}
	imageStatus := func(ref string) *runtimeapi.Image {
		t.Helper()
		r, err := e.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		if err != nil {
			t.Fatalf("status %s: %v", ref, err)
		}
		return r.Image
	}

	id := pull(repo) // name only: :latest
	img := imageStatus(e.busybox)
	if img == nil || img.Id != id {
		t.Fatalf("status of %s: %v, want id %s", e.busybox, img, id)
	}
	if !slices.Contains(img.RepoTags, e.busybox) || len(img.RepoDigests) != 1 || !strings.HasPrefix(img.RepoDigests[0], repo+"@sha256:") {
		t.Errorf("tags %v, digests %v", img.RepoTags, img.RepoDigests)
	}
	if img.Size == 0 || img.Uid != nil || img.Username != "" || img.Pinned {
		t.Errorf("size %d, uid %v, username %q, pinned %v", img.Size, img.Uid, img.Username, img.Pinned)
	}
	byDigest := img.RepoDigests[0]
	if got := pull(byDigest); got != id {
		t.Errorf("pull by digest: %s, want %s", got, id)
	}
	if got := pull(e.busybox); got != id {
		t.Errorf("pull by tag again: %s, want %s", got, id)
	}
	// Every form names the same image.
	for _, ref := range []string{repo, e.busybox, byDigest, id, strings.TrimPrefix(id, "sha256:")} {
		if got := imageStatus(ref); got == nil || got.Id != id {
			t.Errorf("status %q: %v, want %s", ref, got, id)
		}
	}
	if got := imageStatus(byDigest); !slices.Contains(got.RepoDigests, byDigest) || !slices.Contains(got.RepoTags, e.busybox) {
		t.Errorf("after pulls by tag and digest: tags %v digests %v", got.RepoTags, got.RepoDigests)
	}

	if got := imageStatus(e.reg.Addr + "/uid:1"); got != nil {
		t.Errorf("an image not pulled has status %v", got)
	}
	pull(e.reg.Addr + "/uid:1")
	pull(e.reg.Addr + "/name:1")
	if u := imageStatus(e.reg.Addr + "/uid:1"); u.GetUid().GetValue() != 1002 || u.Username != "" {
		t.Errorf("uid image: uid %v username %q", u.Uid, u.Username)
	}
	if u := imageStatus(e.reg.Addr + "/name:1"); u.Uid != nil || u.Username != "www-data" {
		t.Errorf("name image: uid %v username %q", u.Uid, u.Username)
	}

	list, err := e.images.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, i := range list.Images {
		ids = append(ids, i.Id)
	}
	if len(ids) != 3 || !slices.Contains(ids, id) {
		t.Errorf("list: %v (want busybox %s and the two user images, each once)", ids, id)
	}
	filtered, err := e.images.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: repo}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(filtered.Images) != 1 || filtered.Images[0].Id != id {
		t.Errorf("list filtered by %s: %v", repo, filtered.Images)
	}

	fs, err := e.images.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs.ImageFilesystems) != 1 || fs.ImageFilesystems[0].GetUsedBytes().GetValue() == 0 || fs.ImageFilesystems[0].GetFsId().GetMountpoint() == "" {
		t.Errorf("ImageFsInfo: %v", fs)
	}

	// Removing by id removes every name; removing again is no error.
	for _, ref := range []string{id, id, e.reg.Addr + "/uid:1"} {
		if _, err := e.images.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
			t.Errorf("remove %s: %v", ref, err)
		}
	}
	for _, ref := range []string{e.busybox, byDigest, id, e.reg.Addr + "/uid:1"} {
		if got := imageStatus(ref); got != nil {
			t.Errorf("after remove, %s: %v", ref, got)
		}
	}
	if got := imageStatus(e.reg.Addr + "/name:1"); got == nil {
		t.Errorf("removing other images removed %s", e.reg.Addr+"/name:1")
	}

	for _, bad := range []string{"", "Busybox", "a b", "busybox@sha256:12"} {
		_, err := e.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: bad}})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("pull %q: %v, want InvalidArgument", bad, err)
		}
	}
	_, err = e.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: e.reg.Addr + "/missing:1"}})
	if status.Code(err) != codes.NotFound {
		t.Errorf("pull of a missing image: %v, want NotFound", err)
	}
}
