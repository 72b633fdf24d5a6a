package containers

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/berthrt/berth/containers"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/events/topics"
	nsctx "github.com/berthrt/berth/namespaces"
	api "github.com/berthrt/berth/proto/containers/v1"
	"github.com/berthrt/berth/services"
	snapshotsvc "github.com/berthrt/berth/services/snapshots"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/metadata"
	"github.com/berthrt/berth/storage/snapshots/native"
)

// newSnapshotEnv returns a real metadata DB, the namespaced native
// snapshotter on it, and the service over both with the snapshotters as
// the snapshots API serves them: native, and btrfs that did not open.
func newSnapshotEnv(t *testing.T, tasks withTask) (*metadata.DB, snapshots.Snapshotter, *service, *published) {
	t.Helper()
	dir := t.TempDir()
	db, err := metadata.Open(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	backend, err := native.New(filepath.Join(dir, "native"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
	sn := db.Snapshotter(native.Name, backend)
	snaps := snapshotsvc.Config{
		Snapshotters: map[string]snapshots.Snapshotter{native.Name: sn},
		Failed:       map[string]error{"btrfs": errors.New("not a btrfs filesystem")},
		Default:      native.Name,
	}
	pub := &published{}
	return db, sn, &service{Config{Store: db.Containers(), Tasks: tasks, DefaultRuntime: "runc", Publisher: pub, Locks: &services.IDLocks{}, Snapshotter: snaps.Snapshotter}}, pub
}

// withTask says that the containers it names have a task.
type withTask map[string]bool

func (w withTask) HasTask(_ context.Context, _, id string) bool { return w[id] }

// published records the topics published.
type published struct {
	mu     sync.Mutex
	topics []string
}

func (p *published) Publish(_ context.Context, topic string, _ proto.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.topics = append(p.topics, topic)
	return nil
}

// Delete with remove_snapshot over a real metadata DB and native
// snapshotter: refused for a container with a task and for a snapshotter
// that cannot be used (FailedPrecondition for an unknown one, never
// NotFound, which would say the container is absent), keeping both
// records; otherwise both go and the reply says so.
func TestDeleteRemoveSnapshot(t *testing.T) {
	db, sn, s, pub := newSnapshotEnv(t, withTask{"running": true})
	ctx := nsctx.WithNamespace(context.Background(), "ci")
	create := func(id, snapshotter string) {
		t.Helper()
		if _, err := sn.Prepare(ctx, id, ""); err != nil {
			t.Fatal(err)
		}
		c := containers.Container{ID: id, Runtime: containers.RuntimeInfo{Name: "runc"}, Spec: []byte("{}"), Snapshotter: snapshotter, SnapshotKey: id}
		if _, err := db.Containers().Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct{ id, snapshotter string }{{"running", native.Name}, {"unknown", "zfs"}, {"broken", "btrfs"}, {"done", native.Name}, {"kept", native.Name}} {
		create(tt.id, tt.snapshotter)
	}

	for _, tt := range []struct {
		id    string
		class error
	}{
		{"running", errdefs.ErrFailedPrecondition},
		{"unknown", errdefs.ErrFailedPrecondition},
		{"broken", errdefs.ErrUnavailable},
		{"absent", errdefs.ErrNotFound},
	} {
		_, err := s.Delete(ctx, &api.DeleteContainerRequest{Id: tt.id, RemoveSnapshot: true})
		if !errors.Is(err, tt.class) || (tt.class != errdefs.ErrNotFound && errdefs.IsNotFound(err)) {
			t.Errorf("delete %s: %v, want class %v only", tt.id, err, tt.class)
		}
		if tt.id == "absent" {
			continue
		}
		if _, err := db.Containers().Get(ctx, tt.id); err != nil {
			t.Errorf("container %s after a refused delete: %v", tt.id, err)
		}
		if _, err := sn.Stat(ctx, tt.id); err != nil {
			t.Errorf("snapshot %s after a refused delete: %v", tt.id, err)
		}
	}

	for _, tt := range []struct {
		id     string
		remove bool
	}{{"done", true}, {"kept", false}} {
		resp, err := s.Delete(ctx, &api.DeleteContainerRequest{Id: tt.id, RemoveSnapshot: tt.remove})
		if err != nil {
			t.Fatalf("delete %s: %v", tt.id, err)
		}
		if resp.GetSnapshotRemoved() != tt.remove {
			t.Errorf("delete %s (remove_snapshot %v) replied snapshot_removed %v", tt.id, tt.remove, resp.GetSnapshotRemoved())
		}
		if _, err := db.Containers().Get(ctx, tt.id); !errdefs.IsNotFound(err) {
			t.Errorf("container %s after its delete: %v, want not found", tt.id, err)
		}
		_, err = sn.Stat(ctx, tt.id)
		if gone := errdefs.IsNotFound(err); gone != tt.remove || (!gone && err != nil) {
			t.Errorf("snapshot %s after a delete with remove_snapshot %v: %v", tt.id, tt.remove, err)
		}
	}
	if want := fmt.Sprint([]string{topics.ContainerDelete, topics.ContainerDelete}); fmt.Sprint(pub.topics) != want {
		t.Errorf("published %v, want %v: one event per delete, none for a refused one", pub.topics, want)
	}
}

// Create with snapshot over a real metadata DB and native snapshotter:
// one call stores the container and makes its snapshot, replies with the
// snapshot's mounts and snapshot_created, and publishes one event; each
// refusal has Snapshots.Prepare's class (or Create's), names what was
// wrong, and leaves neither record.
func TestCreateWithSnapshot(t *testing.T) {
	_, sn, s, pub := newSnapshotEnv(t, nil)
	ctx := nsctx.WithNamespace(context.Background(), "ci")
	if _, err := sn.Prepare(ctx, "layer-active", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "layer", "layer-active"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "taken", "layer"); err != nil {
		t.Fatal(err)
	}
	ctr := func(id, snapshotter, key string) *api.Container {
		return &api.Container{Id: id, Spec: []byte("{}"), Snapshotter: snapshotter, SnapshotKey: key}
	}

	for _, tt := range []struct {
		name  string
		c     *api.Container
		snap  *api.NewSnapshot
		class error
		says  string
	}{
		{"parent missing", ctr("web", native.Name, "web"), &api.NewSnapshot{Parent: "sha256:absent"}, errdefs.ErrNotFound, `parent: snapshot "sha256:absent"`},
		{"parent active", ctr("web", native.Name, "web"), &api.NewSnapshot{Parent: "taken"}, errdefs.ErrInvalidArgument, "not committed"},
		{"key taken", ctr("web", native.Name, "taken"), &api.NewSnapshot{Parent: "layer"}, errdefs.ErrAlreadyExists, `snapshot "taken"`},
		{"unknown snapshotter", ctr("web", "zfs", "web"), &api.NewSnapshot{}, errdefs.ErrNotFound, `snapshotter "zfs"`},
		{"snapshotter that did not open", ctr("web", "btrfs", "web"), &api.NewSnapshot{}, errdefs.ErrUnavailable, "not a btrfs filesystem"},
		{"bad label", ctr("web", native.Name, "web"), &api.NewSnapshot{Labels: map[string]string{"": "x"}}, errdefs.ErrInvalidArgument, "label"},
		{"no key", ctr("web", native.Name, ""), &api.NewSnapshot{}, errdefs.ErrInvalidArgument, "snapshot key"},
		{"no spec", &api.Container{Id: "web", Snapshotter: native.Name, SnapshotKey: "web"}, &api.NewSnapshot{}, errdefs.ErrInvalidArgument, "spec"},
	} {
		_, err := s.Create(ctx, &api.CreateContainerRequest{Container: tt.c, Snapshot: tt.snap})
		if !errors.Is(err, tt.class) || !strings.Contains(fmt.Sprint(err), tt.says) {
			t.Errorf("%s: %v, want class %v saying %q", tt.name, err, tt.class, tt.says)
		}
		if _, err := s.Store.Get(ctx, "web"); !errdefs.IsNotFound(err) {
			t.Errorf("%s: the container after a refused create: %v", tt.name, err)
		}
		if _, err := sn.Stat(ctx, "web"); !errdefs.IsNotFound(err) {
			t.Errorf("%s: the snapshot after a refused create: %v", tt.name, err)
		}
	}
	if len(pub.topics) != 0 {
		t.Errorf("refused creates published %v", pub.topics)
	}

	for _, tt := range []struct {
		id   string
		view bool
	}{{"web", false}, {"reader", true}} {
		resp, err := s.Create(ctx, &api.CreateContainerRequest{Container: ctr(tt.id, native.Name, tt.id), Snapshot: &api.NewSnapshot{Parent: "layer", View: tt.view, Labels: map[string]string{"a": "b"}}})
		if err != nil {
			t.Fatalf("create %s: %v", tt.id, err)
		}
		if !resp.GetSnapshotCreated() || len(resp.GetMounts()) == 0 || resp.GetContainer().GetSnapshotKey() != tt.id {
			t.Errorf("create %s replied %v", tt.id, resp)
		}
		info, err := sn.Stat(ctx, tt.id)
		want := snapshots.KindActive
		if tt.view {
			want = snapshots.KindView
		}
		if err != nil || info.Kind != want || info.Parent != "layer" || info.Labels["a"] != "b" {
			t.Errorf("snapshot of %s: %+v, %v; want a %v on layer labelled a=b", tt.id, info, err, want)
		}
	}
	resp, err := s.Create(ctx, &api.CreateContainerRequest{Container: &api.Container{Id: "plain", Spec: []byte("{}")}})
	if err != nil || resp.GetSnapshotCreated() || len(resp.GetMounts()) != 0 {
		t.Errorf("create without snapshot: %v, %v", resp, err)
	}
	if want := fmt.Sprint([]string{topics.ContainerCreate, topics.ContainerCreate, topics.ContainerCreate}); fmt.Sprint(pub.topics) != want {
		t.Errorf("published %v, want %v", pub.topics, want)
	}
}
