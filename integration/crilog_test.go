package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/io/cio"
)

// TestCRILog: a container's stdout and stderr land in one file in the CRI
// log format, written by its shim; after a rename, ReopenLog sends new
// output to a new file at the path; a daemon killed and restarted while the
// container writes loses no line (the shim writes on alone meanwhile).
func TestCRILog(t *testing.T) {
	d := newDaemon(t)
	const ns = "crilog"
	ctx := d.nsContext(ns)
	c := d.client(t, ns)

	logPath := filepath.Join(t.TempDir(), "0.log")
	ctr := newClientContainer(t, c, ctx, "writer", []string{"sh", "-c",
		`i=0; while :; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); sleep 0.02; done`})
	task, exitc := startTask(t, ctx, ctr, cio.CRILog(logPath))

	// count is how many stdout entries path holds now.
	count := func(path string) int {
		data, _ := os.ReadFile(path)
		return strings.Count(string(data), " stdout F out ")
	}
	eventually(t, 20*time.Second, "entries in the log", func() bool { return count(logPath) >= 5 })
	if fi, err := os.Stat(logPath); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("log file: %v, %v; want mode 0640", fi.Mode(), err)
	}

	rotated := []string{logPath + ".1", logPath + ".2"}
	if err := os.Rename(logPath, rotated[0]); err != nil {
		t.Fatal(err)
	}
	if err := task.ReopenLog(ctx); err != nil {
		t.Fatalf("ReopenLog: %v", err)
	}
	eventually(t, 20*time.Second, "entries in the reopened log", func() bool { return count(logPath) >= 5 })

	// The daemon goes away; the shim keeps writing.
	d.kill()
	before := count(logPath)
	eventually(t, 20*time.Second, "entries while the daemon is down", func() bool { return count(logPath) >= before+10 })
	d.start()

	c2 := d.client(t, ns)
	ctr2, err := c2.LoadContainer(ctx, "writer")
	if err != nil {
		t.Fatal(err)
	}
	task2, err := ctr2.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(logPath, rotated[1]); err != nil {
		t.Fatal(err)
	}
	if err := task2.ReopenLog(ctx); err != nil {
		t.Fatalf("ReopenLog after the restart: %v", err)
	}
	eventually(t, 20*time.Second, "entries after the restart", func() bool { return count(logPath) >= 5 })

	if err := task2.Kill(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	receiveExit(t, exitc)
	if _, err := task2.Delete(ctx); err != nil {
		t.Fatal(err)
	}

	// Every line of each stream, in order, across the three files.
	next := map[string]int{}
	for _, path := range append(rotated, logPath) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			f := strings.SplitN(line, " ", 4)
			if len(f) != 4 || f[2] != "F" {
				t.Fatalf("%s: entry %q", filepath.Base(path), line)
			}
			if _, err := time.Parse(time.RFC3339Nano, f[0]); err != nil {
				t.Fatalf("%s: entry %q: %v", filepath.Base(path), line, err)
			}
			word := map[string]string{"stdout": "out", "stderr": "err"}[f[1]]
			if want := fmt.Sprintf("%s %d", word, next[f[1]]); word == "" || f[3] != want {
				t.Fatalf("%s: entry %q, want %s content %q", filepath.Base(path), line, f[1], want)
			}
			next[f[1]]++
			n++
		}
		if n == 0 {
			t.Errorf("%s holds no entry", filepath.Base(path))
		}
	}
	// The kill may come between a line of stdout and its stderr twin.
	if d := next["stdout"] - next["stderr"]; d < 0 || d > 1 {
		t.Errorf("%d stdout and %d stderr lines", next["stdout"], next["stderr"])
	}
	t.Logf("%d lines of each stream over 3 files", next["stderr"])

	// Output that is no crilog cannot be reopened.
	quiet := newClientContainer(t, c2, ctx, "quiet", []string{"true"})
	qtask, err := quiet.NewTask(ctx, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	deleteTaskOnCleanup(t, qtask)
	if err := qtask.ReopenLog(ctx); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("ReopenLog of a task without a crilog: %v, want ErrFailedPrecondition", err)
	}
	if _, err := qtask.Delete(ctx); err != nil {
		t.Fatal(err)
	}
}
