package stdio

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthrt/berth/errdefs"
)

type criEntry struct {
	stream  string
	tag     string
	content string
}

// parseCRILog checks every line of a CRI log and returns its entries.
func parseCRILog(t testing.TB, data []byte) []criEntry {
	t.Helper()
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("log does not end with a newline: %.80q", data[max(0, len(data)-80):])
	}
	var entries []criEntry
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line == "" {
			continue
		}
		line = strings.TrimSuffix(line, "\n")
		f := strings.SplitN(line, " ", 4)
		if len(f) != 4 {
			t.Fatalf("entry %.80q: want 4 fields", line)
		}
		if _, err := time.Parse(time.RFC3339Nano, f[0]); err != nil {
			t.Fatalf("entry %.80q: time: %v", line, err)
		}
		if f[1] != "stdout" && f[1] != "stderr" {
			t.Fatalf("entry %.80q: stream %q", line, f[1])
		}
		if f[2] != "P" && f[2] != "F" {
			t.Fatalf("entry %.80q: tag %q", line, f[2])
		}
		// A P entry is a full criLineMax piece, or an unfinished line
		// written after a pause (criPartialAfter): never empty.
		if len(f[3]) > criLineMax || f[2] == "P" && len(f[3]) == 0 {
			t.Fatalf("entry %s with %d bytes of content", f[2], len(f[3]))
		}
		entries = append(entries, criEntry{f[1], f[2], f[3]})
	}
	return entries
}

// joinEntries turns entries back into the stream's bytes: an F entry ends a
// line.
func joinEntries(entries []criEntry) string {
	var b strings.Builder
	for _, e := range entries {
		b.WriteString(e.content)
		if e.tag == "F" {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func newTestCRILog(t testing.TB) (*criLog, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "0.log")
	l, err := openCRILog(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l.f != nil {
			l.f.Close()
		}
	})
	return l, path
}

func TestCRIStreamSplits(t *testing.T) {
	long := strings.Repeat("x", criLineMax)
	tests := []struct {
		name   string
		chunks []string
		want   []criEntry
	}{
		{"lines", []string{"a\nbb\n\nccc\n"}, []criEntry{{"stdout", "F", "a"}, {"stdout", "F", "bb"}, {"stdout", "F", ""}, {"stdout", "F", "ccc"}}},
		{"line across writes", []string{"he", "ll", "o\nwor", "ld\n"}, []criEntry{{"stdout", "F", "hello"}, {"stdout", "F", "world"}}},
		{"partial at EOF", []string{"done\nno newline"}, []criEntry{{"stdout", "F", "done"}, {"stdout", "F", "no newline"}}},
		{"exactly the limit", []string{long + "\n"}, []criEntry{{"stdout", "F", long}}},
		{"limit, newline in the next write", []string{long, "\n"}, []criEntry{{"stdout", "F", long}}},
		{"one over the limit", []string{long + "y\n"}, []criEntry{{"stdout", "P", long}, {"stdout", "F", "y"}}},
		{"limit then more in the next write", []string{long, "y\n"}, []criEntry{{"stdout", "P", long}, {"stdout", "F", "y"}}},
		{"three pieces", []string{long + long + "zz\nnext\n"}, []criEntry{{"stdout", "P", long}, {"stdout", "P", long}, {"stdout", "F", "zz"}, {"stdout", "F", "next"}}},
		{"twice the limit at EOF", []string{long, long}, []criEntry{{"stdout", "P", long}, {"stdout", "F", long}}},
		{"nothing", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, path := newTestCRILog(t)
			s := newCRIStream(l, "stdout")
			s.partialAfter = time.Hour // splitting only: a slow machine writes no P for a pause
			for _, c := range tt.chunks {
				s.write([]byte(c))
			}
			s.close()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got := parseCRILog(t, data)
			if len(got) != len(tt.want) {
				t.Fatalf("%d entries, want %d: %+v", len(got), len(tt.want), got)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("entry %d: %s %s %d bytes %.20q, want %s %s %d bytes %.20q", i,
						got[i].stream, got[i].tag, len(got[i].content), got[i].content,
						tt.want[i].stream, tt.want[i].tag, len(tt.want[i].content), tt.want[i].content)
				}
			}
		})
	}
}

// TestCRIStreamWritesUnfinishedLine: a line without its end (a prompt,
// "echo -n") reaches the file as a P entry once the stream is quiet, and
// its end comes later as an entry of its own; nothing is written twice.
func TestCRIStreamWritesUnfinishedLine(t *testing.T) {
	l, path := newTestCRILog(t)
	s := newCRIStream(l, "stdout")
	s.partialAfter = time.Millisecond
	s.write([]byte("done\nhello"))
	var got []criEntry
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got = parseCRILog(t, data); len(got) == 2 {
			break
		}
	}
	if want := []criEntry{{"stdout", "F", "done"}, {"stdout", "P", "hello"}}; !slices.Equal(got, want) {
		t.Fatalf("entries %+v, want %+v", got, want)
	}
	s.write([]byte(" world\n"))
	s.close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []criEntry{{"stdout", "F", "done"}, {"stdout", "P", "hello"}, {"stdout", "F", " world"}}
	if got := parseCRILog(t, data); !slices.Equal(got, want) {
		t.Fatalf("entries %+v, want %+v", got, want)
	}
}

