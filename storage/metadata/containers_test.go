package metadata

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/berthrt/berth/containers"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/namespaces"
)

// testContainer returns a valid container with every field set.
func testContainer(t testing.TB, id string) containers.Container {
	t.Helper()
	return containers.Container{
		ID:          id,
		Labels:      map[string]string{"role": "web"},
		Image:       "docker.io/library/redis:7",
		Runtime:     containers.RuntimeInfo{Name: "runc", Options: mustAny(t, "systemd")},
		Spec:        testSpec(t),
		Snapshotter: "overlayfs",
		SnapshotKey: id + "-rootfs",
		Extensions:  map[string]*anypb.Any{"io.berth.test": mustAny(t, "ext")},
	}
}

func mustAny(t testing.TB, s string) *anypb.Any {
	t.Helper()
	a, err := anypb.New(wrapperspb.String(s))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// requireSameContainer compares every field, the Anys by value.
func requireSameContainer(t *testing.T, got, want containers.Container) {
	t.Helper()
	if !proto.Equal(got.Runtime.Options, want.Runtime.Options) {
		t.Errorf("Runtime.Options = %v, want %v", got.Runtime.Options, want.Runtime.Options)
	}
	if !maps.EqualFunc(got.Extensions, want.Extensions, func(a, b *anypb.Any) bool { return proto.Equal(a, b) }) {
		t.Errorf("Extensions = %v, want %v", got.Extensions, want.Extensions)
	}
	if !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("times = %v, %v, want %v, %v", got.CreatedAt, got.UpdatedAt, want.CreatedAt, want.UpdatedAt)
	}
	got.Runtime.Options, want.Runtime.Options = nil, nil
	got.Extensions, want.Extensions = nil, nil
	got.CreatedAt, want.CreatedAt = time.Time{}, time.Time{}
	got.UpdatedAt, want.UpdatedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("container = %+v\nwant %+v", got, want)
	}
}

func TestContainerCRUD(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := nsCtx("ci")
	cs := db.Containers()

	in := testContainer(t, "web")
	before := time.Now()
	created, err := cs.Create(ctx, in)
	requireNoErr(t, err)
	if created.CreatedAt.Before(before.Add(-time.Second)) || created.CreatedAt.After(time.Now()) || created.UpdatedAt != created.CreatedAt {
		t.Errorf("CreatedAt %v, UpdatedAt %v: not set to now", created.CreatedAt, created.UpdatedAt)
	}
	if created.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt in %v, want UTC", created.CreatedAt.Location())
	}
	want := in
	want.CreatedAt, want.UpdatedAt = created.CreatedAt, created.UpdatedAt
	requireSameContainer(t, created, want)

	got, err := cs.Get(ctx, "web")
	requireNoErr(t, err)
	requireSameContainer(t, got, want)

	_, err = cs.Create(ctx, in)
	requireClass(t, err, errdefs.ErrAlreadyExists)
	errorContains(t, err, `container "web" in namespace "ci"`)

	list, err := cs.List(ctx)
	requireNoErr(t, err)
	if len(list) != 1 {
		t.Fatalf("List = %d containers, want 1", len(list))
	}
	requireSameContainer(t, list[0], want)

	// The namespace was created implicitly.
	nss, err := db.Namespaces().List(ctx)
	requireNoErr(t, err)
	if !slices.Equal(nss, []string{"ci"}) {
		t.Errorf("namespaces = %q, want [ci]", nss)
	}

	requireNoErr(t, cs.Delete(ctx, "web"))
	_, err = cs.Get(ctx, "web")
	requireClass(t, err, errdefs.ErrNotFound)
	if want := `container "web" in namespace "ci": not found`; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	requireClass(t, cs.Delete(ctx, "web"), errdefs.ErrNotFound)
	_, err = cs.Update(ctx, in)
	requireClass(t, err, errdefs.ErrNotFound)
}

