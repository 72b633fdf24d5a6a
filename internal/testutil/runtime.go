package testutil

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// GatedRuntime writes a runtime wrapper around inner (a runc, or another
// wrapper) whose calls of verb wait while a gate file exists (at most
// 20 s), and returns it with a function that opens the gate; the test's
// cleanup opens it too. A test holds back a runtime call with it to look
// at what happens meanwhile.
func GatedRuntime(t testing.TB, inner, verb string) (wrapper string, open func()) {
	t.Helper()
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wrapper = filepath.Join(dir, "gated-runtime")
	script := "#!/bin/sh\nfor a in \"$@\"; do\n  if [ \"$a\" = " + verb + " ]; then\n" +
		"    i=0; while [ -e " + gate + " ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done\n  fi\ndone\n" +
		"exec " + inner + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	open = func() {
		if err := os.Remove(gate); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Error(err)
		}
	}
	t.Cleanup(open)
	return wrapper, open
}
