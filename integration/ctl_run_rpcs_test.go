package integration

import (
	"bufio"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/snapshots"
)

// TestCtlRunImageRoundTrips traces `berthctl run --rm IMAGE` against a
// real daemon (BERTH_TRACE in both) and checks the daemon's calls before
// the task is created: each once, none that the client can do without
// (no Content/Info before a read whose descriptor gives the size, no
// lookup of the container and its snapshot that Create answered already,
// no default-snapshotter lookup when --snapshotter names one). The
// container's snapshot is made by Containers/Create in the same
// transaction as its record: no lease is made or deleted, and there is no
// Snapshots/Prepare or View at all. The container runs on that snapshot
// (its image's echo prints). After the task, --rm deletes the
// container and its snapshot in one call (Containers/Delete with
// remove_snapshot, no Snapshots/Remove); GC then removes the snapshot's
// folder, and berthd check finds nothing wrong. A run whose snapshot key
// is taken fails and leaves the snapshot that holds it as it was, and no
// container.
func TestCtlRunImageRoundTrips(t *testing.T) {
	trace := filepath.Join(t.TempDir(), "trace")
	d := newDaemon(t, withEnv("BERTH_TRACE="+trace))
	c := newCtl(t, d)
	const ns = "ctl-rpcs"
	archive := filepath.Join(t.TempDir(), "busybox.tar")
	if err := os.WriteFile(archive, busyboxArchive(t).Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok("-n", ns, "images", "import", archive)
	overlayDirs := func() []string {
		t.Helper()
		dirs, err := filepath.Glob(filepath.Join(d.root, "lib", "snapshots", "overlayfs", "snapshots", "*"))
		if err != nil {
			t.Fatal(err)
		}
		return dirs
	}
	imported := overlayDirs()
	if len(imported) == 0 {
		t.Fatal("the import unpacked nothing into overlayfs")
	}

	const (
		services   = "/berth.services.introspection.v1.Introspection/Services"
		imageGet   = "/berth.services.images.v1.Images/Get"
		leaseNew   = "/berth.services.leases.v1.Leases/Create"
		leaseDel   = "/berth.services.leases.v1.Leases/Delete"
		prepare    = "/berth.services.snapshots.v1.Snapshots/Prepare"
		view       = "/berth.services.snapshots.v1.Snapshots/View"
		ctrNew     = "/berth.services.containers.v1.Containers/Create"
		taskCreate = "/berth.services.tasks.v1.Tasks/Create"
		ctrDel     = "/berth.services.containers.v1.Containers/Delete"
		snapRemove = "/berth.services.snapshots.v1.Snapshots/Remove"
	)
	tests := []struct {
		name  string
		flags []string
		want  map[string]int // the daemon's calls before Tasks/Create
	}{
		{"default snapshotter", nil, map[string]int{services: 1, imageGet: 1, ctrNew: 1}},
		{"--snapshotter", []string{"--snapshotter", "overlayfs"}, map[string]int{imageGet: 1, ctrNew: 1}},
		{"--read-only", []string{"--read-only"}, map[string]int{services: 1, imageGet: 1, ctrNew: 1}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := traceSize(t, trace)
			args := append([]string{"-a", c.address, "-n", ns, "run", "--rm"}, tt.flags...)
			args = append(args, commitBase, "rpcs-"+strconv.Itoa(i), "/bin/echo", "ran", strconv.Itoa(i))
			r := c.runEnv([]string{"BERTH_TRACE=" + trace}, args...)
			if r.code != 0 {
				t.Fatalf("berthctl %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
			}
			if want := "ran " + strconv.Itoa(i) + "\n"; r.stdout != want {
				t.Errorf("the container printed %q, want %q from its image's echo", r.stdout, want)
			}
			calls := daemonCalls(t, trace, from)
			created := slices.IndexFunc(calls, func(c tracedCall) bool { return c.method == taskCreate })
			if created < 0 {
				t.Fatalf("no Tasks/Create traced: %v", calls)
			}
			before := map[string]int{}
			for _, c := range calls {
				if c.start < calls[created].start {
					before[c.method]++
				}
			}
			if !maps.Equal(before, tt.want) {
				t.Errorf("the daemon's calls before Tasks/Create: %v, want %v", before, tt.want)
			}
			after := map[string]int{}
			for _, c := range calls {
				switch c.method {
				case leaseNew, leaseDel, prepare, view:
					t.Errorf("run --rm called %s: the snapshot is Containers/Create's, without a lease", c.method)
				case ctrDel, snapRemove:
					after[c.method]++
				}
			}
			if want := map[string]int{ctrDel: 1}; !maps.Equal(after, want) {
				t.Errorf("--rm's calls: %v, want %v (the snapshot goes with the container)", after, want)
			}
			key := "rpcs-" + strconv.Itoa(i)
			cl := d.client(t, ns)
			if _, err := cl.SnapshotService("overlayfs").Stat(d.nsContext(ns), key); !errdefs.IsNotFound(err) {
				t.Errorf("snapshot %s after run --rm: %v, want not found", key, err)
			}
			if _, err := cl.LoadContainer(d.nsContext(ns), key); !errdefs.IsNotFound(err) {
				t.Errorf("container %s after run --rm: %v, want not found", key, err)
			}
		})
	}

	cl := d.client(t, ns)
	ctx := d.nsContext(ns)
	if _, err := cl.SnapshotService("overlayfs").Prepare(ctx, "taken", "", snapshots.WithLabels(map[string]string{"owner": "test"})); err != nil {
		t.Fatal(err)
	}
	if r := c.run("-n", ns, "run", "--rm", commitBase, "taken", "/bin/true"); r.code == 0 || !strings.Contains(r.stderr, "already exists") || !strings.Contains(r.stderr, `"taken"`) {
		t.Errorf("run on a taken snapshot key: exit %d: %s; want a failure saying the snapshot exists", r.code, r.stderr)
	}
	if info, err := cl.SnapshotService("overlayfs").Stat(ctx, "taken"); err != nil || info.Labels["owner"] != "test" || info.Parent != "" {
		t.Errorf("the snapshot that held the key after the refused run: %+v, %v", info, err)
	}
	if _, err := cl.LoadContainer(ctx, "taken"); !errdefs.IsNotFound(err) {
		t.Errorf("container of the refused run: %v, want not found", err)
	}
	if err := cl.SnapshotService("overlayfs").Remove(ctx, "taken"); err != nil {
		t.Fatal(err)
	}

	if _, err := d.client(t, ns).GarbageCollect(d.nsContext(ns)); err != nil {
		t.Fatal(err)
	}
	if left := overlayDirs(); !slices.Equal(left, imported) {
		t.Errorf("overlayfs folders after the runs and GC: %q, want the image's %q", left, imported)
	}
	d.kill()
	if out, code := d.check(t); code != 0 {
		t.Errorf("berthd check after the runs: exit %d\n%s", code, out)
	}
}

// tracedCall is one daemon call in a trace, on the monotonic clock.
type tracedCall struct {
	method     string
	start, end int64
}

func traceSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// daemonCalls returns the API calls berthd traced from offset from of the
// trace on, in the order they started.
func daemonCalls(t *testing.T, path string, from int64) []tracedCall {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(from, 0); err != nil {
		t.Fatal(err)
	}
	var calls []tracedCall
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// START_NS END_NS PID PROCESS NAME
		fs := strings.Fields(sc.Text())
		if len(fs) != 5 || fs[3] != "berthd" || !strings.HasPrefix(fs[4], "rpc_/berth.services.") {
			continue
		}
		start, err1 := strconv.ParseInt(fs[0], 10, 64)
		end, err2 := strconv.ParseInt(fs[1], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("trace line %q", sc.Text())
		}
		calls = append(calls, tracedCall{method: strings.TrimPrefix(fs[4], "rpc_"), start: start, end: end})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(calls, func(a, b tracedCall) int { return int(a.start - b.start) })
	return calls
}
