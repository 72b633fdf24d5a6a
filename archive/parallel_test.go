package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/archive"
	"github.com/berthrt/berth/internal/testutil"
)

// TestMain runs every test of the package with Apply's workers on (three
// of them, whatever the machine's CPUs), so that the hostile-layer and
// fuzz tests go through the parallel path; the tests below compare it
// with the serial one.
func TestMain(m *testing.M) {
	archive.SetWorkers(3)
	os.Exit(m.Run())
}

// applyBoth applies layer onto a fresh root serially (no workers) and onto
// another in parallel (workers), and fails the test unless both fail with
// the same error or both succeed with the same tree.
func applyBoth(t *testing.T, layer []byte, withDirTimes bool, opts ...archive.ApplyOpt) (serial, parallel string, err error) {
	t.Helper()
	roots := [2]string{}
	var errs [2]error
	for i, n := range []int{0, 3} {
		roots[i] = filepath.Join(t.TempDir(), "root")
		if err := os.Mkdir(roots[i], 0o755); err != nil {
			t.Fatal(err)
		}
		restore := archive.SetWorkers(n)
		goroutines := runtime.NumGoroutine()
		_, errs[i] = archive.Apply(context.Background(), roots[i], bytes.NewReader(layer), opts...)
		// A worker that has said it is done may take a moment to end.
		for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > goroutines && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		if g := runtime.NumGoroutine(); g > goroutines {
			t.Errorf("workers %d: %d goroutines after Apply, %d before", n, g, goroutines)
		}
		restore()
	}
	msg := func(i int) string {
		if errs[i] == nil {
			return "<nil>"
		}
		return strings.ReplaceAll(errs[i].Error(), roots[i], "ROOT")
	}
	if msg(0) != msg(1) {
		t.Fatalf("serial: %s\nparallel: %s", msg(0), msg(1))
	}
	if errs[0] == nil {
		a, b := fullTree(t, roots[0], withDirTimes), fullTree(t, roots[1], withDirTimes)
		var diffs []string
		for k, v := range a {
			if b[k] != v {
				diffs = append(diffs, fmt.Sprintf("%s: serial %q, parallel %q", k, v, b[k]))
			}
		}
		for k, v := range b {
			if _, ok := a[k]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s: only parallel %q", k, v))
			}
		}
		slices.Sort(diffs)
		if len(diffs) > 0 {
			t.Fatalf("trees differ:\n%s", strings.Join(diffs, "\n"))
		}
	}
	return roots[0], roots[1], errs[1]
}

// fullTree is tree with each file's link count and which other names
// share its inode.
func fullTree(t *testing.T, root string, withDirTimes bool) map[string]string {
	t.Helper()
	out := tree(t, root, withDirTimes)
	inodes := map[uint64][]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		inodes[st.Ino] = append(inodes[st.Ino], rel)
		return nil
	})
	for _, names := range inodes {
		for _, n := range names {
			out[n] += fmt.Sprintf(" links=%v", names)
		}
	}
	return out
}

