package local

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
)

// A process that dies with a Writer open leaves its ingest; the store of
// the next process resumes it, and removes half-made ingest folders.
func TestResumeAfterCrash(t *testing.T) {
	root := t.TempDir()
	s, err := NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	p := bytes.Repeat([]byte("berth"), 1000)
	desc := ocispec.Descriptor{Digest: digest.FromBytes(p), Size: int64(len(p))}
	w, err := s.Writer(context.Background(), content.WithRef("crash"), content.WithDescriptor(desc))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(p[:1234]); err != nil {
		t.Fatal(err)
	}
	// The "crash": w is never closed; a half-made ingest lies about too.
	if err := os.Mkdir(filepath.Join(root, "ingest", tmpPrefix+"123"), dirMode); err != nil {
		t.Fatal(err)
	}

	s2, err := NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "ingest", tmpPrefix+"123")); !os.IsNotExist(err) {
		t.Fatalf("half-made ingest not removed: %v", err)
	}
	w2, err := s2.Writer(context.Background(), content.WithRef("crash"), content.WithDescriptor(desc))
	if err != nil {
		t.Fatal(err)
	}
	st, err := w2.Status()
	if err != nil || st.Offset != 1234 {
		t.Fatalf("resumed at %+v, %v; want 1234", st, err)
	}
	if _, err := w2.Write(p[1234:]); err != nil {
		t.Fatal(err)
	}
	if err := w2.Commit(context.Background(), desc.Size, desc.Digest); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(root, "blobs", "sha256", desc.Digest.Encoded()))
	if err != nil || fi.Mode().Perm() != blobMode || fi.Size() != desc.Size {
		t.Fatalf("blob: %v, %v", fi, err)
	}
}

// Hostile refs name no path: every file the store makes is under its
// root, in the folders of the layout.
func TestRefsNameNoPath(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "content")
	s, err := NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"../x", "../../escape", "/etc/passwd", "a/../../b", strings.Repeat("../", 300)} {
		w, err := s.Writer(context.Background(), content.WithRef(ref))
		if err != nil {
			t.Fatalf("Writer(%.20q): %v", ref, err)
		}
		if _, err := w.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	err = filepath.WalkDir(parent, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		parts := strings.Split(rel, string(filepath.Separator))
		switch {
		case path == parent || rel == "." || rel == "blobs" || rel == "ingest":
		case len(parts) == 2 && parts[0] == "ingest" && len(parts[1]) == 64:
		case len(parts) == 3 && parts[0] == "ingest" && (parts[2] == "meta" || parts[2] == "data"):
		default:
			t.Errorf("unexpected file %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A damaged meta file is an internal error, never a panic or a ref that
// names a path.
func FuzzParseMeta(f *testing.F) {
	f.Add([]byte(`{"ref":"layer-1","total":10,"expected":"sha256:` + strings.Repeat("a", 64) + `","startedat":"2024-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"ref":"../x"}`))
	f.Add([]byte(`{"ref":"a\u0000b"}`))
	f.Add([]byte(`{"ref":"x","total":-1}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := parseMeta(raw)
		if err != nil {
			return
		}
		if content.ValidateRef(m.Ref) != nil || m.Total < 0 || (m.Expected != "" && m.Expected.Validate() != nil) {
			t.Fatalf("parseMeta accepted %+v", m)
		}
		_ = m.StartedAt.Add(time.Second)
	})
}
