package btrfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The btrfs ioctls this package uses, from the kernel's uapi
// <linux/btrfs.h>: a stable ABI since 2.6.x (SNAP_CREATE_V2 since 2.6.37,
// SUBVOL_SETFLAGS since 3.0). The argument structs below have the kernel's
// layout; TestIoctlLayout checks their sizes.
const (
	ioctlMagic = 0x94

	// pathNameMax is BTRFS_PATH_NAME_MAX, the longest name in volArgs.
	pathNameMax = 4087
	// subvolNameMax is BTRFS_SUBVOL_NAME_MAX, the longest in volArgsV2.
	subvolNameMax = 4039
	// subvolReadOnly is BTRFS_SUBVOL_RDONLY, in flags.
	subvolReadOnly = 1 << 1

	// firstFreeObjectID is the inode number of a subvolume's root folder
	// (BTRFS_FIRST_FREE_OBJECTID): what tells a subvolume from a folder.
	firstFreeObjectID = 256
	// quotaTreeObjectID is the tree that holds the qgroups.
	quotaTreeObjectID = 8
	// Item types in the quota tree.
	qgroupStatusKey = 240
	qgroupInfoKey   = 242
	// qgroupStatusInconsistent and qgroupStatusRescan in the status
	// item's flags mean the numbers are not to be trusted yet.
	qgroupStatusRescan       = 1 << 1
	qgroupStatusInconsistent = 1 << 2
)

// volArgs is struct btrfs_ioctl_vol_args.
type volArgs struct {
	fd   int64
	name [pathNameMax + 1]byte
}

// volArgsV2 is struct btrfs_ioctl_vol_args_v2.
type volArgsV2 struct {
	fd      int64
	transid uint64
	flags   uint64
	unused  [4]uint64 // the union with size and qgroup_inherit
	name    [subvolNameMax + 1]byte
}

// inoLookupArgs is struct btrfs_ioctl_ino_lookup_args.
type inoLookupArgs struct {
	treeID   uint64
	objectID uint64
	name     [4080]byte
}

// searchKey is struct btrfs_ioctl_search_key.
type searchKey struct {
	treeID                 uint64
	minObjectID, maxObjID  uint64
	minOffset, maxOffset   uint64
	minTransID, maxTransID uint64
	minType, maxType       uint32
	nrItems                uint32
	unused                 uint32
	unused1                [4]uint64
}

// searchArgs is struct btrfs_ioctl_search_args.
type searchArgs struct {
	key searchKey
	buf [4096 - unsafe.Sizeof(searchKey{})]byte
}

// searchHeaderSize is sizeof(struct btrfs_ioctl_search_header): transid,
// objectid, offset (u64 each), type, len (u32 each), in native order.
const searchHeaderSize = 32

// ioc computes an ioctl number as the kernel's _IOC macro does.
func ioc(dir, nr, size uintptr) uintptr {
	return dir<<30 | size<<16 | ioctlMagic<<8 | nr
}

const (
	iocWrite = 1
	iocRead  = 2
)

var (
	iocSubvolCreate   = ioc(iocWrite, 14, unsafe.Sizeof(volArgs{}))
	iocSnapDestroy    = ioc(iocWrite, 15, unsafe.Sizeof(volArgs{}))
	iocTreeSearch     = ioc(iocWrite|iocRead, 17, unsafe.Sizeof(searchArgs{}))
	iocInoLookup      = ioc(iocWrite|iocRead, 18, unsafe.Sizeof(inoLookupArgs{}))
	iocSnapCreateV2   = ioc(iocWrite, 23, unsafe.Sizeof(volArgsV2{}))
	iocSubvolGetFlags = ioc(iocRead, 25, 8)
	iocSubvolSetFlags = ioc(iocWrite, 26, 8)
)

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