// TestCRIStreamsInterleaveByLine: two streams writing into one log at once,
// in pieces that split lines, give whole entries, each stream's in order.
func TestCRIStreamsInterleaveByLine(t *testing.T) {
	l, path := newTestCRILog(t)
	const lines = 2000
	// Both streams hold the file before either writes, as openSink's do
	// before their copiers start: a stream that closed alone would close it.
	streams := map[string]*criStream{}
	for _, name := range []string{"stdout", "stderr"} {
		streams[name] = newCRIStream(l, name)
		streams[name].partialAfter = time.Hour // whole lines however slowly the pieces come
	}
	var wg sync.WaitGroup
	for name, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.close()
			var buf bytes.Buffer
			for i := 0; i < lines; i++ {
				fmt.Fprintf(&buf, "%s line %d %s\n", name, i, strings.Repeat("-", i%300))
			}
			data := buf.Bytes()
			for len(data) > 0 { // uneven pieces, as pipe reads come
				n := min(len(data), 1+len(data)%997)
				s.write(data[:n])
				data = data[n:]
			}
		}()
	}
	wg.Wait()
	if l.f != nil {
		t.Fatal("log file still open after both streams closed")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	next := map[string]int{}
	for _, e := range parseCRILog(t, data) {
		want := fmt.Sprintf("%s line %d %s", e.stream, next[e.stream], strings.Repeat("-", next[e.stream]%300))
		if e.tag != "F" || e.content != want {
			t.Fatalf("%s entry %s %q, want F %q", e.stream, e.tag, e.content, want)
		}
		next[e.stream]++
	}
	if next["stdout"] != lines || next["stderr"] != lines {
		t.Fatalf("entries: %v, want %d of each", next, lines)
	}
}

// TestIOCRILogReopen: a real process's stdout and stderr into one crilog;
// after a rename and ReopenLog, new output goes to a new file at the path.
func TestIOCRILogReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	cfg := Config{Stdin: mkfifo(t, "stdin"), Stdout: CRILogPrefix + path, Stderr: CRILogPrefix + path}
	// Prints, waits for a line on stdin, prints again, ends without a
	// newline.
	cmd := exec.Command("sh", "-c", `echo out1; echo err1 >&2; read x; echo out2; printf err2 >&2`)
	sio := startWithIO(t, cfg, cmd)
	w := openStdinWriter(t, cfg.Stdin)

	waitFor(t, func() bool {
		data, _ := os.ReadFile(path)
		return bytes.Count(data, []byte("\n")) == 2
	})
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("log file: %v, %v; want mode 0640", fi.Mode(), err)
	}
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := sio.ReopenLog(); err != nil {
		t.Fatalf("ReopenLog: %v", err)
	}
	if _, err := w.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !sio.WaitOutput(ioTimeout) {
		t.Fatal("output did not drain")
	}

	check := func(p string, want map[string]string) {
		t.Helper()
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]criEntry{}
		for _, e := range parseCRILog(t, data) {
			got[e.stream] = append(got[e.stream], e)
		}
		for stream, w := range want {
			if s := joinEntries(got[stream]); s != w {
				t.Errorf("%s %s: %q, want %q", filepath.Base(p), stream, s, w)
			}
		}
	}
	check(rotated, map[string]string{"stdout": "out1\n", "stderr": "err1\n"})
	check(path, map[string]string{"stdout": "out2\n", "stderr": "err2\n"})
}

func TestIOReopenLogNotCRILog(t *testing.T) {
	fifos := makeFIFOs(t)
	sio := startWithIO(t, fifos.cfg, exec.Command("true"))
	if err := sio.ReopenLog(); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("ReopenLog on FIFO output: %v, want failed precondition", err)
	}
}

func TestCRILogFolderMustExist(t *testing.T) {
	_, err := New(Config{Stdout: CRILogPrefix + filepath.Join(t.TempDir(), "missing", "0.log")}, os.Getuid(), os.Getgid())
	if err == nil || !strings.Contains(err.Error(), "stdout") {
		t.Fatalf("New with a crilog in a missing folder: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FuzzCRIStream: any output, cut into any pieces, gives well-formed
// entries that join back into the output (with a newline ending a last
// unfinished line).
func FuzzCRIStream(f *testing.F) {
	f.Add([]byte("a\nb\n"), []byte{1, 2})
	f.Add(bytes.Repeat([]byte("x"), criLineMax+3), []byte{200, 0, 7})
	f.Add(append(bytes.Repeat([]byte("y"), criLineMax), '\n'), []byte{255})
	path := filepath.Join(f.TempDir(), "0.log") // one per fuzzing process, emptied each run
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		os.Remove(path)
		l, err := openCRILog(path)
		if err != nil {
			t.Fatal(err)
		}
		s := newCRIStream(l, "stderr")
		s.partialAfter = time.Hour
		rest := data
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(cuts) > 0 {
				n = min(n, 1+int(cuts[i%len(cuts)])*int(cuts[i%len(cuts)]))
			}
			s.write(rest[:n])
			rest = rest[n:]
		}
		s.close()
		out, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want := string(data)
		if len(want) > 0 && !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		entries := parseCRILog(t, out)
		if got := joinEntries(entries); got != want {
			t.Fatalf("entries join to %d bytes, want %d", len(got), len(want))
		}
		for _, e := range entries {
			if strings.Contains(e.content, "\n") {
				t.Fatal("an entry's content holds a newline")
			}
		}
	})
}
