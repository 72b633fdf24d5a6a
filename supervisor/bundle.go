package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/atomicfile"
	"github.com/berthrt/berth/internal/cgroupclean"
	"github.com/berthrt/berth/internal/fsperm"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/shimapi"
)

// Files the supervisor keeps in a bundle, beside those of the shim.
const (
	specFileName    = "config.json"
	runtimeFileName = "runtime"
	// publishedMarker: the init process's TaskExit was forwarded.
	publishedMarker = "exit-published"
	// reapedMarker: the shim is gone and the bundle was reduced.
	reapedMarker = "shim-reaped"
	// deletedMarker: Delete deleted the task and published its TaskDelete;
	// only the bundle's removal is left.
	deletedMarker = "task-deleted"
	// creatingMarker: Create has not finished. A bundle that still has it
	// when a daemon starts was being created when the last one died: its
	// caller never heard of the task, so the task is removed, shim and
	// all, without events.
	creatingMarker = "creating"
	rootfsName     = "rootfs"
)

// ReapedMarker is the file in a bundle whose shim is gone and whose exit
// status the bundle keeps until the task is deleted: such a bundle needs no
// live shim (berthd check).
const ReapedMarker = reapedMarker

// Folder modes. A bundle holds the container's rootfs, mounted with
// setuid honoured and with whatever device nodes the container made, so
// no host user but root may enter it (the CVE-2021-41103 class); the
// folders above it may be traversed, so that a bundle can be opened to
// the root of a user namespace (bundleUsernsPerm).
const (
	// StatePerm is the mode of the state folder: the daemon's API socket
	// and the clients' FIFO folders may be in it.
	StatePerm = 0o711
	// namespacePerm is the mode of <state>/<namespace>.
	namespacePerm = 0o711
	// bundlePerm is the mode of a bundle.
	bundlePerm = 0o700
	// bundleUsernsPerm is the mode of the bundle of a container in a user
	// namespace, whose group is the host gid of the namespace's root:
	// runc's init prepares the rootfs as that root, and may only traverse.
	bundleUsernsPerm = 0o710
)

// keptWhenReaped are the files a stopped task's bundle keeps: enough to
// answer State and Wait, and the logs to explain what happened.
var keptWhenReaped = map[string]bool{
	specFileName:           true,
	runtimeFileName:        true,
	shimapi.ExitFileName:   true,
	shimapi.LogFileName:    true,
	shimapi.RuntimeLogName: true,
	publishedMarker:        true,
	reapedMarker:           true,
	stdioFileName:          true,
	execFIFOsDir:           true,
}

// writeBundle makes the bundle folder, marks it creating, and writes
// config.json, the runtime name and the stdio record. It fails with ErrAlreadyExists when the folder exists:
// a bundle is never reused, since it may belong to a task not yet restored.
func writeBundle(bundle string, spec []byte, runtime string, stdio *shimapi.Stdio) error {
	if err := fsperm.Restrict(filepath.Dir(bundle), namespacePerm); err != nil {
		return err
	}
	if err := os.Mkdir(bundle, bundlePerm); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("bundle %s: %w", bundle, errdefs.ErrAlreadyExists)
		}
		return err
	}
	return writeBundleFiles(bundle, spec, runtime, stdio)
}

// writeBundleFiles gives the folder dir a bundle's mode and group
// (restrictBundle), marks it creating and writes config.json, the runtime
// name and the stdio record (see stdio.go) into it.
func writeBundleFiles(dir string, spec []byte, runtime string, stdio *shimapi.Stdio) error {
	bundle := dir
	if err := restrictBundle(bundle, spec); err != nil {
		return err
	}
	// Made in place, not through a temporary file and a rename: a daemon
	// killed half-way leaves the folder empty or marked, never holding
	// only a temporary file that restore would not know.
	f, err := os.OpenFile(filepath.Join(bundle, creatingMarker), os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := atomicfile.WriteVolatile(filepath.Join(bundle, runtimeFileName), []byte(runtime), 0o600); err != nil {
		return err
	}
	if err := writeStdio(bundle, stdio); err != nil {
		return err
	}
	return atomicfile.WriteVolatile(filepath.Join(bundle, specFileName), spec, 0o600)
}

// restrictBundle gives bundle its mode and group: bundlePerm and root's
// group, or, for a spec with a user namespace, bundleUsernsPerm and the
// host gid its root maps to. A spec that does not decode gets bundlePerm:
// runc refuses it anyway.
func restrictBundle(bundle string, spec []byte) error {
	gid, perm := 0, os.FileMode(bundlePerm)
	if g, ok := usernsRootGID(spec); ok {
		gid, perm = int(g), bundleUsernsPerm
	}
	if err := os.Lchown(bundle, 0, gid); err != nil {
		return fmt.Errorf("bundle %s: %w", bundle, err)
	}
	if err := os.Chmod(bundle, perm); err != nil {
		return fmt.Errorf("bundle %s: %w", bundle, err)
	}
	return nil
}

// usernsRootGID returns the host gid that gid 0 of spec's user namespace
// maps to; ok is false without a user namespace or such a mapping.
func usernsRootGID(spec []byte) (gid uint32, ok bool) {
	var s struct {
		Linux *struct {
			Namespaces  []specs.LinuxNamespace `json:"namespaces"`
			GIDMappings []specs.LinuxIDMapping `json:"gidMappings"`
		} `json:"linux"`
	}
	if json.Unmarshal(spec, &s) != nil || s.Linux == nil {
		return 0, false
	}
	if !slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace }) {
		return 0, false
	}
	for _, m := range s.Linux.GIDMappings {
		if m.ContainerID == 0 && m.Size > 0 {
			return m.HostID, true
		}
	}
	return 0, false
}