func TestContainerMinimal(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := nsCtx("ci")
	in := containers.Container{ID: "min", Runtime: containers.RuntimeInfo{Name: "/usr/local/bin/runc"}, Spec: []byte(`{"ociVersion":"1.2.0"}`)}
	created, err := db.Containers().Create(ctx, in)
	requireNoErr(t, err)
	got, err := db.Containers().Get(ctx, "min")
	requireNoErr(t, err)
	requireSameContainer(t, got, created)
	if got.Labels != nil || got.Extensions != nil || got.Runtime.Options != nil {
		t.Errorf("empty fields read back as %+v", got)
	}
}

func TestContainerNamespaceIsolation(t *testing.T) {
	db, _ := newTestDB(t)
	a, b := nsCtx("a"), nsCtx("b")
	cs := db.Containers()
	_, err := cs.Create(a, testContainer(t, "web"))
	requireNoErr(t, err)

	_, err = cs.Get(b, "web")
	requireClass(t, err, errdefs.ErrNotFound)
	errorContains(t, err, `namespace "b"`)
	list, err := cs.List(b)
	requireNoErr(t, err)
	if len(list) != 0 {
		t.Errorf("List in b = %d containers, want 0", len(list))
	}
	_, err = cs.Update(b, testContainer(t, "web"))
	requireClass(t, err, errdefs.ErrNotFound)
	requireClass(t, cs.Delete(b, "web"), errdefs.ErrNotFound)

	// The same id in b is another container.
	other := testContainer(t, "web")
	other.Image = "busybox"
	_, err = cs.Create(b, other)
	requireNoErr(t, err)
	got, err := cs.Get(a, "web")
	requireNoErr(t, err)
	if got.Image != "docker.io/library/redis:7" {
		t.Errorf("a's container changed by b's: image %q", got.Image)
	}
	requireNoErr(t, cs.Delete(b, "web"))
	_, err = cs.Get(a, "web")
	requireNoErr(t, err)
}

func TestContainerNeedsNamespace(t *testing.T) {
	db, _ := newTestDB(t)
	cs := db.Containers()
	_, err := cs.Create(context.Background(), testContainer(t, "web"))
	requireClass(t, err, errdefs.ErrFailedPrecondition)
	for name, ns := range badIdentifiers {
		if ns == "" {
			continue // no namespace at all, above
		}
		t.Run(name, func(t *testing.T) {
			ctx := namespaces.WithNamespace(context.Background(), ns)
			refusedUnchanged(t, db, errdefs.ErrInvalidArgument, func() error {
				_, err := cs.Create(ctx, testContainer(t, "web"))
				return err
			})
			_, err := cs.List(ctx)
			requireClass(t, err, errdefs.ErrInvalidArgument)
		})
	}
}

func TestContainerBadIdentifiers(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := nsCtx("ci")
	cs := db.Containers()
	_, err := cs.Create(ctx, testContainer(t, "web"))
	requireNoErr(t, err)
	for name, id := range badIdentifiers {
		t.Run(name, func(t *testing.T) {
			for op, fn := range map[string]func() error{
				"Create": func() error { _, err := cs.Create(ctx, testContainer(t, id)); return err },
				"Update": func() error { _, err := cs.Update(ctx, testContainer(t, id)); return err },
				"Get":    func() error { _, err := cs.Get(ctx, id); return err },
				"Delete": func() error { return cs.Delete(ctx, id) },
			} {
				t.Run(op, func(t *testing.T) {
					refusedUnchanged(t, db, errdefs.ErrInvalidArgument, fn)
				})
			}
		})
	}
}

