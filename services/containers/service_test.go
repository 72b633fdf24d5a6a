package containers

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
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
	s := &service{Config{Store: db.Containers(), Tasks: withTask{"running": true}, Publisher: pub, Locks: &services.IDLocks{}, Snapshotter: snaps.Snapshotter}}
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
