package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/atomicfile"
	"github.com/berthrt/berth/io/cio"
	"github.com/berthrt/berth/shimapi"
)

// The stdio of a task's init process is recorded in its bundle
// (stdioFileName) before the shim starts, and kept until the bundle is
// removed. Two things rest on it:
//   - a stopped task, whose shim and its memory are gone, still reports
//     where its stdio went, so that a client that loads it can clean up
//     its FIFOs;
//   - removing the bundle, on every path (Delete, a Restore that finishes
//     a delete or undoes a create, a failed Create), first removes the
//     FIFOs a client's Creator made for the task in the daemon's own FIFO
//     dir, StateDir/fifoDir. A crash of the daemon can cut a client's
//     task delete after the task is gone: the client never learns the
//     paths again, so only the daemon can remove them. FIFOs elsewhere
//     stay the client's (cio.RemoveCreatorFIFOs).
//
// Exec processes' FIFOs in that dir are recorded too (execFIFOsDir, see
// Exec), and removed when the exec is deleted or with the bundle.
const (
	stdioFileName = "stdio.json"
	// execFIFOsDir holds the records of exec processes' stdio (see Exec).
	execFIFOsDir = "exec-fifos"
	// stdioFileMax bounds a record read back: three paths and a flag.
	stdioFileMax = 64 << 10
)

// fifoDir is the folder under StateDir where clients make FIFOs by default
// (cio.DefaultFIFODir is in the default StateDir). A dot name cannot be a
// namespace.
var fifoDir = filepath.Base(cio.DefaultFIFODir)

// writeStdio records the init process's stdio in the bundle folder dir.
func writeStdio(dir string, stdio *shimapi.Stdio) error {
	data, err := protojson.Marshal(stdioOrEmpty(stdio))
	if err != nil {
		return fmt.Errorf("encode stdio: %w", err)
	}
	return atomicfile.WriteVolatile(filepath.Join(dir, stdioFileName), data, 0o600)
}

// readStdio returns the stdio recorded in bundle; nil without a record (a
// bundle of a release before it).
func readStdio(bundle string) (*shimapi.Stdio, error) {
	path := filepath.Join(bundle, stdioFileName)
	data, err := readLimited(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st shimapi.Stdio
	if err := protojson.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &st, nil
}

// readLimited reads a stdio record, at most stdioFileMax bytes.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, stdioFileMax+1))
	if err != nil {
		return nil, err
	}
	if len(data) > stdioFileMax {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, stdioFileMax)
	}
	return data, nil
}

// removeOwnFIFOs removes the FIFOs in fifoRoot, and their folders, that
// the bundle records: those of the task's init process and those of exec
// processes not deleted yet.
func removeOwnFIFOs(bundle, fifoRoot string) error {
	st, err := readStdio(bundle)
	if err != nil {
		return err
	}
	errs := []error{cio.RemoveCreatorFIFOs(stdioConfig(st), fifoRoot, filepath.Base(bundle))}
	names, err := execRecords(bundle)
	if err != nil {
		return err
	}
	for _, name := range names {
		errs = append(errs, removeExecRecord(bundle, fifoRoot, name))
	}
	return errors.Join(errs...)
}