func TestContainerValidation(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := nsCtx("ci")
	tooManyLabels := map[string]string{}
	for i := range MaxLabels + 1 {
		tooManyLabels[fmt.Sprintf("k%d", i)] = "v"
	}
	tooManyExts := map[string]*anypb.Any{}
	for i := range MaxExtensions + 1 {
		tooManyExts[fmt.Sprintf("e%d", i)] = mustAny(t, "x")
	}
	for _, tc := range []struct {
		name   string
		change func(*containers.Container)
		says   string
	}{
		{"no runtime", func(c *containers.Container) { c.Runtime.Name = "" }, "runtime.name is required"},
		{"relative runtime path", func(c *containers.Container) { c.Runtime.Name = "../../tmp/runc" }, "runtime.name"},
		{"unclean runtime path", func(c *containers.Container) { c.Runtime.Name = "/usr/bin/../../tmp/runc" }, "runtime.name"},
		{"runtime with a newline", func(c *containers.Container) { c.Runtime.Name = "runc\n" }, "runtime.name"},
		{"no spec", func(c *containers.Container) { c.Spec = nil }, "spec is required"},
		{"spec not JSON", func(c *containers.Container) { c.Spec = []byte("{not json") }, "spec"},
		{"spec an array", func(c *containers.Container) { c.Spec = []byte(`[1]`) }, "JSON object"},
		{"spec null", func(c *containers.Container) { c.Spec = []byte(`null`) }, "JSON object"},
		{"spec wrong types", func(c *containers.Container) { c.Spec = []byte(`{"process":3}`) }, "OCI runtime spec"},
		{"spec trailing data", func(c *containers.Container) { c.Spec = []byte(`{} {}`) }, "OCI runtime spec"},
		{"spec too large", func(c *containers.Container) {
			c.Spec = []byte(`{"hostname":"` + strings.Repeat("h", MaxSpecSize) + `"}`)
		}, "more than"},
		{"snapshot key without snapshotter", func(c *containers.Container) { c.Snapshotter = "" }, "snapshotter is required"},
		{"bad snapshot key", func(c *containers.Container) { c.SnapshotKey = "../rootfs" }, "snapshotkey"},
		{"bad snapshotter", func(c *containers.Container) { c.Snapshotter = "over/lay" }, "snapshotter"},
		{"empty label key", func(c *containers.Container) { c.Labels = map[string]string{"": "v"} }, "label key must not be empty"},
		{"label too large", func(c *containers.Container) { c.Labels = map[string]string{"k": strings.Repeat("v", MaxLabelSize)} }, "more than 4096"},
		{"too many labels", func(c *containers.Container) { c.Labels = tooManyLabels }, "labels, more than"},
		{"image too long", func(c *containers.Container) { c.Image = strings.Repeat("i", MaxReferenceSize+1) }, "image"},
		{"image not UTF-8", func(c *containers.Container) { c.Image = "\xff" }, "image"},
		{"empty extension key", func(c *containers.Container) { c.Extensions = map[string]*anypb.Any{"": mustAny(t, "x")} }, "extension key"},
		{"extension without type", func(c *containers.Container) { c.Extensions = map[string]*anypb.Any{"e": {}} }, "type URL"},
		{"too many extensions", func(c *containers.Container) { c.Extensions = tooManyExts }, "extensions, more than"},
		{"extensions too large", func(c *containers.Container) {
			c.Extensions = map[string]*anypb.Any{"e": mustAny(t, strings.Repeat("x", MaxExtensionsSize))}
		}, "more than"},
		{"runtime options too large", func(c *containers.Container) {
			c.Runtime.Options = mustAny(t, strings.Repeat("x", MaxRuntimeOptionsSize))
		}, "runtime.options"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testContainer(t, "web")
			tc.change(&c)
			err := refusedUnchanged(t, db, errdefs.ErrInvalidArgument, func() error {
				_, err := db.Containers().Create(ctx, c)
				return err
			})
			errorContains(t, err, `container "web"`, tc.says)
		})
	}
}

