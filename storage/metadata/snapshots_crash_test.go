package metadata

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/content/local"
	"github.com/berthrt/berth/storage/snapshots/native"
)

// The fault tests of a snapshot's Prepare and Commit, which span this file
// and the snapshotter's own store: a failure (an I/O error) or a crash
// (SIGKILL of a child process) at each step, then a check that the
// records and the snapshotter agree, that GC keeps what a lease holds and
// removes the rest, and that a committed layer kept its files.

// faultSteps are the failpoints, in the order the scenario meets them, and
// whether the layer is committed when the scenario stops there.
var faultSteps = []struct {
	step      string
	committed bool
	prepared  bool // the active snapshot exists
}{
	{failCreateRecord, false, false},
	{failCommitIntent, false, true},
	{failCommitBackend, false, true},
	{failCommitRecord, true, false},
}

const (
	faultLayer = "sha256:layer"
	faultKey   = "extract"
	faultFile  = "etc/hostname"
	faultData  = "layer bytes"
)

// faultEnv is a DB and a native snapshotter in dir, and their GC.
type faultEnv struct {
	db      *DB
	backend snapshots.Snapshotter
	sn      snapshots.Snapshotter
	gc      *GC
}

func openFaultEnv(t *testing.T, dir string) *faultEnv {
	t.Helper()
	db, err := Open(filepath.Join(dir, "meta.db"))
	requireNoErr(t, err)
	backend, err := native.New(filepath.Join(dir, "native"))
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close(); db.Close() })
	localStore, err := local.NewStore(filepath.Join(dir, "content"))
	requireNoErr(t, err)
	gc := NewGC(db, localStore, GCOptions{Snapshots: []SnapshotCollector{db.SnapshotCollector(native.Name, backend)}})
	return &faultEnv{db: db, backend: backend, sn: db.Snapshotter(native.Name, backend), gc: gc}
}

// unpack is what an unpacker does for one layer, under a lease: Prepare,
// write, Commit. It stops at the first error.
func (e *faultEnv) unpack(ctx context.Context) error {
	if _, err := e.db.Leases().Create(ctx, leases.Lease{ID: "unpack"}); err != nil {
		return err
	}
	ctx = leases.WithLease(ctx, "unpack")
	mounts, err := e.sn.Prepare(ctx, faultKey, "")
	if err != nil {
		return err
	}
	// native's active snapshot is a bind mount of a folder: write there.
	path := filepath.Join(mounts[0].Source, faultFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(faultData), 0o644); err != nil {
		return err
	}
	return e.sn.Commit(ctx, faultLayer, faultKey)
}

// problems returns what CheckSnapshots and CheckContainers report.
func (e *faultEnv) problems(t *testing.T) []Problem {
	t.Helper()
	ps, err := e.db.CheckSnapshots(context.Background(), native.Name, e.backend)
	requireNoErr(t, err)
	cs, err := e.db.CheckContainers(context.Background())
	requireNoErr(t, err)
	return append(ps, cs...)
}

// verify checks, after the scenario stopped at a step: the stores agree
// once GC ran (before, a pending commit and a snapshot underneath without
// its record are allowed: GC settles the one and removes the other), the lease keeps what the step left, the layer has its files,
// and once the lease goes GC removes everything.
func (e *faultEnv) verify(t *testing.T, committed, prepared bool) {
	t.Helper()
	ctx := nsCtx("ci")
	for _, p := range e.problems(t) {
		if p.What != ProblemCommitPending && p.What != ProblemSnapshotUnrecorded {
			t.Errorf("before GC: %v", p)
		}
	}
	if _, err := e.gc.Collect(ctx); err != nil {
		t.Fatalf("GC: %v", err)
	}
	for _, p := range e.problems(t) {
		t.Errorf("after GC: %v", p)
	}
	info, err := e.sn.Stat(ctx, faultLayer)
	switch {
	case committed && (err != nil || info.Kind != snapshots.KindCommitted):
		t.Errorf("committed layer after GC: %+v, %v", info, err)
	case !committed && !errdefs.IsNotFound(err):
		t.Errorf("layer that never committed: %+v, %v", info, err)
	case committed:
		mounts, err := e.sn.View(ctx, "look", faultLayer)
		requireNoErr(t, err)
		if got, err := os.ReadFile(filepath.Join(mounts[0].Source, faultFile)); string(got) != faultData {
			t.Errorf("committed layer's file after GC: %q, %v", got, err)
		}
		requireNoErr(t, e.sn.Remove(ctx, "look"))
	}
	info, err = e.sn.Stat(ctx, faultKey)
	if prepared != (err == nil) || (prepared && info.Kind != snapshots.KindActive) {
		t.Errorf("active snapshot after GC: %+v, %v; want it: %v", info, err, prepared)
	}
	if prepared {
		// The caller may try again, and then the commit goes through.
		requireNoErr(t, e.sn.Commit(leases.WithLease(ctx, "unpack"), faultLayer, faultKey))
	}
	if err := e.db.Leases().Delete(ctx, "unpack"); err != nil && !errdefs.IsNotFound(err) {
		t.Fatal(err)
	}
	if _, err := e.gc.Collect(ctx); err != nil {
		t.Fatalf("GC without the lease: %v", err)
	}
	for _, p := range e.problems(t) {
		t.Errorf("after GC without the lease: %v", p)
	}
	if keys := backendKeys(t, e.backend); len(keys) != 0 {
		t.Errorf("snapshotter holds %q after GC without the lease", keys)
	}
}

func TestSnapshotFaultError(t *testing.T) {
	for _, tc := range faultSteps {
		t.Run(tc.step, func(t *testing.T) {
			e := openFaultEnv(t, t.TempDir())
			injected := errors.New("injected I/O error")
			e.db.failpoint = func(step string) error {
				if step == tc.step {
					return injected
				}
				return nil
			}
			if err := e.unpack(nsCtx("ci")); !errors.Is(err, injected) {
				t.Fatalf("unpack with a failure at %s: %v", tc.step, err)
			}
			e.db.failpoint = nil
			e.verify(t, tc.committed, tc.prepared)
		})
	}
}

// envFaultChild makes the test binary a child of TestSnapshotFaultCrash:
// "<step> <dir>".
const envFaultChild = "BERTH_TEST_FAULT_CHILD"

func TestSnapshotFaultCrash(t *testing.T) {
	for _, tc := range faultSteps {
		t.Run(tc.step, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestSnapshotFaultCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), envFaultChild+"="+tc.step+" "+dir)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child did not die of SIGKILL at %s: %v\n%s", tc.step, err, out)
			}
			openFaultEnv(t, dir).verify(t, tc.committed, tc.prepared)
		})
	}
}

// TestSnapshotFaultCrashChild runs the scenario and kills its own process
// at the step its parent names; without the parent it has nothing to do.
func TestSnapshotFaultCrashChild(t *testing.T) {
	arg := os.Getenv(envFaultChild)
	if arg == "" {
		return
	}
	var step, dir string
	for i := range arg {
		if arg[i] == ' ' {
			step, dir = arg[:i], arg[i+1:]
			break
		}
	}
	e := openFaultEnv(t, dir)
	e.db.failpoint = func(s string) error {
		if s == step {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil
	}
	err := e.unpack(nsCtx("ci"))
	t.Fatalf("scenario ran past %s: %v", step, err)
}
