package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
)

// Small regular files are made by workers while the layer is read on.
//
// Making files is the cost of a layer of many small files: on ext4 the
// kernel's inode allocation takes most of it, CPU time that runs in
// parallel in different threads, but only in different folders (a
// creation holds its folder's inode lock). Apply reads the tar on its own
// goroutine and hands each small regular file, its data read into memory,
// to a worker, all files of one folder to the same worker (in the
// layer's order) and different folders to different workers; everything
// else is done by the reading goroutine, in the layer's order.
//
// A file in flight changes one name, its own: it makes it, and removes
// what had that name first (an older entry replaced). The reading
// goroutine keeps what it does apart from those names, with names as the
// kernel resolves them (canonical: no symlink on the way):
//   - an entry other than a worker's file waits for the files in flight
//     (drain) when its name is one in flight or a folder with files in
//     flight below it (it would replace or change that folder); a
//     worker's file only when it would replace such a folder;
//   - a folder is resolved only along names not in flight: a folder whose
//     path holds one, a path with a symlink on the way (whose canonical
//     name is known only after), and one to be made, are resolved after a
//     drain;
//   - hardlinks (the target may be in flight), whiteouts and opaque
//     markers (they remove elsewhere) come after a drain;
//   - folders' times are set at the end, once every worker is done.
//
// The folder descriptors the workers make files in stay open until their
// last file is made, and nothing removes such a folder meanwhile.
const (
	// smallFile is the largest file handed to a worker; larger ones
	// are written by the reading goroutine as they are read.
	smallFile = 1 << 20
	// maxInFlight bounds the memory held by files handed to workers and
	// not yet written (data, xattrs, names: fileJob.size),
	// maxInFlightFiles their number.
	maxInFlight      = 16 << 20
	maxInFlightFiles = 256
	// maxWorkers bounds the workers whatever GOMAXPROCS says.
	maxWorkers = 8
	// maxWorkerName and maxWorkerDepth bound the canonical name of a
	// worker's file, in bytes and in folders on its path: a file in
	// flight counts in each folder on its path (under), and a name of
	// 4 KiB of one-letter folders would cost 2,000 map updates of 2 KiB
	// names on average, for each file and again when it is made (2.7
	// times the CPU time of the serial apply for a layer of such files).
	// Longer or deeper files are made by the reading goroutine, as
	// without workers.
	maxWorkerName  = 1024
	maxWorkerDepth = 32
	// fileJobOverhead is what a file in flight holds besides its data,
	// xattrs and names (fileJob, map entries), roughly.
	fileJobOverhead = 256
)

// workersOverride, when >= 0, replaces the number of workers (tests).
var workersOverride atomic.Int32

func init() { workersOverride.Store(-1) }

// applyWorkers is how many workers an Apply starts; fewer than 2 means
// none (every entry is applied by the reading goroutine).
func applyWorkers() int {
	if n := workersOverride.Load(); n >= 0 {
		return int(n)
	}
	return min(runtime.GOMAXPROCS(0), maxWorkers)
}

// dirRef is a folder descriptor that files in flight are made in.
type dirRef struct {
	fd      int
	n       int  // files in flight made in it
	retired bool // closed once n is 0
}

// fileJob is a small regular file for a worker to make.
type fileJob struct {
	index        int // the entry's number in the layer, for the first error
	dir          *dirRef
	folder       string // canonical name of the folder
	name         string // canonical name of the file
	base         string
	hdrName      string // as the layer names it, for messages
	data         []byte
	size         int // memory held: data, xattrs, names (maxInFlight)
	perm, mode   uint32
	exact        bool // made with perm, nothing set apart (exactMeta)
	uid, gid     int
	xattrs       []xattr
	atime, mtime time.Time
}

// folderWork is the worker of a folder with files in flight.
type folderWork struct{ worker, n int }

// workers make small files; see the top of the file.
type workers struct {
	a      *applier
	queues []chan *fileJob
	wg     sync.WaitGroup

	mu       sync.Mutex
	cond     sync.Cond
	inFlight int                    // files handed out and not made
	bytes    int                    // their data
	names    map[string]int         // their canonical names
	under    map[string]int         // folders (not root) with files in flight below them
	folders  map[string]*folderWork // folders with files in flight
	next     int                    // the worker of the next folder
	err      error                  // the failure of the earliest entry that failed
	errIndex int
	failed   atomic.Bool
	// stopAt is errIndex once a file failed: files of later entries
	// are not made, those of earlier ones still are (the first failure
	// by entry order is the one returned, as without workers).
	stopAt atomic.Int64
}

