package diff

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// TestReadaheadHash reads a stream of several chunks, written and read in
// odd sizes, through readahead with and without a hash: the same bytes
// come out, and the hash, complete after Close, is theirs.
func TestReadaheadHash(t *testing.T) {
	data := make([]byte, 5*readaheadChunk+12345)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, withHash := range []bool{false, true} {
		h := sha256.New()
		var hash io.Writer
		if withHash {
			hash = h
		}
		ra := newReadahead(hash, func(w io.Writer) error {
			for p := data; len(p) > 0; {
				n := min(len(p), 1+rng.IntN(300<<10))
				if _, err := w.Write(p[:n]); err != nil {
					return err
				}
				p = p[n:]
			}
			return nil
		})
		var got bytes.Buffer
		buf := make([]byte, 77777)
		for {
			n, err := ra.Read(buf)
			got.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		ra.Close()
		if !bytes.Equal(got.Bytes(), data) {
			t.Fatalf("hash %v: read %d bytes, not the %d written", withHash, got.Len(), len(data))
		}
		if want := sha256.Sum256(data); withHash && !bytes.Equal(h.Sum(nil), want[:]) {
			t.Errorf("hash %x, want %x", h.Sum(nil), want)
		}
	}
}

// TestReadaheadStop: a reader that stops early and closes ends the
// producer and the hasher, and a producer's error reaches the reader.
func TestReadaheadStop(t *testing.T) {
	before := runtime.NumGoroutine()
	ra := newReadahead(sha256.New(), func(w io.Writer) error {
		for {
			if _, err := w.Write(make([]byte, 100<<10)); err != nil {
				return err
			}
		}
	})
	if _, err := ra.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	ra.Close()
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Errorf("%d goroutines after Close, %d before", g, before)
	}
	boom := errors.New("boom")
	ra = newReadahead(sha256.New(), func(w io.Writer) error {
		w.Write(make([]byte, readaheadChunk+1))
		return boom
	})
	defer ra.Close()
	if _, err := io.Copy(io.Discard, ra); !errors.Is(err, boom) {
		t.Errorf("read: %v, want %v", err, boom)
	}
}