// execRecords returns the names of the exec stdio records in bundle.
func execRecords(bundle string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(bundle, execFIFOsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var names []string
	for _, e := range entries {
		// A dot name is a temporary file of a write a crash cut.
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names, err
}

// RecordedExecFIFOFolders returns the names of the folders in the daemon's
// FIFO dir whose exec FIFOs the bundle records, to be removed with the
// exec or the bundle (berthd check).
func RecordedExecFIFOFolders(bundle string) []string {
	names, _ := execRecords(bundle)
	return names
}

// execOfRecord returns the exec id of a record named after a FIFO folder.
func execOfRecord(name string) string {
	id, _ := cio.CreatorFolderID(name)
	return id
}

// Exec has the shim register exec process req.ExecId. When the exec's
// FIFOs lie in the daemon's FIFO dir, the bundle records its stdio first,
// one file per FIFO folder in execFIFOsDir, named like the folder (so two
// Execs of one id never share a record): a daemon killed inside the
// exec's delete would otherwise leave them, as it would a task's. The
// record goes when DeleteProcess deletes the exec, or with the bundle.
func (sh *Shim) Exec(ctx context.Context, req *shimapi.ExecRequest) error {
	folders := cio.CreatorFolders(stdioConfig(req.GetStdio()), sh.s.fifoRoot(), req.GetExecId())
	if len(folders) > 0 {
		data, err := protojson.Marshal(req.GetStdio())
		if err != nil {
			return fmt.Errorf("exec %q: encode stdio: %w", req.GetExecId(), err)
		}
		dir := filepath.Join(sh.Bundle, execFIFOsDir)
		// Never MkdirAll: a bundle that a Delete removed meanwhile must
		// not come back.
		if err := os.Mkdir(dir, 0o700); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("exec %q: task %s: %w", req.GetExecId(), sh, errdefs.ErrNotFound)
		} else if err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("exec %q: %w", req.GetExecId(), err)
		}
		for _, name := range folders {
			if err := atomicfile.WriteVolatile(filepath.Join(dir, name), data, 0o600); err != nil {
				return fmt.Errorf("exec %q: record stdio: %w", req.GetExecId(), err)
			}
		}
	}
	if _, err := sh.Task().Exec(ctx, req); err != nil {
		// Refused: the client removes its FIFOs itself, and those of an
		// exec of the same id that runs are not this call's to remove.
		for _, name := range folders {
			os.Remove(filepath.Join(sh.Bundle, execFIFOsDir, name))
		}
		return err
	}
	return nil
}

// DeleteProcess has the shim delete exec process req.ExecId, then removes
// the exec's FIFOs that the bundle records, also when the shim no longer
// knows the exec (NotFound: a delete whose reply a daemon crash lost).
func (sh *Shim) DeleteProcess(ctx context.Context, req *shimapi.DeleteRequest) (*shimapi.DeleteResponse, error) {
	resp, err := sh.Task().Delete(ctx, req)
	if err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	names, lerr := execRecords(sh.Bundle)
	if lerr != nil {
		sh.s.log.Warn("read exec stdio records", "task", sh.String(), "error", lerr)
	}
	for _, name := range names {
		if execOfRecord(name) != req.GetExecId() {
			continue
		}
		if rerr := removeExecRecord(sh.Bundle, sh.s.fifoRoot(), name); rerr != nil {
			sh.s.log.Warn("remove FIFOs of a deleted exec", "task", sh.String(), "exec", req.GetExecId(), "error", rerr)
		}
	}
	return resp, err
}

// removeExecRecord removes the FIFOs that the exec stdio record name in
// bundle names in fifoRoot, and then the record.
func removeExecRecord(bundle, fifoRoot, name string) error {
	path := filepath.Join(bundle, execFIFOsDir, name)
	data, err := readLimited(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st shimapi.Stdio
	if err := protojson.Unmarshal(data, &st); err != nil {
		// Not ours to act on; the record goes with the bundle.
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := cio.RemoveCreatorFIFOs(stdioConfig(&st), fifoRoot, execOfRecord(name)); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func stdioConfig(st *shimapi.Stdio) cio.Config {
	return cio.Config{Stdin: st.GetStdin(), Stdout: st.GetStdout(), Stderr: st.GetStderr(), Terminal: st.GetTerminal()}
}

// fifoRoot is the daemon's own FIFO dir.
func (s *Supervisor) fifoRoot() string { return filepath.Join(s.cfg.StateDir, fifoDir) }

// Stdio returns the stdio of the task's init process as its Create gave
// it, also once the shim is gone; nil for a task whose bundle has no
// record (made by an earlier release).
func (sh *Shim) Stdio() *shimapi.Stdio {
	if sh.stdio == nil {
		return nil
	}
	return proto.CloneOf(sh.stdio)
}

func stdioOrEmpty(st *shimapi.Stdio) *shimapi.Stdio {
	if st == nil {
		return &shimapi.Stdio{}
	}
	return st
}