// Test hooks: testHookWait is called (under the workers' lock) when give
// waits for room, with the files and bytes in flight; testHookJob before
// a worker makes a file and testHookDone once it is done with it;
// testHookDrain (under the lock) when drain waits, testHookGive (under
// the lock) when a file is handed out.
var (
	testHookGive  func(index int)
	testHookDrain func()
	testHookWait  func(files, bytes int)
	testHookJob   func(index int)
	testHookDone  func(index int, err error)
)

func startWorkers(a *applier, n int) *workers {
	w := &workers{a: a, names: map[string]int{}, under: map[string]int{}, folders: map[string]*folderWork{}}
	w.cond.L = &w.mu
	w.stopAt.Store(math.MaxInt64)
	w.wg.Add(n)
	for range n {
		q := make(chan *fileJob, maxInFlightFiles)
		w.queues = append(w.queues, q)
		go w.run(q)
	}
	return w
}

func (w *workers) run(q chan *fileJob) {
	defer w.wg.Done()
	for j := range q {
		if testHookJob != nil {
			testHookJob(j.index)
		}
		var err error
		if int64(j.index) < w.stopAt.Load() { // after a failure the rest is not made
			err = w.a.writeSmall(j)
		}
		w.done(j, err)
		if testHookDone != nil {
			testHookDone(j.index, err)
		}
	}
}

// ancestors calls fn with each folder name is in, root excluded.
func ancestors(name string, fn func(folder string)) {
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			fn(name[:i])
		}
	}
}

func (w *workers) done(j *fileJob, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inFlight--
	w.bytes -= j.size
	w.names[j.name]--
	if w.names[j.name] == 0 {
		delete(w.names, j.name)
	}
	ancestors(j.name, func(f string) {
		w.under[f]--
		if w.under[f] == 0 {
			delete(w.under, f)
		}
	})
	f := w.folders[j.folder]
	f.n--
	if f.n == 0 {
		delete(w.folders, j.folder)
	}
	j.dir.n--
	if j.dir.n == 0 && j.dir.retired {
		unix.Close(j.dir.fd)
	}
	if err != nil && (w.err == nil || j.index < w.errIndex) {
		w.err, w.errIndex = fmt.Errorf("entry %q: %w", j.hdrName, err), j.index
		w.failed.Store(true)
		w.stopAt.Store(int64(j.index))
	}
	w.cond.Broadcast()
}

// give hands j to its folder's worker, once the files in flight leave
// room for it.
func (w *workers) give(j *fileJob) error {
	w.mu.Lock()
	for w.inFlight > 0 && (w.bytes+j.size > maxInFlight || w.inFlight >= maxInFlightFiles) {
		if testHookWait != nil {
			testHookWait(w.inFlight, w.bytes)
		}
		w.cond.Wait()
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.inFlight++
	w.bytes += j.size
	w.names[j.name]++
	ancestors(j.name, func(f string) { w.under[f]++ })
	f := w.folders[j.folder]
	if f == nil {
		f = &folderWork{worker: w.next}
		w.next = (w.next + 1) % len(w.queues)
		w.folders[j.folder] = f
	}
	f.n++
	j.dir.n++
	if testHookGive != nil {
		testHookGive(j.index)
	}
	q := w.queues[f.worker]
	w.mu.Unlock()
	q <- j // never blocks: a queue holds maxInFlightFiles
	return nil
}

// busy reports whether the canonical name is in flight or a folder with
// files in flight below it; a worker's file (small) only the latter.
func (w *workers) busy(name string, small bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.under[name] > 0 || (!small && w.names[name] > 0)
}

// onPath reports whether the folder dir, or one on its path, is a name
// in flight.
func (w *workers) onPath(dir string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.names) == 0 {
		return false
	}
	// Names in flight are at most maxWorkerName long and have fewer
	// than maxWorkerDepth folders on their path (toWorker): longer
	// prefixes of a deep folder are not looked up.
	found := len(dir) <= maxWorkerName && w.names[dir] > 0
	for i, depth := 0, 0; !found && i < len(dir) && i <= maxWorkerName && depth < maxWorkerDepth; i++ {
		if dir[i] == '/' {
			found = w.names[dir[:i]] > 0
			depth++
		}
	}
	return found
}

// retire closes d once no file in flight is made in it.
func (w *workers) retire(d *dirRef) {
	w.mu.Lock()
	defer w.mu.Unlock()
	d.retired = true
	if d.n == 0 {
		unix.Close(d.fd)
	}
}

