package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/berthrt/berth/shimapi"
)

// oomWatch holds the descriptor that an OOM watch's goroutine reads:
// closing it ends the read, and with it the goroutine.
type oomWatch struct {
	mu sync.Mutex
	f  *os.File // guarded by mu; nil when not watching
}

func (w *oomWatch) set(f *os.File) {
	w.mu.Lock()
	w.f = f
	w.mu.Unlock()
}

func (w *oomWatch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}

// uintFile returns a reader of a file holding one number into dst; "max"
// (no limit) reads as 0.
func uintFile(dst *uint64) func(string) error {
	return func(path string) error {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		s := strings.TrimSpace(string(data))
		if s == "max" {
			*dst = 0
			return nil
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		*dst = v
		return nil
	}
}

// keyedFile returns a reader of a flat keyed file ("key value" lines) that
// stores the values of the keys asked for; other keys are skipped.
func keyedFile(keys map[string]*uint64) func(string) error {
	return func(path string) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			key, value, ok := strings.Cut(sc.Text(), " ")
			dst := keys[key]
			if !ok || dst == nil {
				continue
			}
			v, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", path, key, err)
			}
			*dst = v
		}
		return sc.Err()
	}
}

// ignoreNotExist drops the error of a file that is not there: a controller
// or a file that the kernel does not have costs its figure, not the rest.
func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// maxStatLines bounds the lines read from one io.stat or blkio file: a
// line per block device (and, in v1, five per device), far below it.
const maxStatLines = 1 << 16

// ioStatKeys are the io.stat keys ioStatFile sums, in its sum's order.
var ioStatKeys = []string{"rbytes", "wbytes", "rios", "wios"}

// ioStatFile returns a reader of cgroup v2's io.stat ("MAJ:MIN key=value
// …" per device) that sums rbytes, wbytes, rios and wios over the devices.
func ioStatFile(m *shimapi.Metrics) func(string) error {
	return func(path string) error {
		var sum [4]uint64
		err := eachLine(path, func(line string) error {
			fields := strings.Fields(line)
			for _, f := range fields[min(1, len(fields)):] {
				key, value, ok := strings.Cut(f, "=")
				i := slices.Index(ioStatKeys, key)
				if !ok || i < 0 {
					continue
				}
				v, err := strconv.ParseUint(value, 10, 64)
				if err != nil {
					return fmt.Errorf("%s: %s: %w", path, key, err)
				}
				sum[i] += v
			}
			return nil
		})
		if err != nil {
			return err
		}
		m.IoReadBytes, m.IoWriteBytes, m.IoReadOps, m.IoWriteOps = sum[0], sum[1], sum[2], sum[3]
		return nil
	}
}

// blkioFile returns a reader of a cgroup v1 blkio statistics file
// ("MAJ:MIN Op value" per device and operation, then "Total value") that
// sums the Read and Write values over the devices into read and write.
func blkioFile(read, write *uint64) func(string) error {
	return func(path string) error {
		var r, w uint64
		err := eachLine(path, func(line string) error {
			fields := strings.Fields(line)
			if len(fields) != 3 || (fields[1] != "Read" && fields[1] != "Write") {
				return nil // Sync, Async, Discard, Total, and the summary
			}
			v, err := strconv.ParseUint(fields[2], 10, 64)
			if err != nil {
				return fmt.Errorf("%s: %s %s: %w", path, fields[0], fields[1], err)
			}
			if fields[1] == "Read" {
				r += v
			} else {
				w += v
			}
			return nil
		})
		if err != nil {
			return err
		}
		*read, *write = r, w
		return nil
	}
}

// eachLine calls fn with each line of path, at most maxStatLines.
func eachLine(path string, fn func(string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 0; sc.Scan(); n++ {
		if n == maxStatLines {
			return fmt.Errorf("%s: more than %d lines", path, maxStatLines)
		}
		if err := fn(sc.Text()); err != nil {
			return err
		}
	}
	return sc.Err()
}