// TestApplyParallelOrder applies layers whose entries depend on a file
// made just before (the hazards of making small files in parallel) with
// and without workers: the results must be the same.
func TestApplyParallelOrder(t *testing.T) {
	testutil.RequireRoot(t)
	big := strings.Repeat("B", 1<<20+1) // written by the reading goroutine
	longBase := "d/" + strings.Repeat("n", 300)
	setgid := dir("d/")
	setgid.hdr.Mode, setgid.hdr.Gid = 0o2775, 5
	many := []ent{dir("d/")}
	for i := range 300 {
		many = append(many, file(fmt.Sprintf("d/f%d", i%40), fmt.Sprint(i)))
	}
	// Every folder has a header of its own in these layers: a folder the
	// layer does not name gets the time of the apply, which differs
	// between the two applies compared when they straddle a second.
	tests := []struct {
		name    string
		entries []ent
		opts    []archive.ApplyOpt
		wantErr bool
		check   func(t *testing.T, root string)
	}{
		{name: "same name twice", entries: []ent{dir("d/"), file("d/a", "1"), file("d/b", "b"), file("d/a", "2")},
			check: wantFile("d/a", "2")},
		{name: "same name many times", entries: many, check: wantFile("d/f39", "279")},
		{name: "small then big then small", entries: []ent{dir("d/"), file("d/a", "1"), file("d/a", big), file("d/a", "3")},
			check: wantFile("d/a", "3")},
		{name: "big then small", entries: []ent{dir("d/"), file("d/a", big), file("d/a", "s")}, check: wantFile("d/a", "s")},
		{name: "hardlink to a file just written", entries: []ent{dir("d/"), file("d/a", "x"), hardlink("d/b", "d/a"), hardlink("e", "d/a")},
			check: func(t *testing.T, root string) {
				if st := statT(t, filepath.Join(root, "d/a")); st.Nlink != 3 {
					t.Errorf("d/a has %d links, want 3", st.Nlink)
				}
			}},
		{name: "file over a hardlink", entries: []ent{dir("d/"), file("d/a", "x"), hardlink("d/b", "d/a"), file("d/b", "y")},
			check: wantFile("d/a", "x")},
		{name: "whiteout after a file", entries: []ent{dir("d/"), file("d/a", "x"), file("d/b", "y"), file("d/.wh.a", "")},
			check: wantAbsent("d/a")},
		{name: "whiteout of the folder", entries: []ent{dir("d/"), dir("d/s/"), file("d/s/a", "x"), file("d/.wh.s", ""), file("d/s/b", "y")},
			check: wantAbsent("d/s/a")},
		{name: "opaque after files", entries: []ent{dir("d/"), file("d/a", "x"), file("d/.wh..wh..opq", ""), file("d/b", "y")},
			check: wantFile("d/a", "x")},
		{name: "overlay whiteout after a file", entries: []ent{dir("d/"), file("d/a", "x"), file("d/.wh.a", "")},
			opts: []archive.ApplyOpt{archive.WithConvention(archive.Overlay)}},
		{name: "folder replaces a file", entries: []ent{dir("d/"), file("d/a", "x"), dir("d/a/"), file("d/a/b", "y")},
			check: wantFile("d/a/b", "y")},
		{name: "file replaces a folder", entries: []ent{dir("d/s/"), file("d/s/x", "x"), dir("d/"), file("d/s", "now a file")},
			check: wantFile("d/s", "now a file")},
		{name: "file under a file", entries: []ent{dir("d/"), file("d/a", "x"), file("d/a/b", "y")}, wantErr: true},
		{name: "symlink replaces a file", entries: []ent{dir("etc/"), dir("d/"), file("d/a", "x"), symlink("d/a", "/etc"), file("d/a/b", "y")},
			check: wantFile("etc/b", "y")},
		{name: "file through a symlink to its folder", entries: []ent{dir("d/"), symlink("l", "d"), file("d/a", "1"), file("l/a", "2"), file("d/a", "3"), file("l/a", "4")},
			check: wantFile("d/a", "4")},
		{name: "folder's metadata after its files", entries: []ent{dir("d/"), file("d/a", "x"), setgid, file("d/b", "y")}},
		{name: "a worker's file fails", entries: []ent{dir("d/"), file("d/a", "x"), file(longBase, "y"), file("d/b", "z"), dir("e/"), file("e/c", "w")}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			layer := tarOf(t, tc.entries...)
			_, root, err := applyBoth(t, layer, true, tc.opts...)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Apply: %v, want error %v", err, tc.wantErr)
			}
			if tc.check != nil {
				tc.check(t, root)
			}
		})
	}
}

func wantFile(name, body string) func(t *testing.T, root string) {
	return func(t *testing.T, root string) {
		t.Helper()
		if data, err := os.ReadFile(filepath.Join(root, name)); err != nil || string(data) != body {
			t.Errorf("%s: %.20q %v, want %.20q", name, data, err, body)
		}
	}
}

func wantAbsent(name string) func(t *testing.T, root string) {
	return func(t *testing.T, root string) {
		t.Helper()
		if _, err := os.Lstat(filepath.Join(root, name)); err == nil {
			t.Errorf("%s exists", name)
		}
	}
}

// TestApplyParallelRandom applies random layers over a few names (files,
// folders, symlinks, hardlinks, whiteouts and opaque markers mixed, the
// same name often several times) with and without workers: same results.
func TestApplyParallelRandom(t *testing.T) {
	testutil.RequireRoot(t)
	applyRandom(t, 300)
}

