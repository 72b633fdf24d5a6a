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

// ioDevices gathers a cgroup's block I/O per device, in the order the
// kernel lists the devices, from one or more statistics files.
type ioDevices struct {
	list  []*shimapi.BlockIO
	byDev map[string]*shimapi.BlockIO // by "MAJ:MIN"
}

// device returns the entry of device "MAJ:MIN", made on first use.
func (d *ioDevices) device(dev string) (*shimapi.BlockIO, error) {
	if io, ok := d.byDev[dev]; ok {
		return io, nil
	}
	maj, mnr, ok := strings.Cut(dev, ":")
	major, err1 := strconv.ParseUint(maj, 10, 32)
	minor, err2 := strconv.ParseUint(mnr, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("bad device %q", dev)
	}
	if d.byDev == nil {
		d.byDev = make(map[string]*shimapi.BlockIO)
	}
	io := &shimapi.BlockIO{Major: uint32(major), Minor: uint32(minor)}
	d.byDev[dev] = io
	d.list = append(d.list, io)
	return io, nil
}

// store sets m's per-device list and its sums over the devices.
func (d *ioDevices) store(m *shimapi.Metrics) {
	m.IoDevices = d.list
	m.IoReadBytes, m.IoWriteBytes, m.IoReadOps, m.IoWriteOps = 0, 0, 0, 0
	for _, io := range d.list {
		m.IoReadBytes += io.ReadBytes
		m.IoWriteBytes += io.WriteBytes
		m.IoReadOps += io.ReadOps
		m.IoWriteOps += io.WriteOps
	}
}

// ioStatFile returns a reader of cgroup v2's io.stat ("MAJ:MIN key=value
// …" per device) that keeps rbytes, wbytes, rios and wios per device.
func ioStatFile(devs *ioDevices) func(string) error {
	return func(path string) error {
		return eachLine(path, func(line string) error {
			fields := strings.Fields(line)
			if len(fields) == 0 {
				return nil
			}
			io, err := devs.device(fields[0])
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			for _, f := range fields[1:] {
				key, value, ok := strings.Cut(f, "=")
				var dst *uint64
				switch key {
				case "rbytes":
					dst = &io.ReadBytes
				case "wbytes":
					dst = &io.WriteBytes
				case "rios":
					dst = &io.ReadOps
				case "wios":
					dst = &io.WriteOps
				}
				if !ok || dst == nil {
					continue
				}
				v, err := strconv.ParseUint(value, 10, 64)
				if err != nil {
					return fmt.Errorf("%s: %s: %w", path, key, err)
				}
				*dst = v
			}
			return nil
		})
	}
}

// blkioFile returns a reader of a cgroup v1 blkio statistics file
// ("MAJ:MIN Op value" per device and operation, then "Total value") that
// keeps each device's Read and Write values in the fields that read and
// write select.
func blkioFile(devs *ioDevices, read, write func(*shimapi.BlockIO) *uint64) func(string) error {
	return func(path string) error {
		return eachLine(path, func(line string) error {
			fields := strings.Fields(line)
			if len(fields) != 3 || (fields[1] != "Read" && fields[1] != "Write") {
				return nil // Sync, Async, Discard, Total, and the summary
			}
			v, err := strconv.ParseUint(fields[2], 10, 64)
			if err != nil {
				return fmt.Errorf("%s: %s %s: %w", path, fields[0], fields[1], err)
			}
			io, err := devs.device(fields[0])
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if fields[1] == "Read" {
				*read(io) = v
			} else {
				*write(io) = v
			}
			return nil
		})
	}
}

// pressureFile returns a reader of a pressure stall file ("some
// avg10=PCT avg60=PCT avg300=PCT total=USEC", and the same for "full")
// into *dst.
func pressureFile(dst **shimapi.Pressure) func(string) error {
	return func(path string) error {
		p := &shimapi.Pressure{}
		err := eachLine(path, func(line string) error {
			kind, rest, _ := strings.Cut(line, " ")
			var total *uint64
			var avg10, avg60, avg300 *float64
			switch kind {
			case "some":
				total, avg10, avg60, avg300 = &p.SomeUs, &p.SomeAvg10, &p.SomeAvg60, &p.SomeAvg300
			case "full":
				total, avg10, avg60, avg300 = &p.FullUs, &p.FullAvg10, &p.FullAvg60, &p.FullAvg300
			default:
				return nil
			}
			for f := range strings.FieldsSeq(rest) {
				key, value, _ := strings.Cut(f, "=")
				var avg *float64
				switch key {
				case "total":
					n, err := strconv.ParseUint(value, 10, 64)
					if err != nil {
						return fmt.Errorf("%s: %s total: %w", path, kind, err)
					}
					*total = n
					continue
				case "avg10":
					avg = avg10
				case "avg60":
					avg = avg60
				case "avg300":
					avg = avg300
				default:
					continue
				}
				v, err := strconv.ParseFloat(value, 64)
				if err != nil || !(v >= 0 && v <= 100) { // NaN too
					return fmt.Errorf("%s: %s %s: bad percentage %q", path, kind, key, value)
				}
				*avg = v
			}
			return nil
		})
		if err != nil {
			return err
		}
		*dst = p
		return nil
	}
}

// cpuMaxFile returns a reader of cgroup v2's cpu.max ("QUOTA PERIOD",
// QUOTA "max" when there is none) into quota and period.
func cpuMaxFile(quota, period *uint64) func(string) error {
	return func(path string) error {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		q, p, ok := strings.Cut(strings.TrimSpace(string(data)), " ")
		pv, err := strconv.ParseUint(p, 10, 64)
		if !ok || err != nil {
			return fmt.Errorf("%s: bad content %q", path, data)
		}
		var qv uint64
		if q != "max" {
			if qv, err = strconv.ParseUint(q, 10, 64); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
		*quota, *period = qv, pv
		return nil
	}
}

// intFile returns a reader of a file holding one signed number into dst;
// a negative one (v1's -1: none) reads as 0.
func intFile(dst *uint64) func(string) error {
	return func(path string) error {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		*dst = uint64(max(v, 0))
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