// readRuntime returns the runtime a bundle was created with, or def for a
// bundle without the file.
func readRuntime(bundle, def string) string {
	data, err := os.ReadFile(filepath.Join(bundle, runtimeFileName))
	if err != nil || len(data) == 0 {
		return def
	}
	return strings.TrimSpace(string(data))
}

func hasMarker(bundle, name string) bool {
	_, err := os.Stat(filepath.Join(bundle, name))
	return err == nil
}

func writeMarker(bundle, name string) error {
	return atomicfile.WriteVolatile(filepath.Join(bundle, name), nil, 0o600)
}

// unmountRootfs unmounts the bundle's rootfs and removes the folder. It
// removes only an empty folder, so a rootfs that is still mounted, or a
// ready folder someone put there, is never deleted through.
func unmountRootfs(bundle string) error {
	rootfs := filepath.Join(bundle, rootfsName)
	if err := mount.UnmountAll(rootfs, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", rootfs, err)
	}
	if err := os.Remove(rootfs); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// reduceBundle removes from a dead shim's bundle everything but what the
// stopped task needs (keptWhenReaped).
func reduceBundle(bundle string) error {
	entries, err := os.ReadDir(bundle)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		switch name := e.Name(); {
		case keptWhenReaped[name]:
		case name == rootfsName:
			errs = append(errs, unmountRootfs(bundle))
		default:
			errs = append(errs, os.RemoveAll(filepath.Join(bundle, name)))
		}
	}
	return errors.Join(errs...)
}

// removeBundle removes a bundle and the task's runtime state. The FIFOs
// that a client made for the task in the daemon's FIFO dir go first
// (removeOwnFIFOs), while the bundle still records them; failing that is
// logged, not fatal: a task that cannot be deleted would be worse than a
// FIFO folder left. Then the runtime state, then the bundle
// (removeBundleFiles): its rootfs is unmounted and must then be empty: a
// bundle with something still mounted is left in place. The files by which Restore knows a bundle
// (keptToLast) go last, so that a removal that fails half-way leaves a
// bundle that the next Restore removes again. A folder that a process
// still fills (ENOTEMPTY) is tried again a few times.
func (s *Supervisor) removeBundle(bundle, runtimeState string) error {
	if err := removeOwnFIFOs(bundle, s.fifoRoot()); err != nil {
		s.log.Error("remove the FIFOs of a removed task", "bundle", bundle, "error", err)
	}
	if err := os.RemoveAll(runtimeState); err != nil {
		return err
	}
	return s.removeBundleFiles(bundle)
}

// removeBundleFiles removes the bundle folder of a deleted container: the
// cgroup folders that the runtime's delete left first (package
// cgroupclean: runc 1.1 leaves busy folders and reports success; bounded,
// what stays busy is logged; in the usual case one rmdir per hierarchy
// finds each gone), then the rootfs unmounted, the files that mark it a
// bundle last (see keptToLast).
func (s *Supervisor) removeBundleFiles(bundle string) error {
	if err := cgroupclean.BundleLeft(context.Background(), bundle); err != nil {
		s.log.Warn("cgroup folders of a deleted container left", "bundle", bundle, "error", err)
	}
	if err := unmountRootfs(bundle); err != nil {
		return err
	}
	var err error
	for try := range removeTries {
		if try > 0 {
			time.Sleep(time.Duration(try) * 20 * time.Millisecond)
		}
		if err = removeBundleOnce(bundle); !errors.Is(err, unix.ENOTEMPTY) {
			return err
		}
	}
	return err
}

// removeTries bounds removeBundle's attempts on a folder that is not empty
// once its entries are removed.
const removeTries = 5

// keptToLast are the files removeBundle removes after all others: each
// makes Restore take the folder for a bundle to finish.
var keptToLast = []string{specFileName, creatingMarker, deletedMarker, shimapi.DeletedName, shimapi.PidFileName}

func removeBundleOnce(bundle string) error {
	entries, err := os.ReadDir(bundle)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !slices.Contains(keptToLast, e.Name()) {
			if err := os.RemoveAll(filepath.Join(bundle, e.Name())); err != nil {
				return err
			}
		}
	}
	for _, name := range keptToLast {
		if err := os.Remove(filepath.Join(bundle, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.Remove(bundle); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
