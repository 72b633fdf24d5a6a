package integration

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/internal/testimage"
	"github.com/berthrt/berth/internal/testutil"
)

// ctlUserImage is the image ctlImage imports: busybox whose config runs
// as the user "app", listed in its /etc/passwd with others.
const ctlUserImage = "example.com/test/users:1"

// ctlImage builds busybox with a second layer of users and groups (app
// is 1000:1000 and in staff; www is 33:33), its config running as app,
// and imports it into namespace ns with `berthctl images import`.
func ctlImage(t *testing.T, c *ctl, ns string) string {
	t.Helper()
	base, err := testimage.BusyboxEntries("")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testimage.BusyboxConfig()
	cfg.User = "app"
	img, err := testimage.Build(cfg, base, []testimage.Entry{
		testimage.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n"),
		testimage.File("etc/group", "root:x:0:\nstaff:x:50:app\napp:x:1000:\nwww:x:33:\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "users.tar")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := img.WriteOCIArchive(f, ctlUserImage); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	c.ok("-n", ns, "images", "import", file)
	return ctlUserImage
}

// containerInfo is what `containers info` prints, as far as these tests
// read it.
type containerInfo struct {
	ID          string            `json:"id"`
	Labels      map[string]string `json:"labels"`
	Snapshotter string            `json:"snapshotter"`
	Runtime     struct {
		Name string `json:"name"`
	} `json:"runtime"`
	Spec specs.Spec `json:"spec"`
}

func (c *ctl) info(ns, id string) containerInfo {
	c.t.Helper()
	var info containerInfo
	if err := json.Unmarshal([]byte(c.ok("-n", ns, "containers", "info", id)), &info); err != nil {
		c.t.Fatalf("containers info %s: not JSON: %v", id, err)
	}
	return info
}

// TestCtlRunFlags runs containers from an image with each flag of run and
// containers create, and sees its effect from inside the container or
// through the API.
func TestCtlRunFlags(t *testing.T) {
	d := newDaemon(t)
	const ns = "ctl-run"
	ctx := d.nsContext(ns)
	c := newCtl(t, d)
	api := d.client(t, ns)
	img := ctlImage(t, c, ns)
	run := func(args ...string) result {
		t.Helper()
		return c.run(append([]string{"-n", ns, "run", "--rm"}, args...)...)
	}
	// noneLeft checks that a run left no container and no snapshot.
	noneLeft := func(what string) {
		t.Helper()
		if got := c.ok("-n", ns, "containers", "ls", "-q"); got != "" {
			t.Errorf("%s left containers: %q", what, got)
		}
		if got := c.ok("-n", ns, "snapshots", "ls", "-q"); strings.Contains(got, "run-") {
			t.Errorf("%s left snapshots: %q", what, got)
		}
	}

	t.Run("output", func(t *testing.T) {
		envFile := filepath.Join(t.TempDir(), "env")
		if err := os.WriteFile(envFile, []byte("# comment\nB=from-file\nA=overridden\n\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		bind := t.TempDir()
		if err := os.WriteFile(filepath.Join(bind, "f"), []byte("host data\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		hostNet, err := os.Readlink("/proc/self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			args []string
			want string
		}{
			{"env and env-file", []string{"--env", "A=1", "--env-file", envFile, img, "run-env", "sh", "-c", "echo $A $B"}, "1 from-file\n"},
			{"cwd", []string{"--cwd", "/tmp", img, "run-cwd", "pwd"}, "/tmp\n"},
			{"hostname", []string{"--hostname", "box", img, "run-host", "hostname"}, "box\n"},
			{"image user by name", []string{img, "run-user", "sh", "-c", "id -u; id -g; id -G"}, "1000\n1000\n1000 50\n"},
			{"user by name", []string{"--user", "www", img, "run-user", "sh", "-c", "id -u; id -g"}, "33\n33\n"},
			{"user and group by name", []string{"--user", "app:www", img, "run-user", "sh", "-c", "id -u; id -g"}, "1000\n33\n"},
			{"user by number", []string{"-u", "1234:5678", img, "run-user", "sh", "-c", "id -u; id -g"}, "1234\n5678\n"},
			{"uid listed in passwd", []string{"-u", "33", img, "run-user", "sh", "-c", "id -u; id -g"}, "33\n33\n"},
			{"user by name with --rootfs", []string{"--read-only", "--user", "root", "--rootfs", busyboxLower(t), "run-user", "id", "-u"}, "0\n"},
			{"bind mount read-only", []string{"--mount", "type=bind,src=" + bind + ",dst=/data,options=rbind:ro", img, "run-bind",
				"sh", "-c", "cat /data/f; touch /data/new 2>/dev/null || echo refused"}, "host data\nrefused\n"},
			{"net-host", []string{"--net-host", img, "run-net", "readlink", "/proc/self/ns/net"}, hostNet + "\n"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := run(tt.args...)
				if r.code != 0 || r.stdout != tt.want {
					t.Errorf("run %s: exit %d, stdout %q, want %q; stderr %q", strings.Join(tt.args, " "), r.code, r.stdout, tt.want, r.stderr)
				}
			})
		}
		if _, err := os.Stat(filepath.Join(bind, "new")); err == nil {
			t.Errorf("a read-only bind mount let the container write")
		}
		if r := run(img, "run-net", "readlink", "/proc/self/ns/net"); r.stdout == hostNet+"\n" {
			t.Errorf("without --net-host the container shares the host's network namespace")
		}
		noneLeft("runs")
	})

	t.Run("read-only", func(t *testing.T) {
		r := run("--read-only", "-u", "0", img, "run-ro", "sh", "-c", "touch /x")
		if r.code != 1 || !strings.Contains(r.stderr, "Read-only file system") {
			t.Errorf("touch on a read-only rootfs: exit %d, stderr %q", r.code, r.stderr)
		}
		if r := run("-u", "0", img, "run-rw", "sh", "-c", "touch /x && echo wrote"); r.stdout != "wrote\n" {
			t.Errorf("touch on a writable rootfs: %+v", r)
		}
		noneLeft("read-only runs")
	})

	t.Run("create", func(t *testing.T) {
		c.ok("-n", ns, "containers", "create", "--label", "role=web", "--label", "tier=1",
			"--memory-limit", "67108864", "--cpus", "0.5", "--runtime", "runc", img, "made", "sleep", "100")
		info := c.info(ns, "made")
		ctr, err := api.LoadContainer(ctx, "made")
		if err != nil {
			t.Fatal(err)
		}
		labels, err := ctr.Labels(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]string{"role": "web", "tier": "1"}; !maps.Equal(info.Labels, want) || !maps.Equal(labels, want) {
			t.Errorf("labels: ctl %v, API %v, want %v", info.Labels, labels, want)
		}
		res := info.Spec.Linux.Resources
		if res == nil || res.Memory == nil || *res.Memory.Limit != 64<<20 || res.CPU == nil || *res.CPU.Quota != 50000 || *res.CPU.Period != 100000 {
			t.Errorf("spec resources: %+v", res)
		}
		if info.Runtime.Name != "runc" || info.Spec.Process.User.UID != 1000 {
			t.Errorf("runtime %q, user %+v", info.Runtime.Name, info.Spec.Process.User)
		}
		// The memory limit reaches the cgroup: the metrics report it.
		c.ok("-n", ns, "tasks", "start", "-d", "made")
		var m []struct {
			MemoryLimit uint64 `json:"memory_limit_bytes"`
		}
		if err := json.Unmarshal([]byte(c.ok("-n", ns, "tasks", "metrics", "--format", "json", "made")), &m); err != nil {
			t.Fatal(err)
		}
		if len(m) != 1 || m[0].MemoryLimit != 64<<20 {
			t.Errorf("metrics of a task with --memory-limit 64 MiB: %+v", m)
		}
		c.ok("-n", ns, "tasks", "rm", "-f", "made")
		// containers rm takes the snapshot with it, unless asked to keep
		// it. Kept, nothing references it any more, so a GC the delete
		// schedules would take it: a gc.root label keeps it for the check.
		c.ok("-n", ns, "snapshots", "label", "made", "berth.io/gc.root=test")
		c.ok("-n", ns, "containers", "rm", "--keep-snapshot", "made")
		c.ok("-n", ns, "snapshots", "info", "made")
		c.ok("-n", ns, "snapshots", "rm", "made")
	})

	t.Run("log-uri", func(t *testing.T) {
		dir := t.TempDir()
		log := filepath.Join(dir, "fg.log")
		r := run("--log-uri", "file://"+log, img, "run-log", "sh", "-c", "echo out; echo err >&2; exit 3")
		if r.code != 3 || r.stdout != "" || r.stderr != "" {
			t.Errorf("run --log-uri: exit %d, stdout %q, stderr %q; want 3 and nothing shown", r.code, r.stdout, r.stderr)
		}
		if data, err := os.ReadFile(log); err != nil || !strings.Contains(string(data), "out\n") || !strings.Contains(string(data), "err\n") {
			t.Errorf("log file: %q, %v", data, err)
		}
		detached := filepath.Join(dir, "bg.log")
		c.ok("-n", ns, "run", "-d", "--log-uri", detached, img, "run-logd", "echo", "detached")
		c.prints("0\n", "-n", ns, "tasks", "wait", "run-logd")
		if data, err := os.ReadFile(detached); err != nil || string(data) != "detached\n" {
			t.Errorf("log file of run -d: %q, %v", data, err)
		}
		c.ok("-n", ns, "tasks", "rm", "run-logd")
		c.ok("-n", ns, "containers", "rm", "run-logd")
		c.fails(1, []string{"run-logd", "not found"}, "-n", ns, "snapshots", "info", "run-logd")
		c.fails(2, []string{"--log-uri", "http://x"}, "-n", ns, "run", "--rm", "--log-uri", "http://x/log", img, "run-log", "true")
		c.fails(2, []string{"--log-uri", "relative"}, "-n", ns, "run", "--rm", "--log-uri", "relative", img, "run-log", "true")
		c.fails(2, []string{"--log-uri"}, "-n", ns, "run", "--rm", "-i", "--log-uri", log, img, "run-log", "true")
		noneLeft("log runs")
	})

	t.Run("errors", func(t *testing.T) {
		c.fails(1, []string{`no user "nosuch"`}, "-n", ns, "run", "--rm", "--user", "nosuch", img, "run-bad", "true")
		c.fails(1, []string{`no group "nogroup"`}, "-n", ns, "run", "--rm", "--user", "app:nogroup", img, "run-bad", "true")
		c.fails(2, []string{"--user", `"a:b:c"`}, "-n", ns, "run", "--rm", "--user", "a:b:c", img, "run-bad", "true")
		c.fails(2, []string{"--pull", "sometimes"}, "-n", ns, "run", "--rm", "--pull=sometimes", img, "run-bad", "true")
		c.fails(1, []string{"example.com/none:1", "not found", "--pull"}, "-n", ns, "run", "--rm", "example.com/none:1", "run-bad", "true")
		c.fails(2, []string{"--mount", "dst"}, "-n", ns, "run", "--rm", "--mount", "type=bind,src=/tmp", img, "run-bad", "true")
		noneLeft("failed runs")
	})
}

// TestCtlRunPull runs an image that the daemon does not have with --pull
// from a registry on a loopback port: missing pulls it, always pulls
// again, never refuses, and --platform is checked and passed on.
func TestCtlRunPull(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryConfig{})
	d := newDaemon(t)
	c := newCtl(t, d)
	d.nsContext("ctl-src")
	ctx := d.nsContext("ctl-pull")
	local := ctlImage(t, c, "ctl-src")
	ref := reg.Addr + "/test/users:1"
	c.ok("-n", "ctl-src", "images", "push", "--plain-http", ref, local)

	c.fails(1, []string{ref, "--pull"}, "-n", "ctl-pull", "run", "--rm", "--pull=never", ref, "p0", "true")
	r := c.run("-n", "ctl-pull", "run", "--rm", "--pull", "--plain-http", ref, "p1", "id", "-un")
	if r.code != 0 || r.stdout != "app\n" {
		t.Fatalf("run --pull of a missing image: %+v", r)
	}
	imgs, err := d.client(t, "ctl-pull").ListImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Name() != ref {
		t.Errorf("images after run --pull: %v", imgs)
	}
	c.prints("again\n", "-n", "ctl-pull", "run", "--rm", "--pull=always", "--plain-http", ref, "p2", "echo", "again")
	c.prints("present\n", "-n", "ctl-pull", "run", "--rm", ref, "p3", "echo", "present")

	d.nsContext("ctl-other")
	c.prints("x86_64\n", "-n", "ctl-other", "run", "--rm", "--pull", "--plain-http", "--platform", "linux/amd64", ref, "p4", "uname", "-m")
	c.fails(2, []string{"a/b/c/d"}, "-n", "ctl-other", "run", "--rm", "--pull", "--platform", "a/b/c/d", ref, "p5", "true")
	if got := c.ok("-n", "ctl-pull", "containers", "ls", "-q"); got != "" {
		t.Errorf("runs left containers: %q", got)
	}
}