func TestContainerUpdate(t *testing.T) {
	ctx := nsCtx("ci")
	newSpec := testSpec(t, "redis-server")
	for _, tc := range []struct {
		name   string
		change func(*containers.Container)
		paths  []string
		want   func(*containers.Container) // applied to the original to get the result
	}{
		{
			name: "all mutable fields",
			change: func(c *containers.Container) {
				c.Image = "busybox"
				c.Spec = newSpec
				c.Labels = map[string]string{"x": "y"}
				c.Extensions = nil
			},
			want: func(c *containers.Container) {
				c.Image = "busybox"
				c.Spec = newSpec
				c.Labels = map[string]string{"x": "y"}
				c.Extensions = nil
			},
		},
		{
			name:   "only the image",
			change: func(c *containers.Container) { c.Image = "busybox"; c.Spec = newSpec; c.Labels = nil },
			paths:  []string{"image"},
			want:   func(c *containers.Container) { c.Image = "busybox" },
		},
		{
			name:   "spec",
			change: func(c *containers.Container) { c.Spec = newSpec },
			paths:  []string{"spec"},
			want:   func(c *containers.Container) { c.Spec = newSpec },
		},
		{
			name:   "one label set, one removed, others kept",
			change: func(c *containers.Container) { c.Labels = map[string]string{"tier": "front", "other": "ignored"} },
			paths:  []string{"labels.tier", "labels.role"},
			want:   func(c *containers.Container) { c.Labels = map[string]string{"tier": "front"} },
		},
		{
			name:   "all labels replaced",
			change: func(c *containers.Container) { c.Labels = map[string]string{"a": "b", "gone": ""} },
			paths:  []string{"labels"},
			want:   func(c *containers.Container) { c.Labels = map[string]string{"a": "b"} },
		},
		{
			name: "one extension set, one removed",
			change: func(c *containers.Container) {
				c.Extensions = map[string]*anypb.Any{"new": mustAny(t, "n")}
			},
			paths: []string{"extensions.new", "extensions.io.berth.test"},
			want:  func(c *containers.Container) { c.Extensions = map[string]*anypb.Any{"new": mustAny(t, "n")} },
		},
		{
			name:   "extensions replaced",
			change: func(c *containers.Container) { c.Extensions = map[string]*anypb.Any{"b": mustAny(t, "b")} },
			paths:  []string{"extensions"},
			want:   func(c *containers.Container) { c.Extensions = map[string]*anypb.Any{"b": mustAny(t, "b")} },
		},
		{
			name:   "immutable fields unchanged are fine without paths",
			change: func(c *containers.Container) { c.CreatedAt = time.Unix(0, 0) },
			want:   func(*containers.Container) {},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := newTestDB(t)
			cs := db.Containers()
			orig, err := cs.Create(ctx, testContainer(t, "web"))
			requireNoErr(t, err)
			time.Sleep(time.Millisecond)

			in := orig
			in.Labels = maps.Clone(orig.Labels)
			tc.change(&in)
			updated, err := cs.Update(ctx, in, tc.paths...)
			requireNoErr(t, err)

			want := orig
			want.Labels = maps.Clone(orig.Labels)
			want.Extensions = maps.Clone(orig.Extensions)
			tc.want(&want)
			if !updated.UpdatedAt.After(orig.UpdatedAt) {
				t.Errorf("UpdatedAt %v not after %v", updated.UpdatedAt, orig.UpdatedAt)
			}
			want.UpdatedAt = updated.UpdatedAt
			requireSameContainer(t, updated, want)
			got, err := cs.Get(ctx, "web")
			requireNoErr(t, err)
			requireSameContainer(t, got, want)
		})
	}
}

func TestContainerUpdateRefused(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := nsCtx("ci")
	cs := db.Containers()
	orig, err := cs.Create(ctx, testContainer(t, "web"))
	requireNoErr(t, err)

	for _, tc := range []struct {
		name   string
		change func(*containers.Container)
		paths  []string
		says   string
	}{
		{"unknown path", nil, []string{"colour"}, `unknown field path "colour"`},
		{"runtime path", nil, []string{"runtime"}, `field "runtime" is immutable`},
		{"snapshotter path", nil, []string{"snapshotter"}, `field "snapshotter" is immutable`},
		{"snapshot key path", nil, []string{"snapshotkey"}, `field "snapshotkey" is immutable`},
		{"id path", nil, []string{"id"}, `field "id" is immutable`},
		{"a good path then a bad one", func(c *containers.Container) { c.Image = "x" }, []string{"image", "bogus"}, `"bogus"`},
		{"empty label key", nil, []string{"labels."}, "names no label"},
		{"empty extension key", nil, []string{"extensions."}, "names no extension"},
		{"runtime changed without paths", func(c *containers.Container) { c.Runtime.Name = "crun" }, nil, `field "runtime.name" is immutable`},
		{"runtime options changed without paths", func(c *containers.Container) { c.Runtime.Options = nil }, nil, `field "runtime.options" is immutable`},
		{"snapshotter changed without paths", func(c *containers.Container) { c.Snapshotter = "native" }, nil, `field "snapshotter" is immutable`},
		{"snapshot key changed without paths", func(c *containers.Container) { c.SnapshotKey = "other" }, nil, `field "snapshotkey" is immutable`},
		{"invalid result", func(c *containers.Container) { c.Spec = nil }, []string{"spec"}, "spec is required"},
		{"invalid label", func(c *containers.Container) { c.Labels = map[string]string{"k": strings.Repeat("v", MaxLabelSize)} }, []string{"labels.k"}, "label"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := orig
			in.Labels = maps.Clone(orig.Labels)
			if tc.change != nil {
				tc.change(&in)
			}
			err := refusedUnchanged(t, db, errdefs.ErrInvalidArgument, func() error {
				_, err := cs.Update(ctx, in, tc.paths...)
				return err
			})
			errorContains(t, err, `container "web"`, tc.says)
		})
	}
}

