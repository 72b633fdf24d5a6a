package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	bolt "go.etcd.io/bbolt"

	"github.com/berthrt/berth/namespaces"
)

// Helpers for the tests of every store in this package.

// badIdentifiers are names every store must refuse with ErrInvalidArgument,
// writing nothing.
var badIdentifiers = map[string]string{
	"empty":     "",
	"traversal": "../x",
	"slash":     "a/b",
	"long":      strings.Repeat("a", 300),
	"nul":       "a\x00b",
	"dot":       ".",
	"space":     "a b",
}

// newTestDB opens a fresh database in a folder that does not exist yet, and
// closes it when the test ends.
func newTestDB(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lib", "meta.db")
	db, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db, path
}

// nsCtx returns a context in namespace ns.
func nsCtx(ns string) context.Context {
	return namespaces.WithNamespace(context.Background(), ns)
}

// dump renders every bucket and key of db, one sorted line each, so that a
// test can compare the whole file before and after a call.
func dump(t *testing.T, db *DB) string {
	t.Helper()
	var lines []string
	var walk func(prefix string, b *bolt.Bucket)
	walk = func(prefix string, b *bolt.Bucket) {
		_ = b.ForEach(func(k, v []byte) error {
			name := prefix + "/" + string(k)
			if v == nil {
				lines = append(lines, name+"/")
				walk(name, b.Bucket(k))
				return nil
			}
			lines = append(lines, fmt.Sprintf("%s = %q", name, v))
			return nil
		})
	}
	err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			lines = append(lines, string(name)+"/")
			walk(string(name), b)
			return nil
		})
	})
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// requireClass fails the test unless err is of class.
func requireClass(t *testing.T, err, class error) {
	t.Helper()
	if !errors.Is(err, class) {
		t.Fatalf("error = %v, want class %q", err, class)
	}
}

// refusedUnchanged runs fn, requires an error of class, and requires that
// the database is byte for byte what it was before. It returns the error.
func refusedUnchanged(t *testing.T, db *DB, class error, fn func() error) error {
	t.Helper()
	before := dump(t, db)
	err := fn()
	requireClass(t, err, class)
	if after := dump(t, db); after != before {
		t.Fatalf("a refused call (%v) changed the database:\nbefore:\n%s\nafter:\n%s", err, before, after)
	}
	return err
}

// testSpec returns a small valid OCI spec as JSON.
func testSpec(t testing.TB, args ...string) []byte {
	t.Helper()
	if len(args) == 0 {
		args = []string{"sh"}
	}
	raw, err := json.Marshal(specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: args, Cwd: "/"},
		Root:    &specs.Root{Path: "rootfs"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// errorContains fails unless err's message contains every part.
func errorContains(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("error %v does not contain %q", err, p)
		}
	}
}

// requireNoErr stops the test on an unexpected error.
func requireNoErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
