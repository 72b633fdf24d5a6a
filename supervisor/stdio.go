package supervisor

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

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
const (
	stdioFileName = "stdio.json"
	// stdioFileMax bounds the record read back: four paths and a flag.
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

// readStdio returns the stdio recorded in bundle; nil when there is no
// record (a bundle of a release before it) or it does not decode.
func readStdio(bundle string) (*shimapi.Stdio, error) {
	f, err := os.Open(filepath.Join(bundle, stdioFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, stdioFileMax+1))
	if err != nil {
		return nil, err
	}
	if len(data) > stdioFileMax {
		return nil, fmt.Errorf("%s: larger than %d bytes", f.Name(), stdioFileMax)
	}
	var st shimapi.Stdio
	if err := protojson.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return &st, nil
}

// removeOwnFIFOs removes the FIFOs that the stdio recorded in bundle names
// in fifoRoot, made for the bundle's task, and their folders.
func removeOwnFIFOs(bundle, fifoRoot string) error {
	st, err := readStdio(bundle)
	if err != nil || st == nil {
		return err
	}
	cfg := cio.Config{Stdin: st.GetStdin(), Stdout: st.GetStdout(), Stderr: st.GetStderr(), Terminal: st.GetTerminal()}
	return cio.RemoveCreatorFIFOs(cfg, fifoRoot, filepath.Base(bundle))
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