func TestContainerList(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := nsCtx("ci")
	cs := db.Containers()
	for _, c := range []containers.Container{
		{ID: "web-1", Labels: map[string]string{"role": "web", "io.berth/tier": "front"}, Image: "redis:7", Snapshotter: "overlayfs", SnapshotKey: "web-1"},
		{ID: "web-2", Labels: map[string]string{"role": "web"}, Image: "nginx:1", Snapshotter: "native", SnapshotKey: "web-2"},
		{ID: "db", Labels: map[string]string{"role": "db"}, Image: "postgres:16"},
		{ID: "bare"},
	} {
		c.Runtime.Name = "runc"
		if c.ID == "db" {
			c.Runtime.Name = "/opt/bin/crun"
		}
		c.Spec = testSpec(t)
		_, err := cs.Create(ctx, c)
		requireNoErr(t, err)
	}
	// Another namespace's containers never show.
	_, err := cs.Create(nsCtx("other"), testContainer(t, "web-3"))
	requireNoErr(t, err)

	for _, tc := range []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"bare", "db", "web-1", "web-2"}},
		{[]string{""}, []string{"bare", "db", "web-1", "web-2"}},
		{[]string{"id==db"}, []string{"db"}},
		{[]string{"labels.role==web"}, []string{"web-1", "web-2"}},
		{[]string{`labels."io.berth/tier"==front`}, []string{"web-1"}},
		{[]string{"labels.role"}, []string{"db", "web-1", "web-2"}},
		{[]string{"labels.role!=web"}, []string{"bare", "db"}},
		{[]string{"image~=^redis"}, []string{"web-1"}},
		{[]string{`image==""`}, []string{"bare"}},
		{[]string{"runtime.name==/opt/bin/crun"}, []string{"db"}},
		{[]string{"snapshotter==native"}, []string{"web-2"}},
		{[]string{"snapshotkey==web-1"}, []string{"web-1"}},
		{[]string{"labels.role==web,snapshotter==overlayfs"}, []string{"web-1"}},
		{[]string{"id==db", "id==bare"}, []string{"bare", "db"}},
		{[]string{"id==nothing"}, nil},
		{[]string{"runtime==runc"}, nil},
	} {
		t.Run(strings.Join(tc.filters, " OR "), func(t *testing.T) {
			list, err := cs.List(ctx, tc.filters...)
			requireNoErr(t, err)
			var ids []string
			for _, c := range list {
				ids = append(ids, c.ID)
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("List(%q) = %q, want %q", tc.filters, ids, tc.want)
			}
		})
	}

	_, err = cs.List(ctx, "id==")
	requireClass(t, err, errdefs.ErrInvalidArgument)
	_, err = cs.List(ctx, "labels.role~=(")
	requireClass(t, err, errdefs.ErrInvalidArgument)
}

