package integration

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/internal/testimage"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/oci"
	"github.com/berthrt/berth/snapshots"
)

// layeredImageRef names the image of layeredArchive.
const layeredImageRef = "example.com/test/layered:1"

// layeredArchive returns an OCI archive of three layers over busybox: the
// second deletes a file of the first (whiteout) and empties a folder
// (opaque) before adding to it, the third deletes a folder of the first.
// Its config sets a working directory and no environment, so the
// container's PATH is the spec's default. want is what
// `find /data /keep /opq` prints in a container of it, sorted.
func layeredArchive(t *testing.T) (data []byte, want string) {
	t.Helper()
	base, err := testimage.BusyboxEntries("")
	if err != nil {
		t.Fatal(err)
	}
	base = append(base,
		testimage.Dir("data"), testimage.File("data/a", "a"), testimage.File("data/b", "b"),
		testimage.Dir("keep"), testimage.File("keep/x", "x"), testimage.Dir("keep/gone"), testimage.File("keep/gone/y", "y"),
		testimage.Dir("opq"), testimage.File("opq/old1", "1"), testimage.Dir("opq/sub"), testimage.File("opq/sub/old2", "2"),
	)
	img, err := testimage.Build(ocispec.ImageConfig{WorkingDir: "/data", Cmd: []string{"sh"}},
		base,
		[]testimage.Entry{testimage.Whiteout("data/a"), testimage.Opaque("opq"), testimage.File("opq/new", "n"), testimage.File("data/c", "c")},
		[]testimage.Entry{testimage.Whiteout("keep/gone"), testimage.File("data/d", "d")},
	)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := img.WriteOCIArchive(&buf, layeredImageRef); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), strings.Join([]string{"/data", "/data/b", "/data/c", "/data/d", "/keep", "/keep/x", "/opq", "/opq/new"}, "\n") + "\n"
}

