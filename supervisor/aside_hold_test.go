package supervisor

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/berthrt/berth/shimapi"
)

// dropEvents drops every event.
type dropEvents struct{}

func (dropEvents) Forward(context.Context, string, string, *shimapi.Envelope) error { return nil }

// Two folders set aside whose names both stand for a/b.c and a.b/c (a
// daemon killed after it deleted both tasks, or one folder a failed
// release left): a restored daemon holds each name until every folder
// that may stand for it is finished. While the shim of one still serves
// (its deferred `runc delete --force` deletes by id, not by bundle), the
// name stays held when the other folder is done; when the first folder
// to finish held the names alone, a new task of the name could be
// created and then deleted by the old shim's runtime delete.
func TestRestoredAsideNamesHeldUntilEveryFolderIsDone(t *testing.T) {
	state := t.TempDir()
	s, err := New(Config{StateDir: state, ShimBinary: "/nonexistent/berth-shim", Events: dropEvents{}})
	if err != nil {
		t.Fatal(err)
	}
	s.asideExitWait = time.Hour // the shim's exit is the test's to decide
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close()
		}
	})
	done := filepath.Join(state, asideDir, "a.b.c.1.1")    // its shim gone
	serving := filepath.Join(state, asideDir, "a.b.c.2.2") // its shim still serves
	for _, dir := range []string{done, serving} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// A process that passes for a shim serving from the folder: `serve`
	// is its first argument and the folder its working folder.
	if err := os.WriteFile(filepath.Join(serving, "serve"), []byte("read line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	shim := exec.Command("sh", "serve")
	shim.Dir = serving
	stdin, err := shim.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := shim.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			shim.Process.Kill()
			shim.Wait()
		}
	})
	if err := os.WriteFile(filepath.Join(serving, shimapi.PidFileName), []byte(strconv.Itoa(shim.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	// Wait until the fake has read its script (its argv is set at exec).
	waitFor(t, "the fake shim serving from its folder", func() bool { return servesFrom(shim.Process.Pid, serving) })

	s.removeAsideBundles()
	waitFor(t, "the folder whose shim is gone removed", func() bool { return gone(done) })
	for _, k := range []key{{"a", "b.c"}, {"a.b", "c"}} {
		s.mu.Lock()
		_, held := s.asides[k]
		s.mu.Unlock()
		if !held {
			t.Errorf("name %v free while the shim of a folder that may stand for it still serves", k)
		}
	}

	stdin.Close()
	shim.Wait()
	exited = true
	waitFor(t, "the other folder removed and the names free", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return gone(serving) && len(s.asides) == 0
	})
	closed = true
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func gone(path string) bool {
	_, err := os.Lstat(path)
	return errors.Is(err, fs.ErrNotExist)
}

// waitFor waits (bounded) until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 20s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
