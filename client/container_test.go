package client

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/oci"
)

func TestNewContainer(t *testing.T) {
	c, f := connect(t)
	ctx := namespaces.WithNamespace(context.Background(), "builds")
	ctr, err := c.NewContainer(ctx, "redis-1",
		WithNewSpec(oci.WithProcessArgs("redis-server", "--port", "7777")),
		WithRuntime("runc", wrapperspb.String("opts")),
		WithContainerLabels(map[string]string{"role": "cache"}),
		WithImageName("docker.io/library/redis:latest"),
		WithContainerExtension("io.example/ext", wrapperspb.Int64(42)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if ctr.ID() != "redis-1" {
		t.Errorf("ID = %q", ctr.ID())
	}
	info, err := ctr.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Image != "docker.io/library/redis:latest" || info.Runtime.Name != "runc" || info.CreatedAt.IsZero() {
		t.Errorf("info = %+v", info)
	}
	var opt wrapperspb.StringValue
	if err := info.Runtime.Options.UnmarshalTo(&opt); err != nil || opt.Value != "opts" {
		t.Errorf("runtime options = %v, %v", info.Runtime.Options, err)
	}
	var ext wrapperspb.Int64Value
	if err := info.Extensions["io.example/ext"].UnmarshalTo(&ext); err != nil || ext.Value != 42 {
		t.Errorf("extension = %v, %v", info.Extensions, err)
	}

	s, err := ctr.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Process.Args, []string{"redis-server", "--port", "7777"}) || s.Hostname != "redis-1" {
		t.Errorf("spec args %v hostname %q", s.Process.Args, s.Hostname)
	}
	// The spec was generated for the context's namespace.
	want, err := oci.GenerateSpec(ctx, "builds", "redis-1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.CgroupsPath != want.Linux.CgroupsPath {
		t.Errorf("cgroups path %q, want %q", s.Linux.CgroupsPath, want.Linux.CgroupsPath)
	}

	if got, _ := c.Containers(ctx); len(got) != 1 || got[0].ID() != "redis-1" {
		t.Errorf("Containers = %v", got)
	}
	loaded, err := c.LoadContainer(ctx, "redis-1")
	if err != nil || loaded.ID() != "redis-1" {
		t.Fatalf("LoadContainer = %v, %v", loaded, err)
	}
	_ = f
}

func TestContainerOptsInvalid(t *testing.T) {
	c, _ := connect(t)
	ctx := context.Background()
	for name, opt := range map[string]NewContainerOpts{
		"nil spec":            WithSpec(nil),
		"extension no name":   WithContainerExtension("", wrapperspb.Bool(true)),
		"extension nil":       WithContainerExtension("x", nil),
		"bad id for the spec": WithNewSpec(),
	} {
		id := "c1"
		if name == "bad id for the spec" {
			id = "../c1"
		}
		if _, err := c.NewContainer(ctx, id, opt); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
}

func TestWithSpecAppliesOpts(t *testing.T) {
	c, _ := connect(t)
	ctx := context.Background()
	base := &specs.Spec{Version: specs.Version}
	ctr, err := c.NewContainer(ctx, "c1", WithSpec(base, oci.WithHostname("h1")))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ctr.Spec(ctx)
	if err != nil || s.Hostname != "h1" {
		t.Errorf("spec = %+v, %v", s, err)
	}
}

func TestLabelsAndUpdate(t *testing.T) {
	c, f := connect(t)
	ctx := context.Background()
	ctr, err := c.NewContainer(ctx, "c1", WithContainerLabels(map[string]string{"a": "1", "b": "2"}))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ctr.SetLabels(ctx, map[string]string{"b": "", "c": "3"})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"a": "1", "c": "3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("labels after SetLabels = %v, want %v", got, want)
	}
	f.containers.mu.Lock()
	mask := f.containers.masks[len(f.containers.masks)-1]
	f.containers.mu.Unlock()
	if len(mask) != 2 {
		t.Errorf("SetLabels mask = %v, want one labels.<key> path per label", mask)
	}

	if err := ctr.Update(ctx, WithImageName("busybox")); err != nil {
		t.Fatal(err)
	}
	info, err := ctr.Info(ctx)
	if err != nil || info.Image != "busybox" || info.Labels["a"] != "1" {
		t.Errorf("after Update: %+v, %v", info, err)
	}
	labels, err := ctr.Labels(ctx)
	if err != nil || len(labels) != 2 {
		t.Errorf("Labels = %v, %v", labels, err)
	}

	var seen ContainerInfo
	if err := ctr.Delete(ctx, func(_ context.Context, _ *Client, i ContainerInfo) error { seen = i; return nil }); err != nil {
		t.Fatal(err)
	}
	if seen.ID != "c1" {
		t.Errorf("delete option saw %+v", seen)
	}
	if _, err := ctr.Info(ctx); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Info after Delete: %v", err)
	}
}

func TestToAny(t *testing.T) {
	a, err := anypb.New(wrapperspb.Bool(true))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := toAny(a); got != a || err != nil {
		t.Errorf("an Any is repacked: %v, %v", got, err)
	}
	if got, err := toAny(nil); got != nil || err != nil {
		t.Errorf("nil = %v, %v", got, err)
	}
}

// WithSnapshotCleanup deletes the container and its snapshot in one call
// (remove_snapshot), and removes the snapshot itself, after the record,
// only when a daemon that predates the field says that it did not.
func TestSnapshotCleanupOneCall(t *testing.T) {
	const (
		rpcContainerDelete = "/berth.services.containers.v1.Containers/Delete"
		rpcSnapshotRemove  = "/berth.services.snapshots.v1.Snapshots/Remove"
	)
	for _, tt := range []struct {
		name        string
		older       bool
		wantCalls   map[string]int
		wantRemoved []string
	}{
		{"daemon with remove_snapshot", false, map[string]int{rpcContainerGet: 1, rpcContainerDelete: 1}, nil},
		{"older daemon", true, map[string]int{rpcContainerGet: 1, rpcContainerDelete: 1, rpcSnapshotRemove: 1}, []string{"overlayfs/web-rootfs"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, f := connect(t)
			f.containers.older = tt.older
			ctx := namespaces.WithNamespace(context.Background(), "ci")
			withRootfs := func(_ context.Context, _ *Client, info *ContainerInfo) error {
				info.Snapshotter, info.SnapshotKey = "overlayfs", "web-rootfs"
				return nil
			}
			ctr, err := c.NewContainer(ctx, "web", withRootfs, WithNewSpec(oci.WithProcessArgs("true")))
			if err != nil {
				t.Fatal(err)
			}
			f.rpcs.counts()
			if err := ctr.Delete(ctx, WithSnapshotCleanup); err != nil {
				t.Fatalf("Delete with WithSnapshotCleanup: %v", err)
			}
			if got := f.rpcs.counts(); !maps.Equal(got, tt.wantCalls) {
				t.Errorf("Delete made the calls %v, want %v", got, tt.wantCalls)
			}
			f.snapshots.mu.Lock()
			removed := f.snapshots.removed
			f.snapshots.mu.Unlock()
			if !slices.Equal(removed, tt.wantRemoved) {
				t.Errorf("Snapshots.Remove of %q, want %q", removed, tt.wantRemoved)
			}
			if _, err := c.LoadContainer(ctx, "web"); !errdefs.IsNotFound(err) {
				t.Errorf("container after its delete: %v, want not found", err)
			}
		})
	}
}
