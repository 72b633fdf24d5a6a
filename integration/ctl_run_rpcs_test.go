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
)

// TestCtlRunImageRoundTrips traces `berthctl run --rm IMAGE` against a
// real daemon (BERTH_TRACE in both) and checks the daemon's calls before
// the task is created: each once, none that the client can do without
// (no Content/Info before a read whose descriptor gives the size, no
// lookup of the container and its snapshot that Prepare answered
// already, no default-snapshotter lookup when --snapshotter names one),
// and the lease deleted only after the container's record exists. After
// the task, --rm deletes the container and its snapshot in one call
// (Containers/Delete with remove_snapshot, no Snapshots/Remove); GC then
// removes the snapshot's folder, and berthd check finds nothing wrong.
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
		{"default snapshotter", nil, map[string]int{services: 1, imageGet: 1, leaseNew: 1, prepare: 1, ctrNew: 1}},
		{"--snapshotter", []string{"--snapshotter", "overlayfs"}, map[string]int{imageGet: 1, leaseNew: 1, prepare: 1, ctrNew: 1}},
		{"--read-only", []string{"--read-only"}, map[string]int{services: 1, imageGet: 1, leaseNew: 1, view: 1, ctrNew: 1}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := traceSize(t, trace)
			args := append([]string{"-a", c.address, "-n", ns, "run", "--rm"}, tt.flags...)
			args = append(args, commitBase, "rpcs-"+strconv.Itoa(i), "/bin/true")
			if r := c.runEnv([]string{"BERTH_TRACE=" + trace}, args...); r.code != 0 {
				t.Fatalf("berthctl %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
			}
			calls := daemonCalls(t, trace, from)
			created := slices.IndexFunc(calls, func(c tracedCall) bool { return c.method == taskCreate })
			if created < 0 {
				t.Fatalf("no Tasks/Create traced: %v", calls)
			}
			before := map[string]int{}
			for _, c := range calls {
				if c.start < calls[created].start && c.method != leaseDel {
					before[c.method]++
				}
			}
			if !maps.Equal(before, tt.want) {
				t.Errorf("the daemon's calls before Tasks/Create: %v, want %v", before, tt.want)
			}
			var recorded, deleted []tracedCall
			after := map[string]int{}
			for _, c := range calls {
				switch c.method {
				case ctrNew:
					recorded = append(recorded, c)
				case leaseDel:
					deleted = append(deleted, c)
				case ctrDel, snapRemove:
					after[c.method]++
				}
			}
			if len(deleted) != 1 || len(recorded) != 1 || deleted[0].start < recorded[0].end {
				t.Errorf("Leases/Delete %v, Containers/Create %v: want one delete after the record", deleted, recorded)
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
