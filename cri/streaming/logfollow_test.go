package streaming

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLogParser(t *testing.T) {
	var out, errb bytes.Buffer
	p := logParser{stdout: &out, stderr: &errb}
	in := "2026-01-01T00:00:00.000000001Z stdout P hel" +
		"\n2026-01-01T00:00:00Z stdout F lo\n2026-01-01T00:00:00Z stderr F oops\n" +
		"garbage\n2026-01-01T00:00:00Z stdout F \n" + strings.Repeat("x", logLineMax+1) + "\n2026-01-01T00:00:00Z stdout F end\n"
	// Fed in small pieces, as reads of a growing file return it.
	for i := 0; i < len(in); i += 7 {
		if err := p.write([]byte(in[i:min(i+7, len(in))])); err != nil {
			t.Fatal(err)
		}
	}
	if out.String() != "hello\n\nend\n" || errb.String() != "oops\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}
}

// TestFollowLogRotation follows a log from its end, across a rotation
// (the file renamed away and a new one made at the path), until the
// container exits.
func TestFollowLogRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	write := func(s string) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	write("2026-01-01T00:00:00Z stdout F before the attach\n")
	f, err := openLogEnd(path)
	if err != nil {
		t.Fatal(err)
	}
	write("2026-01-01T00:00:00Z stdout F one\n")
	var out bytes.Buffer
	exited := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- follow(context.Background(), f, path, &out, nil, exited) }()
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	write("2026-01-01T00:00:00Z stdout F two\n2026-01-01T00:00:00Z stderr F dropped\n")
	close(exited)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if strings.Contains(got, "before the attach") || !strings.HasSuffix(got, "two\n") || !strings.Contains(got, "one\n") {
		t.Errorf("followed %q, want the lines after the start, across the rotation", got)
	}
}