// openDir opens path as a folder, not following a last symbolic link.
func openDir(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// setName copies name, one path component, into dst with its NUL.
func setName(dst []byte, name string) error {
	if name == "" || name == "." || name == ".." || len(name) >= len(dst) || filepath.Base(name) != name {
		return fmt.Errorf("subvolume name %q: %w", name, unix.EINVAL)
	}
	copy(dst, name)
	dst[len(name)] = 0
	return nil
}

// createSubvolume makes the empty subvolume path; its parent folder must
// exist.
func createSubvolume(path string) error {
	return volIoctl(path, iocSubvolCreate, "create subvolume")
}

// deleteSubvolume deletes the subvolume path, read-only or not, with what
// it holds (except nested subvolumes: ENOTEMPTY). The kernel unlinks it at
// once and frees its extents in the background.
func deleteSubvolume(path string) error {
	return volIoctl(path, iocSnapDestroy, "delete subvolume")
}

// volIoctl calls req, an ioctl that takes a volArgs, on path's parent
// folder with path's name.
func volIoctl(path string, req uintptr, op string) error {
	dir, name := filepath.Split(path)
	fd, err := openDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var args volArgs
	if err := setName(args.name[:], name); err != nil {
		return err
	}
	if err := ioctl(fd, req, unsafe.Pointer(&args)); err != nil {
		return &os.PathError{Op: op, Path: path, Err: err}
	}
	return nil
}

// snapshotSubvolume makes path a snapshot of the subvolume src, read-only
// when readOnly.
func snapshotSubvolume(path, src string, readOnly bool) error {
	srcFd, err := openDir(src)
	if err != nil {
		return err
	}
	defer unix.Close(srcFd)
	dir, name := filepath.Split(path)
	fd, err := openDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	args := volArgsV2{fd: int64(srcFd)}
	if readOnly {
		args.flags = subvolReadOnly
	}
	if err := setName(args.name[:], name); err != nil {
		return err
	}
	if err := ioctl(fd, iocSnapCreateV2, unsafe.Pointer(&args)); err != nil {
		return &os.PathError{Op: "snapshot " + src, Path: path, Err: err}
	}
	return nil
}

// setReadOnly sets or clears the read-only flag of the subvolume path.
func setReadOnly(path string, readOnly bool) error {
	fd, err := openDir(path)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var flags uint64
	if err := ioctl(fd, iocSubvolGetFlags, unsafe.Pointer(&flags)); err != nil {
		return &os.PathError{Op: "get subvolume flags", Path: path, Err: err}
	}
	want := flags &^ subvolReadOnly
	if readOnly {
		want |= subvolReadOnly
	}
	if want == flags {
		return nil
	}
	flags = want
	if err := ioctl(fd, iocSubvolSetFlags, unsafe.Pointer(&flags)); err != nil {
		return &os.PathError{Op: "set subvolume flags", Path: path, Err: err}
	}
	return nil
}

// isSubvolume reports whether path is the root of a subvolume on btrfs.
func isSubvolume(path string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Ino != firstFreeObjectID {
		return false, nil
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return false, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	return fs.Type == unix.BTRFS_SUPER_MAGIC, nil
}

// subvolumeID returns the id of the subvolume that holds the folder fd
// (its tree id; qgroup 0/<id> accounts for it).
func subvolumeID(fd int) (uint64, error) {
	args := inoLookupArgs{objectID: firstFreeObjectID}
	if err := ioctl(fd, iocInoLookup, unsafe.Pointer(&args)); err != nil {
		return 0, err
	}
	return args.treeID, nil
}

// errNoQuota is exclusiveBytes's answer when the filesystem keeps no
// trustworthy qgroup numbers: quotas off, or a rescan under way.
var errNoQuota = errors.New("qgroups are not enabled or not consistent")

// exclusiveBytes returns the bytes that only the subvolume path holds
// (qgroup 0/<id>'s exclusive count), after committing the filesystem's
// transaction so that the count includes every write made so far.
func exclusiveBytes(path string) (int64, error) {
	fd, err := openDir(path)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	id, err := subvolumeID(fd)
	if err != nil {
		return 0, &os.PathError{Op: "subvolume id", Path: path, Err: err}
	}
	status, err := searchQuotaTree(fd, qgroupStatusKey, 0)
	if errors.Is(err, unix.ENOENT) || (err == nil && status == nil) {
		return 0, errNoQuota // no quota tree: quotas were never enabled
	}
	if err != nil {
		return 0, &os.PathError{Op: "search quota tree", Path: path, Err: err}
	}
	// status: version, generation, flags, ... (little endian u64 each).
	if len(status) < 24 || binary.LittleEndian.Uint64(status[16:])&(qgroupStatusRescan|qgroupStatusInconsistent) != 0 {
		return 0, errNoQuota
	}
	// Qgroup numbers are brought up to date when a transaction commits.
	if err := unix.Syncfs(fd); err != nil {
		return 0, &os.PathError{Op: "syncfs", Path: path, Err: err}
	}
	info, err := searchQuotaTree(fd, qgroupInfoKey, id)
	if err != nil {
		return 0, &os.PathError{Op: "search quota tree", Path: path, Err: err}
	}
	// info: generation, rfer, rfer_cmpr, excl, excl_cmpr.
	if len(info) < 40 {
		return 0, errNoQuota // no qgroup for it: made before quotas were on
	}
	return int64(binary.LittleEndian.Uint64(info[24:])), nil
}

// searchQuotaTree returns the data of the item (0, typ, offset) in the
// quota tree, nil when it is absent.
func searchQuotaTree(fd int, typ uint32, offset uint64) ([]byte, error) {
	args := searchArgs{key: searchKey{
		treeID:     quotaTreeObjectID,
		minOffset:  offset,
		maxOffset:  offset,
		maxTransID: ^uint64(0),
		minType:    typ,
		maxType:    typ,
		nrItems:    1,
	}}
	if err := ioctl(fd, iocTreeSearch, unsafe.Pointer(&args)); err != nil {
		return nil, err
	}
	if args.key.nrItems == 0 {
		return nil, nil
	}
	h := args.buf[:searchHeaderSize]
	objectID := binary.NativeEndian.Uint64(h[8:])
	gotOffset := binary.NativeEndian.Uint64(h[16:])
	gotType := binary.NativeEndian.Uint32(h[24:])
	n := int(binary.NativeEndian.Uint32(h[28:]))
	if objectID != 0 || gotType != typ || gotOffset != offset || searchHeaderSize+n > len(args.buf) {
		return nil, nil
	}
	return args.buf[searchHeaderSize : searchHeaderSize+n], nil
}
