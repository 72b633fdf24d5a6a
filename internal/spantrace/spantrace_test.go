package spantrace

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// helperEnv makes the test binary record spans instead of running tests.
const helperEnv = "SPANTRACE_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		s := Start("outer step")
		Mark("instant")
		s.End()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestSpansOfChildProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace")
	for range 2 {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), helperEnv+"=1", Env+"="+path)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("helper: %v: %s", err, out)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 lines (2 spans in each of 2 processes), got %q", lines)
	}
	names := map[string]int{}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 5 {
			t.Fatalf("line %q: want START END PID PROCESS NAME", l)
		}
		start, err1 := strconv.ParseInt(f[0], 10, 64)
		end, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || start <= 0 || end < start {
			t.Errorf("line %q: bad bounds", l)
		}
		if f[3] != filepath.Base(os.Args[0]) {
			t.Errorf("line %q: process %q, want %q", l, f[3], filepath.Base(os.Args[0]))
		}
		names[f[4]]++
	}
	if names["outer_step"] != 2 || names["instant"] != 2 {
		t.Errorf("span names %v, want outer_step and instant twice each (spaces replaced)", names)
	}
}

func TestOffRecordsNothing(t *testing.T) {
	if Enabled() {
		t.Fatalf("%s is set in the test's environment", Env)
	}
	Start("x").End() // must not panic or write
	Mark("y")
	if ServerOpts() != nil {
		t.Error("ServerOpts adds an interceptor while tracing is off")
	}
}