func TestReopenKeepsEverything(t *testing.T) {
	db, path := newTestDB(t)
	ctx := nsCtx("ci")
	requireNoErr(t, db.Namespaces().Create(ctx, "empty", map[string]string{"k": "v"}))
	created, err := db.Containers().Create(ctx, testContainer(t, "web"))
	requireNoErr(t, err)
	updated, err := db.Containers().Update(ctx, created, "labels.extra")
	requireNoErr(t, err)
	before := dump(t, db)
	requireNoErr(t, db.Close())

	again, err := Open(path)
	requireNoErr(t, err)
	*db = *again // the cleanup closes it

	if after := dump(t, db); after != before {
		t.Errorf("reopened database differs:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	got, err := db.Containers().Get(ctx, "web")
	requireNoErr(t, err)
	requireSameContainer(t, got, updated)
	labels, err := db.Namespaces().Labels(ctx, "empty")
	requireNoErr(t, err)
	if !maps.Equal(labels, map[string]string{"k": "v"}) {
		t.Errorf("namespace labels after reopen = %v", labels)
	}
}

// TestUnknownFieldsSurviveUpdate: a key written by a newer berthd into a
// container's bucket is kept when this one updates the container.
func TestUnknownFieldsSurviveUpdate(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := nsCtx("ci")
	c, err := db.Containers().Create(ctx, testContainer(t, "web"))
	requireNoErr(t, err)
	requireNoErr(t, db.Update(func(tx *bolt.Tx) error {
		return containerBucket(tx, "ci", "web").Put([]byte("sandbox"), []byte("pod-1"))
	}))
	c.Image = "busybox"
	_, err = db.Containers().Update(ctx, c)
	requireNoErr(t, err)
	requireNoErr(t, db.View(func(tx *bolt.Tx) error {
		if v := containerBucket(tx, "ci", "web").Get([]byte("sandbox")); string(v) != "pod-1" {
			t.Errorf("unknown key after update = %q, want pod-1", v)
		}
		return nil
	}))
}

func TestCorruptRecordIsInternal(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := nsCtx("ci")
	_, err := db.Containers().Create(ctx, testContainer(t, "web"))
	requireNoErr(t, err)
	requireNoErr(t, db.Update(func(tx *bolt.Tx) error {
		return containerBucket(tx, "ci", "web").Put(keyCreatedAt, []byte{0xff})
	}))
	_, err = db.Containers().Get(ctx, "web")
	requireClass(t, err, errdefs.ErrInternal)
	errorContains(t, err, `container "web"`, "createdat")
}

func TestCanceledContext(t *testing.T) {
	db, _ := newTestDB(t)
	ctx, cancel := context.WithCancel(nsCtx("ci"))
	cancel()
	_, err := db.Containers().Create(ctx, testContainer(t, "web"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Create with a canceled context = %v", err)
	}
}

func FuzzReadContainer(f *testing.F) {
	good := testContainer(f, "web")
	opts, _ := proto.Marshal(good.Runtime.Options)
	now, _ := time.Now().MarshalBinary()
	f.Add(now, opts, []byte("{}"))
	f.Add([]byte{}, []byte{0xff}, []byte(nil))
	db, err := Open(f.TempDir() + "/meta.db")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	f.Fuzz(func(t *testing.T, created, options, ext []byte) {
		_ = db.Update(func(tx *bolt.Tx) error {
			bkt, err := createKindBucket(tx, "ci", bucketContainers)
			requireNoErr(t, err)
			cb, err := bkt.CreateBucketIfNotExists([]byte("web"))
			requireNoErr(t, err)
			rb, err := cb.CreateBucketIfNotExists(bucketRuntime)
			requireNoErr(t, err)
			eb, err := cb.CreateBucketIfNotExists(bucketExtensions)
			requireNoErr(t, err)
			for _, kv := range []struct {
				b    *bolt.Bucket
				k, v []byte
			}{{cb, keyCreatedAt, created}, {rb, keyOptions, options}, {eb, []byte("e"), ext}} {
				requireNoErr(t, kv.b.Put(kv.k, kv.v))
			}
			return nil
		})
		_, err := db.Containers().Get(nsCtx("ci"), "web")
		if err != nil && !errdefs.IsInternal(err) {
			t.Fatalf("a bad record gave %v, want ErrInternal", err)
		}
	})
}

func TestConcurrentCreateOneWins(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := nsCtx("ci")
	const n = 8
	c := testContainer(t, "web")
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := db.Containers().Create(ctx, c)
			errs <- err
		}()
	}
	won := 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			won++
		case !errdefs.IsAlreadyExists(err):
			t.Errorf("Create = %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d concurrent Creates of one id succeeded, want 1", won)
	}
}
