package integration

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/fifo"

	"github.com/berthrt/berth/oci"
	"github.com/berthrt/berth/shimapi"
)

func TestShimEcho(t *testing.T) {
	s := startShim(t, "echo", []oci.SpecOpts{oci.WithProcessArgs("echo", "hello from berth")})
	if ppid := parentOf(t, s.shimPid()); ppid == os.Getpid() {
		t.Fatalf("shim %d is a child of the test", s.shimPid())
	}
	dir := t.TempDir()
	out := newOutput(t, dir, "stdout")
	pid := s.create(&shimapi.Stdio{Stdout: out.path})
	if pid == 0 {
		t.Fatal("create returned pid 0")
	}
	if st := s.status(""); st != shimapi.Status_STATUS_CREATED {
		t.Fatalf("status after create = %v", st)
	}
	s.start("")
	if code := s.wait(""); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
	if got := out.closed(t); got != "hello from berth\n" {
		t.Fatalf("stdout = %q", got)
	}
	if st := s.status(""); st != shimapi.Status_STATUS_STOPPED {
		t.Fatalf("status after exit = %v", st)
	}
	del, err := s.task.Delete(ctx(t), &shimapi.DeleteRequest{Id: s.id})
	if err != nil {
		t.Fatal(err)
	}
	if del.Pid != pid || del.ExitStatus != 0 {
		t.Fatalf("delete = %+v", del)
	}
	if _, err := os.Stat(filepath.Join(s.bundle, shimapi.ExitFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("exit file after delete: %v", err)
	}
	if mounted(t, filepath.Join(s.bundle, "rootfs")) {
		t.Fatal("rootfs still mounted after delete")
	}
}

func TestShimExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		kill bool
		want uint32
	}{
		{"zero", []string{"true"}, false, 0},
		{"three", []string{"sh", "-c", "exit 3"}, false, 3},
		{"killed", []string{"sleep", "1000"}, true, 137},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startShim(t, "exit-"+tc.name, []oci.SpecOpts{oci.WithProcessArgs(tc.args...)})
			s.create(&shimapi.Stdio{})
			s.start("")
			if tc.kill {
				if _, err := s.task.Kill(ctx(t), &shimapi.KillRequest{Id: s.id, Signal: uint32(syscall.SIGKILL)}); err != nil {
					t.Fatal(err)
				}
			}
			if got := s.wait(""); got != tc.want {
				t.Fatalf("exit status %d, want %d", got, tc.want)
			}
			st, err := shimapi.ReadExitFile(s.bundle)
			if err != nil {
				t.Fatalf("exit file: %v", err)
			}
			if st.Status != tc.want || st.ExitedAt.IsZero() {
				t.Fatalf("exit file = %+v", st)
			}
		})
	}
}

func mounted(t *testing.T, path string) bool {
	t.Helper()
	for _, m := range mountInfo(t) {
		if m.target == path || strings.HasPrefix(m.target, path+"/") {
			return true
		}
	}
	return false
}

// mountEntry is one line of /proc/self/mountinfo: where, and the
// filesystem's own (super) options.
type mountEntry struct{ target, superOptions string }

// mountInfo reads /proc/self/mountinfo.
func mountInfo(t *testing.T) []mountEntry {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []mountEntry
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) <= 4 {
			continue
		}
		m := mountEntry{target: f[4]}
		// After the optional fields: "-", type, source, super options.
		if i := slices.Index(f, "-"); i >= 0 && len(f) > i+3 {
			m.superOptions = f[i+3]
		}
		out = append(out, m)
	}
	return out
}

// TestShimStdinAcrossClients: the shim keeps a process's stdin open while
// clients come and go (closing the FIFO is a detach, not EOF), the next
// client's input reaches the same process, and CloseIO ends it after what
// was written.
func TestShimStdinAcrossClients(t *testing.T) {
	s := startShim(t, "stdin-clients", []oci.SpecOpts{oci.WithProcessArgs("sh", "-c", "cat; echo eof-seen")})
	dir := t.TempDir()
	in, first := newInput(t, dir, "stdin")
	out := newOutput(t, dir, "stdout")
	s.create(&shimapi.Stdio{Stdin: in, Stdout: out.path})
	s.start("")
	io.WriteString(first, "one\n")
	out.waitFor(t, "one\n")
	first.Close()

	second, err := fifo.OpenFifo(ctx(t), in, syscall.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("a second client cannot open stdin: %v", err)
	}
	defer second.Close()
	io.WriteString(second, "two\n")
	out.waitFor(t, "one\ntwo\n") // cat still reads: the first close was no EOF
	io.WriteString(second, "three\n")
	second.Close()
	if _, err := s.task.CloseIO(ctx(t), &shimapi.CloseIORequest{Id: s.id, Stdin: true}); err != nil {
		t.Fatal(err)
	}
	if code := s.wait(""); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got := out.closed(t); got != "one\ntwo\nthree\neof-seen\n" {
		t.Fatalf("stdout = %q", got)
	}
}
