package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/oci"
	containersv1 "github.com/berthrt/berth/proto/containers/v1"
	introspectionv1 "github.com/berthrt/berth/proto/introspection/v1"
	namespacesv1 "github.com/berthrt/berth/proto/namespaces/v1"
)

// jsonOf runs berthctl -a ADDRESS args, wants exit 0 and decodes stdout
// into v, refusing unknown fields when v is a struct.
func (c *ctl) jsonOf(v any, args ...string) {
	c.t.Helper()
	out := c.ok(args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("berthctl %s: not JSON of %T: %v\n%s", strings.Join(args, " "), v, err, out)
	}
}

// headers is the first line of a table, its columns split.
func headers(out string) []string {
	first, _, _ := strings.Cut(out, "\n")
	return strings.Fields(first)
}

// TestCtlOutput types the list, info and version commands with --format
// json, a template and -q, and checks what they print against what the
// client library gets from the same daemon.
func TestCtlOutput(t *testing.T) {
	d := newDaemon(t)
	ctx := d.nsContext("default")
	c := newCtl(t, d)
	api := d.client(t, "default")
	rootfs := busyboxLower(t)

	t.Run("namespaces", func(t *testing.T) {
		c.ok("namespaces", "create", "out-ns", "team=a")
		var got []struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		}
		c.jsonOf(&got, "namespaces", "ls", "--format", "json")
		resp, err := api.NamespaceService().List(ctx, &namespacesv1.ListNamespacesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(resp.Namespaces) {
			t.Fatalf("namespaces ls --format json: %d namespaces, the API %d", len(got), len(resp.Namespaces))
		}
		for i, ns := range resp.Namespaces {
			if got[i].Name != ns.Name || !maps.Equal(got[i].Labels, ns.Labels) {
				t.Errorf("namespace %d: printed %+v, the API %v %v", i, got[i], ns.Name, ns.Labels)
			}
		}
		c.prints("out-ns a\n", "namespaces", "ls", "--format", `{{.name}} {{index .labels "team"}}`, "name==out-ns")
		c.prints("out-ns\n", "namespaces", "ls", "-q", "name==out-ns")
		if h := headers(c.ok("namespaces", "ls")); !slices.Equal(h, []string{"NAME", "LABELS"}) {
			t.Errorf("namespaces ls headers %q", h)
		}
		c.ok("namespaces", "rm", "out-ns")
	})

	t.Run("containers", func(t *testing.T) {
		c.ok("containers", "create", "--rootfs", rootfs, "--read-only", "--label", "role=web", "out-web", "sleep", "5")
		c.ok("containers", "create", "--rootfs", rootfs, "--read-only", "out-db", "true")
		t.Cleanup(func() { c.run("containers", "rm", "out-web", "out-db") })

		type runtime struct {
			Name string `json:"name"`
		}
		type container struct {
			ID          string            `json:"id"`
			Labels      map[string]string `json:"labels"`
			Image       string            `json:"image"`
			Runtime     runtime           `json:"runtime"`
			Spec        specs.Spec        `json:"spec"`
			Snapshotter string            `json:"snapshotter"`
			SnapshotKey string            `json:"snapshot_key"`
			CreatedAt   time.Time         `json:"created_at"`
			UpdatedAt   time.Time         `json:"updated_at"`
		}
		check := func(what string, got container, want *containersv1.Container) {
			t.Helper()
			var spec specs.Spec
			if err := json.Unmarshal(want.Spec, &spec); err != nil {
				t.Fatal(err)
			}
			if got.ID != want.Id || !maps.Equal(got.Labels, want.Labels) || got.Image != want.Image ||
				got.Runtime.Name != want.GetRuntime().GetName() || got.Snapshotter != want.Snapshotter ||
				got.SnapshotKey != want.SnapshotKey || !got.CreatedAt.Equal(want.CreatedAt.AsTime()) ||
				!got.UpdatedAt.Equal(want.UpdatedAt.AsTime()) || got.CreatedAt.Location() != time.UTC ||
				!reflect.DeepEqual(got.Spec, spec) {
				t.Errorf("%s: printed %+v, the API %v", what, got, want)
			}
		}

		var list []container
		c.jsonOf(&list, "containers", "ls", "--format", "json")
		resp, err := api.ContainerService().List(ctx, &containersv1.ListContainersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || len(resp.Containers) != 2 {
			t.Fatalf("containers ls --format json: %d containers, the API %d", len(list), len(resp.Containers))
		}
		for i := range list {
			check("containers ls --format json", list[i], resp.Containers[i])
		}

		var one container
		c.jsonOf(&one, "containers", "info", "--format", "json", "out-web")
		check("containers info --format json", one, resp.Containers[1])
		c.prints("out-web [sleep 5] role=web\n", "containers", "info", "--format", "{{.id}} {{.spec.process.args}} {{labels .labels}}", "out-web")
		c.prints("out-db runc\nout-web runc\n", "containers", "ls", "--format", "{{.id}} {{.runtime.name}}")
		c.prints("out-web\n", "containers", "ls", "-q", "labels.role==web")
		if h := headers(c.ok("containers", "ls")); !slices.Equal(h, []string{"CONTAINER", "IMAGE", "RUNTIME", "CREATED", "LABELS"}) {
			t.Errorf("containers ls headers %q", h)
		}
		c.fails(1, []string{`container "nope" in namespace "default": not found`}, "containers", "info", "nope")
	})

	t.Run("content", func(t *testing.T) {
		kept := []byte("kept by its label\n")
		gone := []byte("kept by nothing\n")
		ingest := func(data []byte, args ...string) digest.Digest {
			t.Helper()
			cmd := c.command(nil, append([]string{"-a", c.address, "content", "ingest"}, args...)...)
			cmd.Stdin = bytes.NewReader(data)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("content ingest %v: %v", args, err)
			}
			return digest.Digest(strings.TrimSpace(string(out)))
		}
		keptDgst := ingest(kept, "--label", "berth.io/gc.root=1", "out-kept")
		goneDgst := ingest(gone, "out-gone")

		var blobs []struct {
			Digest    digest.Digest     `json:"digest"`
			Size      int64             `json:"size"`
			CreatedAt time.Time         `json:"created_at"`
			UpdatedAt time.Time         `json:"updated_at"`
			Labels    map[string]string `json:"labels"`
		}
		c.jsonOf(&blobs, "content", "ls", "--format", "json")
		var want []content.Info
		if err := api.ContentStore().Walk(ctx, func(info content.Info) error {
			want = append(want, info)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(blobs) != 2 || len(want) != 2 {
			t.Fatalf("content ls --format json: %d blobs, the API %d", len(blobs), len(want))
		}
		for i, w := range want {
			b := blobs[i]
			if b.Digest != w.Digest || b.Size != w.Size || !b.CreatedAt.Equal(w.CreatedAt) || !b.UpdatedAt.Equal(w.UpdatedAt) || !maps.Equal(b.Labels, nonNil(w.Labels)) {
				t.Errorf("blob %d: printed %+v, the API %+v", i, b, w)
			}
		}
		c.prints(string(keptDgst)+" "+itoa(len(kept))+"\n", "content", "ls", "--format", "{{.digest}} {{.size}}", `labels."berth.io/gc.root"`)
		if h := headers(c.ok("content", "ls")); !slices.Equal(h, []string{"DIGEST", "SIZE", "CREATED", "LABELS"}) {
			t.Errorf("content ls headers %q", h)
		}

		c.prints("berth.io/gc.root=1,note=x\n", "content", "label", string(keptDgst), "note=x")
		if info, err := api.ContentStore().Info(ctx, keptDgst); err != nil || info.Labels["note"] != "x" {
			t.Errorf("content label: the API sees %+v, %v", info, err)
		}
		c.fails(2, []string{`digest "nodigest"`}, "content", "label", "nodigest", "a=b")

		var pruned struct {
			Removed []struct {
				Digest digest.Digest `json:"digest"`
				Size   int64         `json:"size"`
			} `json:"removed"`
			Collected struct {
				Blobs     int   `json:"blobs"`
				BlobBytes int64 `json:"blob_bytes"`
			} `json:"collected"`
		}
		c.jsonOf(&pruned, "content", "prune", "--format", "json")
		if len(pruned.Removed) != 1 || pruned.Removed[0].Digest != goneDgst || pruned.Removed[0].Size != int64(len(gone)) ||
			pruned.Collected.Blobs != 1 || pruned.Collected.BlobBytes != int64(len(gone)) {
			t.Errorf("content prune: %+v, want %s alone removed", pruned, goneDgst)
		}
		c.prints(string(keptDgst)+"\n", "content", "ls", "-q")
		if _, err := api.ContentStore().Info(ctx, goneDgst); err == nil {
			t.Errorf("content prune: %s still in the store", goneDgst)
		}
		out := c.ok("content", "prune")
		if !strings.HasPrefix(out, "removed from the store: 0 blobs (0 B)") {
			t.Errorf("content prune with nothing to remove: %q", out)
		}
		c.ok("content", "rm", string(keptDgst))
	})

	t.Run("leases", func(t *testing.T) {
		c.ok("leases", "create", "--id", "out-lease", "--expires", "1h", "purpose=test")
		t.Cleanup(func() { c.run("leases", "rm", "out-lease") })
		var got []struct {
			ID        string            `json:"id"`
			CreatedAt time.Time         `json:"created_at"`
			Labels    map[string]string `json:"labels"`
		}
		c.jsonOf(&got, "leases", "ls", "--format", "json")
		want, err := api.LeasesService().List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || len(want) != 1 || got[0].ID != want[0].ID || !got[0].CreatedAt.Equal(want[0].CreatedAt) || !maps.Equal(got[0].Labels, want[0].Labels) {
			t.Errorf("leases ls --format json: %+v, the API %+v", got, want)
		}
		c.prints("out-lease\n", "leases", "ls", "-q")
		out := c.ok("leases", "ls")
		if h := headers(out); !slices.Equal(h, []string{"ID", "CREATED", "EXPIRES", "LABELS"}) || !strings.Contains(out, "in 59 minutes") {
			t.Errorf("leases ls:\n%s", out)
		}
	})

	t.Run("plugins and version", func(t *testing.T) {
		var got []struct {
			Type    string            `json:"type"`
			ID      string            `json:"id"`
			Status  string            `json:"status"`
			Error   string            `json:"error"`
			Exports map[string]string `json:"exports"`
		}
		c.jsonOf(&got, "plugins", "ls", "--format", "json")
		resp, err := api.IntrospectionService().Services(ctx, &introspectionv1.ServicesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(resp.Services) || len(got) == 0 {
			t.Fatalf("plugins ls --format json: %d, the API %d", len(got), len(resp.Services))
		}
		for i, s := range resp.Services {
			g := got[i]
			if g.Type != s.Type || g.ID != s.Id || g.Status != s.Status || g.Error != s.Error || !maps.Equal(g.Exports, nonNil(s.Exports)) {
				t.Errorf("plugin %d: printed %+v, the API %v", i, g, s)
			}
		}
		c.prints("snapshots\n", "plugins", "ls", "-q", `id==snapshots`)

		var v struct {
			Client struct {
				Version string `json:"version"`
			} `json:"client"`
			Server struct {
				Version   string `json:"version"`
				Revision  string `json:"revision"`
				GoVersion string `json:"go_version"`
			} `json:"server"`
		}
		c.jsonOf(&v, "version", "--format", "json")
		sv, err := api.Version(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v.Server.Version != sv.Version || v.Server.Revision != sv.Revision || v.Server.GoVersion != sv.GoVersion || v.Client.Version == "" {
			t.Errorf("version --format json: %+v, the API %+v", v, sv)
		}
		c.prints(sv.Version+"\n", "version", "--format", "{{.server.version}}")
	})

	t.Run("info", func(t *testing.T) {
		c.ok("containers", "create", "--rootfs", rootfs, "--read-only", "out-info", "true")
		t.Cleanup(func() { c.run("containers", "rm", "out-info") })
		cmd := c.command(nil, "-a", c.address, "content", "ingest", "--label", "berth.io/gc.root=1", "out-info")
		cmd.Stdin = strings.NewReader("twelve bytes")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("content ingest: %v: %s", err, out)
		}
		dgst := digest.FromString("twelve bytes")
		t.Cleanup(func() { c.run("content", "rm", dgst.String()) })

		var info struct {
			Server struct {
				Version   string    `json:"version"`
				UUID      string    `json:"uuid"`
				Pid       uint64    `json:"pid"`
				StartedAt time.Time `json:"started_at"`
				Root      string    `json:"root"`
				State     string    `json:"state"`
			} `json:"server"`
			DefaultSnapshotter string            `json:"default_snapshotter"`
			Plugins            []json.RawMessage `json:"plugins"`
			Storage            struct {
				Namespace string `json:"namespace"`
				Content   struct {
					Blobs int   `json:"blobs"`
					Bytes int64 `json:"bytes"`
				} `json:"content"`
				Snapshots []struct {
					Snapshotter string `json:"snapshotter"`
					Snapshots   int    `json:"snapshots"`
					Error       string `json:"error"`
				} `json:"snapshots"`
				Images     int `json:"images"`
				Containers int `json:"containers"`
				Leases     int `json:"leases"`
			} `json:"storage"`
		}
		c.jsonOf(&info, "info", "--format", "json")
		srv, err := api.Server(ctx)
		if err != nil {
			t.Fatal(err)
		}
		def, err := api.DefaultSnapshotter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s := info.Server
		if s.UUID != srv.UUID || s.Pid != srv.Pid || !s.StartedAt.Equal(srv.StartedAt) || s.Root != srv.Root || s.State != srv.State ||
			info.DefaultSnapshotter != def || len(info.Plugins) == 0 {
			t.Errorf("info --format json: %+v, the API %+v, default snapshotter %s", info, srv, def)
		}
		st := info.Storage
		if st.Namespace != "default" || st.Content.Blobs != 1 || st.Content.Bytes != 12 || st.Containers != 1 || st.Images != 0 || st.Leases != 0 {
			t.Errorf("info --format json: storage %+v, want 1 blob of 12 bytes and 1 container", st)
		}
		var snapshotters []string
		for _, u := range st.Snapshots {
			snapshotters = append(snapshotters, u.Snapshotter)
			if u.Error != "" || u.Snapshots != 0 {
				t.Errorf("info: snapshot usage %+v, want 0 snapshots and no error", u)
			}
		}
		if !slices.Contains(snapshotters, def) {
			t.Errorf("info: snapshot usage of %q, want the default %s among them", snapshotters, def)
		}
		out := c.ok("info")
		for _, want := range []string{"Server:", "PID:", itoa(int(srv.Pid)), "Storage (namespace default):", "1 blobs, 12 B", "(default " + def + ")"} {
			if !strings.Contains(out, want) {
				t.Errorf("info does not say %q:\n%s", want, out)
			}
		}
		c.prints(itoa(int(srv.Pid))+" 12\n", "info", "--format", "{{.server.pid}} {{.storage.content.bytes}}")
	})

	t.Run("oci spec", func(t *testing.T) {
		for _, tc := range []struct {
			args   []string
			ns, id string
		}{
			{[]string{"oci", "spec"}, "default", "example"},
			{[]string{"-n", "ci", "oci", "spec", "web"}, "ci", "web"},
		} {
			var got specs.Spec
			c.jsonOf(&got, tc.args...)
			want, err := oci.GenerateSpec(context.Background(), tc.ns, tc.id)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(&got, roundTrip(t, want)) {
				t.Errorf("berthctl %s: %+v, want %+v", strings.Join(tc.args, " "), got, want)
			}
		}
		c.fails(2, []string{`"bad/id"`}, "oci", "spec", "bad/id")
		// It needs no daemon.
		r := c.runEnv(nil, "-a", filepath.Join(t.TempDir(), "none.sock"), "oci", "spec")
		if r.code != 0 || !strings.Contains(r.stdout, `"ociVersion"`) {
			t.Errorf("oci spec without a daemon: %+v", r)
		}
	})

	t.Run("events json", func(t *testing.T) {
		var out testutil.Buffer
		cmd := c.command(nil, "-a", c.address, "events", "--format", "json", `topic=="/containers/create"`)
		cmd.Stdout, cmd.Stderr = &out, &out
		done := background(t, cmd)
		// Nothing says when the subscription is in place: create
		// containers until one shows.
		var created []string
		var seen bool
		for i := 0; i < 20 && !seen; i++ {
			id := "out-ev" + itoa(i)
			c.ok("containers", "create", "--rootfs", rootfs, "--read-only", id, "true")
			created = append(created, id)
			deadline := time.Now().Add(500 * time.Millisecond)
			for !seen && time.Now().Before(deadline) {
				// A create seen late, after the next began, counts as well.
				seen = slices.ContainsFunc(created, func(id string) bool { return strings.Contains(out.String(), `"`+id+`"`) })
				time.Sleep(20 * time.Millisecond)
			}
		}
		c.ok(append([]string{"containers", "rm"}, created...)...)
		cmd.Process.Signal(syscall.SIGTERM)
		<-done
		if !seen {
			t.Fatalf("events --format json printed none of the creates:\n%s", out.String())
		}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var ev struct {
				Timestamp time.Time `json:"timestamp"`
				Namespace string    `json:"namespace"`
				Topic     string    `json:"topic"`
				Event     struct {
					ID      string `json:"id"`
					Runtime string `json:"runtime"`
				} `json:"event"`
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("events --format json: line %q: %v", line, err)
			}
			if ev.Namespace != "default" || ev.Topic != "/containers/create" || !slices.Contains(created, ev.Event.ID) ||
				ev.Event.Runtime != "runc" || ev.Timestamp.IsZero() {
				t.Errorf("events --format json: %+v from %q", ev, line)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		c.fails(2, []string{`"yaml": want table, json or a Go template`}, "containers", "ls", "--format", "yaml")
		c.fails(2, []string{"template:"}, "content", "ls", "--format", "{{.digest")
		c.fails(2, []string{"unknown flag: --format"}, "containers", "rm", "--format", "json", "x")
		sock := filepath.Join(t.TempDir(), "berth.sock")
		for _, args := range [][]string{{"info"}, {"content", "ls", "--format", "json"}, {"leases", "ls"}} {
			r := c.runEnv(nil, append([]string{"-a", sock}, args...)...)
			c.check(r, 1, []string{"is berthd running at " + sock}, args)
			if r.stdout != "" {
				t.Errorf("berthctl %s without a daemon printed %q", strings.Join(args, " "), r.stdout)
			}
		}
		// version prints the client's part, server null, and fails.
		r := c.runEnv(nil, "-a", sock, "version", "--format", "json")
		var v struct {
			Client map[string]string `json:"client"`
			Server *json.RawMessage  `json:"server"`
		}
		if r.code != 1 || json.Unmarshal([]byte(r.stdout), &v) != nil || v.Client["version"] == "" || v.Server != nil {
			t.Errorf("version --format json without a daemon: %+v", r)
		}
	})
}

// roundTrip is s as JSON decodes it, for comparing with a decoded spec.
func roundTrip(t *testing.T, s *specs.Spec) *specs.Spec {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out specs.Spec
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// nonNil is labels, {} when nil, as --format json prints them.
func nonNil(labels map[string]string) map[string]string {
	if labels == nil {
		return map[string]string{}
	}
	return labels
}
