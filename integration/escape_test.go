package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/oci"
)

// plantHostile is what the containers of TestHostEscapeRefused do as root
// in their own root filesystem: a setuid-root copy of busybox (named so
// that busybox still picks its applet from the first argument), a device
// node any user may open, and /block, the file a Compare is held on.
const plantHostile = "cp /bin/busybox /busybox-suid && chmod 4755 /busybox-suid && " +
	"mknod -m 666 /node c 1 3 && echo block > /block && echo planted && exec sleep 600"

// TestHostEscapeRefused is the CVE-2021-41103 class: a root process in a
// container plants a setuid-root binary and a device node in its own root
// filesystem, and an unprivileged host user (nobody) tries to reach them
// through every path berth makes to a container's files: the bundle's
// rootfs under the state folder, the snapshot folders of overlayfs and
// native under the root, and the temporary mount a commit reads the
// running container through. Each must fail on the way there (EACCES),
// also for an install whose folders an earlier berth made with looser
// modes: the daemon tightens them when it starts.
func TestHostEscapeRefused(t *testing.T) {
	testutil.RequireRoot(t, "su") // util-linux
	d := newDaemon(t)
	const ns = "escape"
	ctx := d.nsContext(ns)
	c := d.client(t, ns)
	for _, sn := range []string{"overlayfs", "native"} {
		importBusybox(t, ctx, c, sn)
	}
	img, err := c.GetImage(ctx, commitBase)
	if err != nil {
		t.Fatal(err)
	}
	plant(t, ctx, d, c, "over", img, "overlayfs")
	overUpper := snapshotDir(t, ctx, c, "overlayfs", "over")

	// An install of an earlier berth: the daemon is replaced while the
	// container runs, and finds folders anyone may enter. The test's own
	// temporary parents are opened up too, as /var/lib and /run are.
	d.kill()
	for _, dir := range []string{filepath.Dir(d.root), d.root, d.state} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	lib := filepath.Join(d.root, "lib")
	loosen := []string{lib, d.bundle(ns, "over"), filepath.Join(d.state, ns), filepath.Dir(overUpper)}
	for _, sn := range []string{"overlayfs", "native"} {
		loosen = append(loosen, filepath.Join(lib, "snapshots"), filepath.Join(lib, "snapshots", sn), filepath.Join(lib, "snapshots", sn, "snapshots"))
	}
	for _, dir := range loosen {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d.start()
	c = d.client(t, ns)
	plant(t, ctx, d, c, "nat", img, "native") // made by the new daemon

	// nobody can run programs at all, so a refusal below is the path's.
	if out, err := asNobody(`id -u`); err != nil || out != "65534\n" {
		t.Fatalf("su nobody: id -u printed %q (%v), want 65534", out, err)
	}
	natDir := snapshotDir(t, ctx, c, "native", "nat")
	for _, p := range []struct{ what, dir string }{
		{"the overlayfs bundle's rootfs", filepath.Join(d.bundle(ns, "over"), "rootfs")},
		{"the native bundle's rootfs", filepath.Join(d.bundle(ns, "nat"), "rootfs")},
		{"the overlayfs snapshot's upper folder", overUpper},
		{"the native snapshot's folder", natDir},
	} {
		probeRefused(t, p.what, p.dir)
	}

	// A commit of the running container mounts its snapshot read-only to
	// read it. The commit is held while it reads /block (a fanotify
	// permission event on the upper folder's file, answered only after
	// the probe), so the temporary mount is there while nobody tries it.
	held := holdOpen(t, filepath.Join(overUpper, "block"))
	done := make(chan error, 1)
	go func() {
		_, err := c.Commit(ctx, "over", "localhost/escape:commit")
		done <- err
	}()
	select {
	case <-held.opened:
	case err := <-done:
		t.Fatalf("commit ended (%v) without reading /block", err)
	case <-ctx.Done():
		t.Fatal("commit never read /block")
	}
	tmp := tempMountOf(t, overUpper)
	if !strings.HasPrefix(tmp, lib+"/") {
		t.Errorf("the commit's temporary mount %s is not under berthd's root %s", tmp, lib)
	}
	probeRefused(t, "the commit's temporary mount", tmp)
	held.release()
	if err := <-done; err != nil {
		t.Fatalf("commit: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(lib, "tmpmounts"))
	if len(entries) != 0 {
		t.Errorf("temporary mount folders left after the commit: %v", entries)
	}
}

// plant runs a container id of img on snapshotter sn that plants
// plantHostile, and waits until it has.
func plant(t *testing.T, ctx context.Context, d *daemon, c *client.Client, id string, img *client.Image, sn string) {
	t.Helper()
	ctr, err := c.NewContainer(ctx, id, client.WithImage(img), client.WithSnapshotter(sn), client.WithNewSnapshot(id, img),
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sh", "-c", plantHostile)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctr.Delete(context.WithoutCancel(ctx), client.WithSnapshotCleanup) })
	var out testutil.Buffer
	task, err := ctr.NewTask(ctx, d.creator(nil, &out, &out))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { task.Delete(context.WithoutCancel(ctx), client.WithProcessKill) })
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, id+" planting", func() bool { return strings.Contains(out.String(), "planted") })
}

// snapshotDir returns the folder that holds snapshot key's own files: an
// overlay's upper folder, or a bind mount's source.
func snapshotDir(t *testing.T, ctx context.Context, c *client.Client, sn, key string) string {
	t.Helper()
	mounts, err := c.SnapshotService(sn).Mounts(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 1 {
		t.Fatalf("snapshot %s/%s: mounts %+v", sn, key, mounts)
	}
	m := mounts[0]
	if m.Type != "overlay" {
		return m.Source
	}
	for _, o := range m.Options {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			return v
		}
	}
	t.Fatalf("snapshot %s/%s: overlay without an upper folder: %+v", sn, key, m)
	return ""
}

// probeRefused checks, as root, that dir holds what plantHostile planted,
// then that nobody can neither run the setuid copy nor open the node: the
// way there is refused.
func probeRefused(t *testing.T, what, dir string) {
	t.Helper()
	suid, node := filepath.Join(dir, "busybox-suid"), filepath.Join(dir, "node")
	if st, err := os.Stat(suid); err != nil || st.Mode()&os.ModeSetuid == 0 {
		t.Errorf("%s: %s is not the planted setuid file (%v)", what, suid, err)
		return
	}
	for _, p := range []struct{ file, script string }{
		{suid, `"$0" id -u`}, // exec
		{node, `: <> "$0"`},  // open for reading and writing
		{dir, `ls "$0"`},     // the folder itself
	} {
		out, err := asNobody(p.script, p.file)
		if err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("%s: nobody ran %s on %s: %v, output %q; want it refused with EACCES", what, p.script, p.file, err, out)
		}
	}
}

// asNobody runs script with /bin/sh as user nobody, with args as $0, $1…,
// and returns its combined output.
func asNobody(script string, args ...string) (string, error) {
	cmd := exec.Command("su", append([]string{"nobody", "-s", "/bin/sh", "-c", script}, args...)...)
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// heldOpen is a file whose opens wait for the test: every open of it
// blocks until release.
type heldOpen struct {
	fd     int
	opened chan struct{} // closed at the first open
	stop   chan struct{}
	done   chan struct{}
}

// holdOpen marks file with a fanotify permission event. The file's inode
// is marked, so an open through any mount of it (an overlay whose layer
// it is) waits too.
func holdOpen(t *testing.T, file string) *heldOpen {
	t.Helper()
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_LARGEFILE)
	if err != nil {
		testutil.Require(t, false, "fanotify permission events: "+err.Error())
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_OPEN_PERM, unix.AT_FDCWD, file); err != nil {
		unix.Close(fd)
		t.Fatalf("fanotify mark %s: %v", file, err)
	}
	h := &heldOpen{fd: fd, opened: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go h.serve()
	t.Cleanup(h.release)
	return h
}

// serve holds every open until release, then allows them all.
func (h *heldOpen) serve() {
	defer close(h.done)
	var pending []int32
	defer func() {
		for _, fd := range pending {
			h.answer(fd)
		}
		unix.Close(h.fd)
	}()
	buf := make([]byte, 4096)
	for {
		select {
		case <-h.stop:
			return
		default:
		}
		fds := []unix.PollFd{{Fd: int32(h.fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 100); err != nil && !errors.Is(err, unix.EINTR) || n <= 0 {
			continue
		}
		n, err := unix.Read(h.fd, buf)
		if err != nil {
			continue
		}
		for off := 0; off+int(unix.FAN_EVENT_METADATA_LEN) <= n; {
			meta := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[off]))
			if meta.Fd >= 0 {
				if len(pending) == 0 {
					close(h.opened)
				}
				pending = append(pending, meta.Fd)
			}
			off += int(meta.Event_len)
		}
	}
}

func (h *heldOpen) answer(fd int32) {
	resp := unix.FanotifyResponse{Fd: fd, Response: unix.FAN_ALLOW}
	unix.Write(h.fd, (*[unsafe.Sizeof(resp)]byte)(unsafe.Pointer(&resp))[:])
	unix.Close(int(fd))
}

// release allows every open held and to come; safe more than once.
func (h *heldOpen) release() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}

// tempMountOf returns the mount point of the read-only overlay that has
// upper among its lower folders: the one a commit made to read a running
// container's snapshot.
func tempMountOf(t *testing.T, upper string) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var found []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+3 >= len(fields) || fields[sep+1] != "overlay" {
			continue
		}
		for _, o := range strings.Split(fields[sep+3], ",") {
			if v, ok := strings.CutPrefix(o, "lowerdir="); ok && strings.HasPrefix(v, upper+":") {
				found = append(found, unescapeMountinfo(fields[4]))
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("read-only overlays over %s: %v, want one", upper, found)
	}
	return found[0]
}

// unescapeMountinfo undoes the octal escapes of a mountinfo path.
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
