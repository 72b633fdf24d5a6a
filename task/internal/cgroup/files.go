package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
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
