package integration

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/berthrt/berth/client"
)

// TestCtlTasks types the tasks commands against a running task: ls, ps
// and metrics as tables, ids and JSON (checked against the client
// library's view), update, pause and resume, exec, wait, and their exit
// codes.
func TestCtlTasks(t *testing.T) {
	d := newDaemon(t)
	const ns = "ctl-tasks"
	ctx := d.nsContext(ns)
	c := newCtl(t, d)
	api := d.client(t, ns)
	img := ctlImage(t, c, ns)
	tasks := func(args ...string) string {
		t.Helper()
		return c.ok(append([]string{"-n", ns, "tasks"}, args...)...)
	}
	fails := func(code int, want []string, args ...string) {
		t.Helper()
		c.fails(code, want, append([]string{"-n", ns, "tasks"}, args...)...)
	}
	jsonOf := func(v any, args ...string) {
		t.Helper()
		out := tasks(args...)
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("tasks %s: not JSON: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	pid := strings.TrimSpace(c.ok("-n", ns, "run", "-d", img, "bg", "sh", "-c", "while :; do sleep 0.1; done"))
	t.Cleanup(func() {
		c.run("-n", ns, "tasks", "rm", "-f", "bg")
		c.run("-n", ns, "containers", "rm", "bg")
		c.run("-n", ns, "snapshots", "rm", "bg")
	})
	ctr, err := api.LoadContainer(ctx, "bg")
	if err != nil {
		t.Fatal(err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strconv.Itoa(int(task.Pid())) != pid {
		t.Fatalf("run -d printed %q, the API says pid %d", pid, task.Pid())
	}

	t.Run("ls", func(t *testing.T) {
		type view struct {
			ID         string  `json:"id"`
			Pid        uint32  `json:"pid"`
			Status     string  `json:"status"`
			ExitStatus *uint32 `json:"exit_status"`
		}
		var got []view
		jsonOf(&got, "ls", "--format", "json")
		if want := []view{{ID: "bg", Pid: task.Pid(), Status: "running"}}; !slices.Equal(got, want) {
			t.Errorf("tasks ls --format json: %+v, want %+v", got, want)
		}
		if out := tasks("ls"); !strings.HasPrefix(out, "TASK") || !strings.Contains(out, pid) || !strings.Contains(out, "RUNNING") {
			t.Errorf("tasks ls:\n%s", out)
		}
		if out := tasks("ls", "-q"); out != "bg\n" {
			t.Errorf("tasks ls -q: %q", out)
		}
		if out := tasks("ls", "--format", "{{.id}} {{.status}}"); out != "bg running\n" {
			t.Errorf("tasks ls --format template: %q", out)
		}
		fails(2, []string{"--format"}, "ls", "--format", "{{.id")
	})

	t.Run("ps", func(t *testing.T) {
		var got []struct {
			Pid    uint32 `json:"pid"`
			ExecID string `json:"exec_id"`
		}
		jsonOf(&got, "ps", "--format", "json", "bg")
		want, err := task.Pids(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The loop starts a sleep now and then: compare the init's.
		if !slices.ContainsFunc(got, func(p struct {
			Pid    uint32 `json:"pid"`
			ExecID string `json:"exec_id"`
		}) bool {
			return p.Pid == task.Pid() && p.ExecID == ""
		}) || !slices.ContainsFunc(want, func(p client.ProcessInfo) bool { return p.Pid == task.Pid() }) {
			t.Errorf("tasks ps --format json: %+v; the API: %+v; want init %d in both", got, want, task.Pid())
		}
		if out := tasks("ps", "bg"); !strings.HasPrefix(out, "PID") || !slices.Contains(lines(out), pid) {
			t.Errorf("tasks ps:\n%s", out)
		}
		if out := tasks("ps", "-q", "bg"); !slices.Contains(lines(out), pid) || strings.Contains(out, "PID") {
			t.Errorf("tasks ps -q: %q", out)
		}
		fails(1, []string{`"nosuch"`, "not found"}, "ps", "nosuch")
	})

	type metrics struct {
		ID            string `json:"id"`
		CgroupVersion uint32 `json:"cgroup_version"`
		CPU           uint64 `json:"cpu_usage_ns"`
		Memory        uint64 `json:"memory_usage_bytes"`
		MemoryLimit   uint64 `json:"memory_limit_bytes"`
		Pids          uint64 `json:"pids_current"`
		PidsLimit     uint64 `json:"pids_limit"`
	}
	t.Run("metrics", func(t *testing.T) {
		var got []metrics
		jsonOf(&got, "metrics", "--format", "json", "bg")
		want, err := task.Metrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].ID != "bg" || got[0].CPU == 0 || got[0].Memory == 0 || got[0].Pids == 0 ||
			got[0].CgroupVersion != want.Data.GetCgroupVersion() || got[0].PidsLimit != want.Data.GetPidsLimit() {
			t.Errorf("tasks metrics --format json: %+v; the API: %+v", got, want.Data)
		}
		out := tasks("metrics", "bg")
		if rows := strings.Split(strings.TrimSpace(out), "\n"); len(rows) != 2 || !strings.HasPrefix(rows[0], "TASK") ||
			!strings.Contains(rows[0], "MEMORY") || !strings.HasPrefix(rows[1], "bg ") {
			t.Errorf("tasks metrics:\n%s", out)
		}
		fails(1, []string{`"nosuch"`}, "metrics", "nosuch")
	})

	t.Run("update", func(t *testing.T) {
		tasks("update", "--memory-limit", "134217728", "--pids-limit", "50", "--cpus", "0.5", "bg")
		var got []metrics
		jsonOf(&got, "metrics", "--format", "json", "bg")
		want, err := task.Metrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].MemoryLimit != 128<<20 || got[0].PidsLimit != 50 ||
			want.Data.GetMemoryLimitBytes() != 128<<20 || want.Data.GetPidsLimit() != 50 {
			t.Errorf("metrics after update: %+v; the API: %+v", got, want.Data)
		}
		fails(2, []string{"nothing to update"}, "update", "bg")
		fails(2, []string{"cpus 0"}, "update", "--cpus", "0", "bg")
		fails(2, []string{"pids limit -1"}, "update", "--pids-limit", "-1", "bg")
		fails(1, []string{`"nosuch"`}, "update", "--pids-limit", "5", "nosuch")
	})

	t.Run("pause and resume", func(t *testing.T) {
		tasks("pause", "bg")
		if st, err := task.Status(ctx); err != nil || st.Status != client.Paused {
			t.Errorf("after pause, the API: %+v, %v", st, err)
		}
		if out := tasks("ls", "--format", "{{.status}}"); out != "paused\n" {
			t.Errorf("after pause, tasks ls: %q", out)
		}
		tasks("resume", "bg")
		if st, err := task.Status(ctx); err != nil || st.Status != client.Running {
			t.Errorf("after resume, the API: %+v, %v", st, err)
		}
		fails(1, []string{"bg"}, "resume", "bg") // not paused
	})

	t.Run("exec", func(t *testing.T) {
		r := c.run("-n", ns, "tasks", "exec", "--exec-id", "e1", "bg", "sh", "-c", "id -un; echo err >&2; exit 4")
		if r.code != 4 || r.stdout != "app\n" || r.stderr != "err\n" {
			t.Errorf("tasks exec: %+v", r)
		}
		r = c.run("-n", ns, "tasks", "exec", "--exec-id", "e2", "-u", "www", "--cwd", "/tmp", "--env", "X=y", "bg", "sh", "-c", "id -u; pwd; echo $X")
		if r.code != 0 || r.stdout != "33\n/tmp\ny\n" {
			t.Errorf("tasks exec -u www --cwd --env: %+v", r)
		}
		fails(1, []string{`no user "nosuch"`}, "exec", "--exec-id", "e3", "-u", "nosuch", "bg", "true")
		fails(2, []string{"--exec-id"}, "exec", "bg", "true")
	})

	t.Run("wait", func(t *testing.T) {
		c.ok("-n", ns, "run", "-d", img, "w3", "sh", "-c", "sleep 0.2; exit 3")
		t.Cleanup(func() {
			c.run("-n", ns, "tasks", "rm", "-f", "w3")
			c.run("-n", ns, "containers", "rm", "w3")
			c.run("-n", ns, "snapshots", "rm", "w3")
		})
		if out := tasks("wait", "w3"); out != "3\n" {
			t.Errorf("tasks wait: %q, want 3", out)
		}
		if out := tasks("ls", "--format", "{{.id}} {{.status}} {{.exit_status}}", "id==w3"); out != "w3 stopped 3\n" {
			t.Errorf("tasks ls of the stopped task: %q", out)
		}
		tasks("kill", "-s", "KILL", "bg")
		if out := tasks("wait", "bg"); out != "137\n" {
			t.Errorf("tasks wait after kill: %q", out)
		}
		fails(1, []string{`"nosuch"`}, "wait", "nosuch")
	})
}
