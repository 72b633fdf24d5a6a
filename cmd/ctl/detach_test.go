package main

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// chunks is a reader that gives one chunk a Read, then io.EOF: input as a
// terminal delivers it, a key or a paste at a time.
type chunks [][]byte

func (c *chunks) Read(p []byte) (int, error) {
	if len(*c) == 0 {
		return 0, io.EOF
	}
	n := copy(p, (*c)[0])
	if n == len((*c)[0]) {
		*c = (*c)[1:]
	} else {
		(*c)[0] = (*c)[0][n:]
	}
	return n, nil
}

func TestDetachReader(t *testing.T) {
	const p, q = "\x10", "\x11" // ctrl-p, ctrl-q
	tests := []struct {
		name     string
		keys     string
		reads    []string
		want     string
		detached bool
	}{
		{"no sequence", "ctrl-p,ctrl-q", []string{"echo one\r", "ls\r"}, "echo one\rls\r", false},
		{"sequence in one read", "ctrl-p,ctrl-q", []string{"ab" + p + q + "cd"}, "ab", true},
		{"sequence split across reads", "ctrl-p,ctrl-q", []string{"ab" + p, q, "cd"}, "ab", true},
		{"a key a read", "ctrl-p,ctrl-q", []string{"a", p, q}, "a", true},
		{"prefix then another key", "ctrl-p,ctrl-q", []string{p + "x" + q}, p + "x" + q, false},
		{"prefix then another key, split", "ctrl-p,ctrl-q", []string{"a" + p, "x"}, "a" + p + "x", false},
		{"prefix twice, then the rest", "ctrl-p,ctrl-q", []string{p, p, q}, p, true},
		{"prefix at the end of input", "ctrl-p,ctrl-q", []string{"ab" + p}, "ab" + p, false},
		{"a match restarts inside a failed one", "ctrl-p,ctrl-p,ctrl-q", []string{p + p, p + q}, p, true},
		{"one key", "ctrl-a", []string{"x\x01y"}, "x", true},
		{"letters", "q,u,i,t", []string{"qu", "qui", "t!"}, "qu", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := parseDetachKeys(tt.keys)
			if err != nil {
				t.Fatal(err)
			}
			for _, oneByte := range []bool{false, true} {
				var in chunks
				for _, r := range tt.reads {
					in = append(in, []byte(r))
				}
				d := newDetachReader(&in, keys)
				var r io.Reader = d
				if oneByte {
					r = iotest.OneByteReader(d)
				}
				got, err := io.ReadAll(r)
				if string(got) != tt.want {
					t.Errorf("oneByte %v: passed on %q, want %q", oneByte, got, tt.want)
				}
				if tt.detached != errors.Is(err, errDetached) {
					t.Errorf("oneByte %v: error %v; detached: %v", oneByte, err, tt.detached)
				}
				select {
				case <-d.Detached():
					if !tt.detached {
						t.Errorf("oneByte %v: Detached closed without the sequence", oneByte)
					}
				default:
					if tt.detached {
						t.Errorf("oneByte %v: Detached not closed", oneByte)
					}
				}
				if _, err := d.Read(make([]byte, 8)); err == nil {
					t.Errorf("oneByte %v: Read after the end succeeded", oneByte)
				}
			}
		})
	}
}

// TestDetachReaderError: an error of the underlying reader comes after
// what was held back, and is no detach.
func TestDetachReaderError(t *testing.T) {
	boom := errors.New("boom")
	keys, _ := parseDetachKeys(defaultDetachKeys)
	d := newDetachReader(io.MultiReader(bytes.NewReader([]byte("a\x10")), iotest.ErrReader(boom)), keys)
	got, err := io.ReadAll(d)
	if string(got) != "a\x10" || !errors.Is(err, boom) {
		t.Errorf("got %q, %v; want %q, %v", got, err, "a\x10", boom)
	}
}

func TestParseDetachKeys(t *testing.T) {
	tests := []struct {
		in   string
		want []byte
		bad  bool
	}{
		{"", nil, false},
		{"ctrl-p,ctrl-q", []byte{0x10, 0x11}, false},
		{"CTRL-A,d", []byte{0x01, 'd'}, false},
		{"ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", []byte{0, 27, 28, 29, 30, 31}, false},
		{",", nil, true},
		{"ctrl-p,,ctrl-q", nil, true},
		{"ctrl-", nil, true},
		{"ctrl-1", nil, true},
		{"ctrl-pq", nil, true},
		{"pq", nil, true},
		{"alt-p", nil, true},
	}
	for _, tt := range tests {
		got, err := parseDetachKeys(tt.in)
		if tt.bad {
			var u usageError
			if !errors.As(err, &u) {
				t.Errorf("%q: error %v, want a usage error", tt.in, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Errorf("%q: %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

// TestDetachAfterInput: Detached is closed only once the bytes typed
// before the sequence were read, so a detach never drops pasted input;
// an empty Read returns at once.
func TestDetachAfterInput(t *testing.T) {
	keys, _ := parseDetachKeys(defaultDetachKeys)
	d := newDetachReader(bytes.NewReader([]byte("pasted line\n\x10\x11")), keys)
	if n, err := d.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty Read: %d, %v", n, err)
	}
	p := make([]byte, 4)
	n, err := d.Read(p)
	if err != nil || string(p[:n]) != "past" {
		t.Fatalf("first Read: %q, %v", p[:n], err)
	}
	select {
	case <-d.Detached():
		t.Fatal("Detached closed while input typed before the sequence was still unread")
	default:
	}
	rest, err := io.ReadAll(d)
	if string(rest) != "ed line\n" || !errors.Is(err, errDetached) {
		t.Fatalf("rest %q, %v", rest, err)
	}
	select {
	case <-d.Detached():
	default:
		t.Fatal("Detached not closed after the sequence was read")
	}
}