// TestApplyParallelHeld applies the layers of TestApplyParallelOrder and
// TestApplyParallelRandom with every file kept in flight until the
// reading goroutine waits for the workers: each entry after a worker's
// file meets it in flight, which the drain rules must see.
func TestApplyParallelHeld(t *testing.T) {
	testutil.RequireRoot(t)
	defer archive.HoldWorkers()()
	t.Run("order", TestApplyParallelOrder)
	t.Run("random", func(t *testing.T) { applyRandom(t, 300) })
	t.Run("many", TestApplyParallelManyFiles)
}

// applyRandom applies n random layers with and without workers.
func applyRandom(t *testing.T, n int) {
	rng := rand.New(rand.NewPCG(15, 1))
	dirs := []string{"", "a/", "a/b/", "c/", "l/"}
	bases := []string{"f", "g", "h", "a", "b", "l"}
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	for i := range n {
		var entries []ent
		for range 5 + rng.IntN(40) {
			name := pick(dirs) + pick(bases)
			var e ent
			switch k := rng.IntN(20); {
			case k < 11 && rng.IntN(40) == 0:
				e = file(name, strings.Repeat("x", 1<<20+rng.IntN(2))) // not a worker's
			case k < 11:
				e = file(name, strings.Repeat(string(rune('a'+rng.IntN(26))), rng.IntN(3)))
			case k < 14:
				e = dir(name + "/")
			case k < 16:
				e = symlink(name, pick([]string{"/a", "../c", "a/b", "/c/f", "f", "../../l"}))
			case k < 18:
				e = hardlink(name, pick(dirs)+pick(bases))
			case k < 19:
				e = file(pick(dirs)+".wh."+pick(bases), "")
			default:
				e = file(pick(dirs)+".wh..wh..opq", "")
			}
			e.hdr.Mode = []int64{0o644, 0o755, 0o600, 0o4755}[rng.IntN(4)]
			e.hdr.ModTime = time.Unix(1700000000+int64(rng.IntN(1000)), 0)
			entries = append(entries, e)
		}
		var opts []archive.ApplyOpt
		if i%2 == 1 {
			opts = append(opts, archive.WithConvention(archive.Overlay))
		}
		ok := t.Run(fmt.Sprint(i), func(t *testing.T) {
			applyBoth(t, tarOf(t, entries...), false, opts...)
		})
		if !ok {
			var b strings.Builder
			for _, e := range entries {
				fmt.Fprintf(&b, "%c %s %s %d\n", e.hdr.Typeflag, e.hdr.Name, e.hdr.Linkname, len(e.body))
			}
			t.Fatalf("layer %d:\n%s", i, b.String())
		}
	}
}

// TestApplyParallelManyFiles: a layer of many small files in many folders
// (the small-files image's shape) comes out the same with workers.
func TestApplyParallelManyFiles(t *testing.T) {
	testutil.RequireRoot(t)
	var entries []ent
	for d := range 20 {
		entries = append(entries, dir(fmt.Sprintf("d%02d/", d)))
		for f := range 50 {
			body := bytes.Repeat([]byte{byte(d), byte(f)}, 500+d*f)
			e := file(fmt.Sprintf("d%02d/f%02d", d, f), string(body))
			if f%7 == 0 {
				e.hdr.Mode = 0o4755 // set apart: fchmod after the write
			}
			if f%11 == 0 {
				e.hdr.Uid, e.hdr.Gid = 1000, 1000
			}
			if f%13 == 0 {
				e.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.test": "v"}
			}
			entries = append(entries, e)
		}
	}
	if _, _, err := applyBoth(t, tarOf(t, entries...), true); err != nil {
		t.Fatal(err)
	}
}