// TestUnpackRunImage imports a layered image (unpacked by the import) into
// each built-in snapshotter and runs containers of it: one sees exactly
// the files the layers leave; ten share the image's layers and write
// without seeing each other's writes; a read-only view refuses writes
// (EROFS). Deleting the containers with their snapshots and the image
// leaves no snapshot after the collection.
func TestUnpackRunImage(t *testing.T) {
	testutil.RequireRoot(t, "runc", "busybox")
	arch, want := layeredArchive(t)
	d := newDaemon(t)
	for _, name := range []string{"overlayfs", "native"} {
		t.Run(name, func(t *testing.T) {
			ns := "unpack-" + name
			ctx := d.nsContext(ns)
			c := d.client(t, ns)
			sn := c.SnapshotService(name)
			var progress progressLog
			imgs, err := c.Import(ctx, bytes.NewReader(arch), archive.WithUnpack(name), archive.WithProgress(progress.add))
			if err != nil {
				t.Fatal(err)
			}
			if len(imgs) != 1 || imgs[0].Name() != layeredImageRef {
				t.Fatalf("imported %v", imgs)
			}
			img := imgs[0]
			unpacked := map[string]bool{}
			for _, p := range progress.list {
				if strings.HasPrefix(p.Ref, "unpack-") {
					unpacked[p.Ref] = true
				}
			}
			if len(unpacked) != 3 {
				t.Errorf("unpack reports for %d layers, want 3: %v", len(unpacked), unpacked)
			}
			chainID, err := img.ChainID(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sn.Stat(ctx, chainID); err != nil {
				t.Fatalf("the image's top snapshot after import: %v", err)
			}

			// One container sees exactly what the layers leave, in the
			// image's working directory, with the default PATH.
			out, code := runFromImage(t, ctx, d, c, "files", img, name, false,
				"sh", "-c", "pwd; echo $PATH; find /data /keep /opq | sort")
			wantOut := "/data\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n" + want
			if code != 0 || out != wantOut {
				t.Errorf("exit %d, output:\n%s\nwant:\n%s", code, out, wantOut)
			}

			// Ten containers share the layers; each writes its own file
			// and a shared path, and sees only its own.
			const n = 10
			var wg sync.WaitGroup
			outs, codes := make([]string, n), make([]uint32, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					id := fmt.Sprintf("w%d", i)
					outs[i], codes[i] = runFromImage(t, ctx, d, c, id, img, name, false,
						"sh", "-c", "echo "+id+" > /data/mine && touch /mine-"+id+" && cat /data/mine && ls / | grep -c ^mine-")
				}()
			}
			wg.Wait()
			for i := range n {
				if w := fmt.Sprintf("w%d\n1\n", i); codes[i] != 0 || outs[i] != w {
					t.Errorf("container w%d: exit %d, output %q, want %q", i, codes[i], outs[i], w)
				}
			}
			// The image's layers are committed once, each container's
			// snapshot an active child of the top one.
			kinds := map[snapshots.Kind]int{}
			if err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
				kinds[info.Kind]++
				if info.Kind == snapshots.KindActive && info.Parent != chainID {
					t.Errorf("snapshot %s: parent %q, want the image's %s", info.Name, info.Parent, chainID)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if kinds[snapshots.KindCommitted] != 3 || kinds[snapshots.KindActive] != n+1 {
				t.Errorf("snapshots by kind: %v, want 3 committed and %d active", kinds, n+1)
			}

			// A read-only view cannot be written.
			out, code = runFromImage(t, ctx, d, c, "view", img, name, true, "sh", "-c", "touch /data/x 2>&1; touch /new 2>&1")
			if code == 0 || strings.Count(out, "Read-only file system") != 2 {
				t.Errorf("writes to a view: exit %d, output %q, want EROFS twice", code, out)
			}

			// Containers deleted with their snapshots, then the image:
			// the collection leaves no snapshot.
			ctrs, err := c.Containers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, ctr := range ctrs {
				if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil {
					t.Errorf("delete %s: %v", ctr.ID(), err)
				}
			}
			if err := c.DeleteImage(ctx, img.Name(), client.SynchronousDelete()); err != nil {
				t.Fatal(err)
			}
			var left []string
			if err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
				left = append(left, info.Name)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(left) != 0 {
				t.Errorf("snapshots after deleting the containers and the image: %v", left)
			}
		})
	}
}

// runFromImage creates container id on a new snapshot of img (a view when
// view) in snapshotter sn, runs args in it and returns its combined
// output and exit status. The task is deleted before it returns; the
// container, with its snapshot, at the end of the test unless the test
// deleted it.
func runFromImage(t *testing.T, ctx context.Context, d *daemon, c *client.Client, id string, img *client.Image, sn string, view bool, args ...string) (string, uint32) {
	t.Helper()
	snapshot := client.WithNewSnapshot(id, img)
	if view {
		snapshot = client.WithNewSnapshotView(id, img)
	}
	ctr, err := c.NewContainer(ctx, id, client.WithImage(img), client.WithSnapshotter(sn), snapshot,
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs(args...)))
	if err != nil {
		t.Error(err)
		return "", 255
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		ctr.Delete(ctx, client.WithSnapshotCleanup) // NotFound once the test deleted it
	})
	var out testutil.Buffer
	task, err := ctr.NewTask(ctx, d.creator(nil, &out, &out))
	if err != nil {
		t.Error(err)
		return "", 255
	}
	defer func() {
		if _, err := task.Delete(context.WithoutCancel(ctx), client.WithProcessKill); err != nil {
			t.Errorf("delete task %s: %v", id, err)
		}
	}()
	exitc, err := task.Wait(ctx)
	if err != nil {
		t.Error(err)
		return "", 255
	}
	if err := task.Start(ctx); err != nil {
		t.Error(err)
		return "", 255
	}
	select {
	case st := <-exitc:
		if pio := task.IO(); pio != nil {
			pio.Wait()
		}
		return out.String(), st.ExitCode()
	case <-time.After(time.Minute): // a bound for a hung container, not a speed check
		t.Errorf("container %s: no exit", id)
		return out.String(), 255
	}
}