// drain waits until no file is in flight and returns the first failure.
func (w *workers) drain() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.inFlight > 0 {
		if testHookDrain != nil {
			testHookDrain()
		}
		w.cond.Wait()
	}
	return w.err
}

// stop drains and ends the workers, and returns the first failure with
// its entry's number.
func (w *workers) stop() (int, error) {
	err := w.drain()
	for _, q := range w.queues {
		close(q)
	}
	w.wg.Wait()
	return w.errIndex, err
}

// drain waits for the files in flight, when there are workers.
func (a *applier) drain() error {
	if a.workers == nil {
		return nil
	}
	return a.workers.drain()
}

// openFolder opens the folder dir (relative to root), made with its
// missing parents when absent, and returns it with its canonical name
// when there are workers. See the top of the file.
func (a *applier) openFolder(dir string) (fd int, canon string, err error) {
	if a.workers == nil {
		fd, err = a.tree.mkdirAll(dir, a.madeParent)
		return fd, dir, err
	}
	if a.workers.onPath(dir) {
		if err := a.workers.drain(); err != nil {
			return -1, "", err
		}
	}
	fd, err = unix.Openat2(a.tree.fd, dirOrDot(dir), &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err == nil {
		return fd, dir, nil
	}
	// A symlink on the way, a folder to make, or an error to report as
	// mkdirAll does: with nothing in flight.
	if err := a.workers.drain(); err != nil {
		return -1, "", err
	}
	fd, err = a.tree.mkdirAll(dir, a.madeParent)
	if err != nil {
		return -1, "", err
	}
	canon, err = a.tree.relPath(fd)
	if err != nil {
		unix.Close(fd)
		return -1, "", err
	}
	return fd, canon, nil
}

// toWorker reports whether the entry, of canonical name name, is a file
// for a worker: regular, not sparse, small, and not deep.
func (a *applier) toWorker(hdr *tar.Header, name string) bool {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		return a.workers != nil && hdr.Size <= smallFile && !isSparse(hdr) &&
			len(name) <= maxWorkerName && strings.Count(name, "/") < maxWorkerDepth
	}
	return false
}

// joinName is the name base in the folder canon.
func joinName(canon, base string) string {
	if canon == "" {
		return base
	}
	return canon + "/" + base
}

// giveSmall reads a small file's data and hands it to a worker. The
// entry's folder is the kept one, p.
func (a *applier) giveSmall(hdr *tar.Header, r io.Reader, p *parentDir, base string, perm, mode uint32, exact bool, xattrs []xattr) error {
	data := make([]byte, hdr.Size)
	if _, err := io.ReadFull(r, data); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return &os.PathError{Op: "write", Path: hdr.Name, Err: fmt.Errorf("read tar: %w: %w", err, errdefs.ErrInvalidArgument)}
	}
	j := &fileJob{
		index: a.index, dir: p.ref, folder: p.canon, name: joinName(p.canon, base), base: base, hdrName: hdr.Name,
		data: data, perm: perm, mode: mode, exact: exact, uid: hdr.Uid, gid: hdr.Gid, xattrs: xattrs,
		atime: hdr.AccessTime, mtime: hdr.ModTime,
	}
	// A layer's PAX records may give each file up to about 1 MiB of
	// xattrs: they count in the bound as the data does.
	j.size = len(data) + len(j.name) + len(j.hdrName) + fileJobOverhead
	for _, x := range xattrs {
		j.size += len(x.name) + len(x.value)
	}
	return a.workers.give(j)
}

// writeSmall makes a worker's file as regular does.
func (a *applier) writeSmall(j *fileJob) error {
	fd := -1
	err := replacing(j.dir.fd, j.base, func() (err error) {
		fd, err = unix.Openat(j.dir.fd, j.base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, j.perm)
		return err
	})
	if err != nil {
		return &os.PathError{Op: "create", Path: j.hdrName, Err: err}
	}
	defer unix.Close(fd)
	if err := writeAll(fd, j.data); err != nil {
		return &os.PathError{Op: "write", Path: j.hdrName, Err: err}
	}
	if !j.exact {
		if err := a.metaFd(&tar.Header{Name: j.hdrName, Uid: j.uid, Gid: j.gid}, fd, j.mode, j.xattrs); err != nil {
			return err
		}
	}
	return setTimes(fd, "", j.atime, j.mtime)
}