// FuzzApplyParallel decodes its input into a layer over a few names
// (three bytes an entry: kind, name, link target or size; a last byte
// for the convention and whether files are held in flight, HoldWorkers)
// and applies it with and without workers: same error, same tree. Its seeds are hazards
// of the parallel path; `go test -fuzz FuzzApplyParallel` explores more.
func FuzzApplyParallel(f *testing.F) {
	for _, s := range []string{
		"\x00\x01\x00\x03\x01\x00\x00\x06\x00",             // file a/f, dir a, file a/g
		"\x00\x02\x00\x05\x01\x03\x00\x02\x00",             // file under a, symlink over it, file through it
		"\x00\x01\x00\x00\x01\x01\x07\x01\x00\x00\x01\x00", // the same name, whiteout, again
		"\x00\x08\x00\x06\x02\x08\x00\x08\x01",             // hardlink to a file in flight
		"\x00\x01\x00\x00\x02\x00\x08\x01\x00\x00\x03\x00", // opaque marker with files in flight
	} {
		f.Add([]byte(s))
		f.Add([]byte(s + "\x02")) // held in flight
		f.Add([]byte(s + "\x03")) // held, overlay
	}
	dirs := []string{"", "a/", "a/b/", "c/", "l/", "a/b/c/d/e/"}
	bases := []string{"f", "g", "a", "b", "l", "c"}
	targets := []string{"/a", "../c", "a/b", "/c/f", "f", "../../l", "a", "/"}
	f.Fuzz(func(t *testing.T, data []byte) {
		testutil.RequireRoot(t)
		var entries []ent
		for ; len(data) >= 3 && len(entries) < 64; data = data[3:] {
			kind, n, x := data[0], int(data[1]), int(data[2])
			name := dirs[n%len(dirs)] + bases[n/len(dirs)%len(bases)]
			var e ent
			switch kind % 10 {
			case 0, 1, 2:
				e = file(name, strings.Repeat("x", x%4))
			case 3:
				e = file(name, strings.Repeat("y", 1<<20+x%2)) // the reading goroutine's
			case 4:
				e = dir(name + "/")
			case 5:
				e = symlink(name, targets[x%len(targets)])
			case 6:
				e = hardlink(name, dirs[x%len(dirs)]+bases[x/len(dirs)%len(bases)])
			case 7:
				e = file(dirs[n%len(dirs)]+".wh."+bases[x%len(bases)], "")
			case 8:
				e = file(dirs[n%len(dirs)]+".wh..wh..opq", "")
			default:
				e = file(name, "z")
				e.hdr.Mode = 0o4755
				e.hdr.Uid, e.hdr.Gid = x, x
				e.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.k": strings.Repeat("v", x)}
			}
			if kind >= 10 {
				e.hdr.Mode = []int64{0o644, 0o755, 0o600, 0o2775}[int(kind/10)%4]
			}
			e.hdr.ModTime = time.Unix(1700000000+int64(x), 0)
			entries = append(entries, e)
		}
		var opts []archive.ApplyOpt
		if len(data) > 0 && data[0]%2 == 1 {
			opts = append(opts, archive.WithConvention(archive.Overlay))
		}
		if len(data) > 0 && data[0]&2 != 0 {
			defer archive.HoldWorkers()() // every entry meets the files before it in flight
		}
		// Folders made for an entry without one of their own have
		// the time they were made: only TestApplyParallelOrder, whose
		// layers have none, compares folders' times.
		applyBoth(t, tarOf(t, entries...), false, opts...)
	})
}

// TestApplyParallelXattrMemory: files of no data but about 640 KiB of
// xattrs each (the most a PAX header takes is 1 MiB) count in the bound
// of what the files in flight hold: the reading goroutine waits for room
// with at most archive.MaxInFlight held, not at 256 files (160 MiB).
func TestApplyParallelXattrMemory(t *testing.T) {
	testutil.RequireRoot(t)
	const perFile = 10 * 64 << 10
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		for i := range 300 {
			recs := map[string]string{}
			for k := range 10 {
				recs[fmt.Sprintf("SCHILY.xattr.user.k%d", k)] = strings.Repeat("v", 64<<10)
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("f%d", i), Mode: 0o644, PAXRecords: recs}); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(tw.Close())
	}()
	release := make(chan struct{})
	var once sync.Once
	held := -1
	defer archive.SetHooks(func(files, bytes int) {
		once.Do(func() {
			held = files * perFile
			close(release) // the workers may go on
		})
	}, func(int) { <-release }, nil)()
	root := t.TempDir()
	_, err := archive.Apply(context.Background(), root, pr)
	once.Do(func() { close(release) })
	// The filesystem may refuse xattrs that large: only the bound is
	// tested.
	t.Logf("Apply: %v", err)
	if held < 0 || held > archive.MaxInFlight+perFile {
		t.Errorf("the reading goroutine waited with %d bytes of xattrs in flight, want at most %d (-1: it never waited)", held, archive.MaxInFlight+perFile)
	}
}

