package proc

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Memory is what a process holds, from /proc/PID/smaps_rollup, in kB.
type Memory struct {
	PSSKB, RSSKB int
	// PSSAnonKB and PSSFileKB split Pss into heap and stacks versus mapped
	// files (mostly the binary's text); -1 when the kernel does not say.
	PSSAnonKB, PSSFileKB int
}

// MiB converts kB to MiB for printing.
func MiB(kb int) float64 { return float64(kb) / 1024 }

// ReadMemory reads the Pss and Rss totals of a process.
func ReadMemory(pid int) (Memory, error) {
	m := Memory{PSSAnonKB: -1, PSSFileKB: -1}
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return m, err
	}
	defer f.Close()
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var dst *int
		required := false
		switch key, _, _ := strings.Cut(sc.Text(), ":"); key {
		case "Pss":
			dst, required = &m.PSSKB, true
		case "Rss":
			dst, required = &m.RSSKB, true
		case "Pss_Anon":
			dst = &m.PSSAnonKB
		case "Pss_File":
			dst = &m.PSSFileKB
		default:
			continue
		}
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 || fields[2] != "kB" {
			return m, fmt.Errorf("smaps_rollup of %d: unexpected line %q", pid, sc.Text())
		}
		if *dst, err = strconv.Atoi(fields[1]); err != nil {
			return m, fmt.Errorf("smaps_rollup of %d: %w", pid, err)
		}
		if required {
			found++
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if found != 2 {
		return m, fmt.Errorf("smaps_rollup of %d: no Pss and Rss lines", pid)
	}
	return m, nil
}