// TestApplyParallelFirstError: when a worker's file fails, an earlier
// entry's file that another worker has yet to make is still made, and its
// failure is the one returned, as without workers.
func TestApplyParallelFirstError(t *testing.T) {
	testutil.RequireRoot(t)
	later := make(chan struct{})
	defer archive.SetHooks(nil, func(index int) {
		if index == 3 {
			<-later // entry 4 fails first
		}
	}, func(index int, err error) {
		if index == 4 {
			close(later)
		}
	})()
	// The folders are there before: a folder to make waits for the
	// files in flight.
	layer := tarOf(t, dir("a/"), dir("b/"), file("a/"+strings.Repeat("n", 300), "1"), file("b/"+strings.Repeat("m", 300), "2"))
	_, _, err := applyBoth(t, layer, true)
	if err == nil || !strings.Contains(err.Error(), "nnn") {
		t.Errorf("Apply: %v, want entry 3's failure", err)
	}
}

// TestApplyParallelDeep: files deep in folders, or of long names, are
// made by the reading goroutine (a file in flight costs a map update for
// each folder on its path), with the same result; a shallow one still
// goes to a worker.
func TestApplyParallelDeep(t *testing.T) {
	testutil.RequireRoot(t)
	var jobs atomic.Int32
	defer archive.SetHooks(nil, func(int) { jobs.Add(1) }, nil)()
	deep := strings.Repeat("a/", 40)
	long := strings.Repeat(strings.Repeat("l", 250)+"/", 5)
	var entries []ent
	for i := range 20 {
		entries = append(entries, file(fmt.Sprintf("%sf%d", deep, i), "d"), file(fmt.Sprintf("%sf%d", long, i), "l"))
	}
	entries = append(entries, file(deep+"f3", "again"), file("shallow", "s"))
	if _, _, err := applyBoth(t, tarOf(t, entries...), false); err != nil {
		t.Fatal(err)
	}
	if n := jobs.Load(); n != 1 {
		t.Errorf("%d files made by workers, want 1 (shallow)", n)
	}
}

// TestApplyParallelStops: a worker's failure while the reading goroutine
// waits for room (256 files in flight), and a cancellation while files
// are in flight, end Apply with that error and leave no goroutine.
func TestApplyParallelStops(t *testing.T) {
	testutil.RequireRoot(t)
	for _, cancelled := range []bool{false, true} {
		t.Run(fmt.Sprint("cancelled=", cancelled), func(t *testing.T) {
			second := file("d/"+strings.Repeat("n", 300), "fails")
			if cancelled {
				second = file("d/g", "made")
			}
			entries := []ent{dir("d/"), second}
			for i := range 400 {
				entries = append(entries, file(fmt.Sprintf("d/f%d", i), "x"))
			}
			layer := tarOf(t, entries...)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			full := make(chan struct{})
			var once sync.Once
			defer archive.SetHooks(func(files, bytes int) {
				once.Do(func() { close(full) })
			}, func(index int) {
				if index == 2 {
					if cancelled {
						cancel()
					} else {
						<-full // fail once the reading goroutine waits
					}
				}
			}, nil)()
			goroutines := runtime.NumGoroutine()
			_, err := archive.Apply(ctx, t.TempDir(), bytes.NewReader(layer))
			switch {
			case cancelled && !errors.Is(err, context.Canceled):
				t.Errorf("Apply: %v, want the cancellation", err)
			case !cancelled && (err == nil || !strings.Contains(err.Error(), "nnn")):
				t.Errorf("Apply: %v, want entry 2's failure", err)
			}
			for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > goroutines && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			if g := runtime.NumGoroutine(); g > goroutines {
				t.Errorf("%d goroutines after Apply, %d before", g, goroutines)
			}
		})
	}
}
