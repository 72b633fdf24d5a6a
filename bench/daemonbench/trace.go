package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthrt/berth/bench/internal/stats"
	"github.com/berthrt/berth/internal/spantrace"
)

// A trace (-trace FILE) breaks `berthctl run --rm` down into the spans
// that berthctl, berthd and the shims record (package spantrace): each run
// is one window from berthctl's fork to its exit on the monotonic clock,
// and a span belongs to the window it starts in.

// window is one traced run: fork and exit of berthctl, monotonic ns.
type window struct{ fork, exit int64 }

// span is one line of the trace file.
type span struct {
	start, end int64
	pid        int
	process    string
	name       string
}

// readTrace parses the trace file; lines it cannot read are skipped.
func readTrace(path string) ([]span, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var spans []span
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 5 {
			continue
		}
		start, err1 := strconv.ParseInt(fields[0], 10, 64)
		end, err2 := strconv.ParseInt(fields[1], 10, 64)
		pid, err3 := strconv.Atoi(fields[2])
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		spans = append(spans, span{start, end, pid, fields[3], fields[4]})
	}
	return spans, sc.Err()
}

// reportTrace prints, for every span seen in the windows, the median
// offset of its start from berthctl's fork and its median length, in the
// order of the offsets: the timeline of a median run.
func reportTrace(f io.Writer, path string, windows []window) error {
	spans, err := readTrace(path)
	if err != nil {
		return err
	}
	type key struct{ process, name string }
	type figures struct{ offset, length stats.Samples }
	rows := map[key]*figures{}
	var order []key
	var total stats.Samples
	for _, w := range windows {
		total = append(total, time.Duration(w.exit-w.fork))
		seen := map[key]int{}
		for _, s := range spans {
			if s.start < w.fork || s.start > w.exit {
				continue
			}
			k := key{s.process, s.name}
			// A span that recurs in one run (an RPC called twice) is
			// numbered by its occurrence.
			if n := seen[k]; n > 0 {
				seen[k]++
				k.name += fmt.Sprintf("#%d", n+1)
			} else {
				seen[k] = 1
			}
			r := rows[k]
			if r == nil {
				r = &figures{}
				rows[k] = r
				order = append(order, k)
			}
			r.offset = append(r.offset, time.Duration(s.start-w.fork))
			r.length = append(r.length, time.Duration(s.end-s.start))
		}
	}
	slices.SortStableFunc(order, func(a, b key) int {
		return int(rows[a].offset.Median() - rows[b].offset.Median())
	})
	fmt.Fprintf(f, "trace of berthctl run --rm (%d runs; ms from berthctl's fork, medians; %s=%s)\n", len(windows), spantrace.Env, path)
	fmt.Fprintf(f, "  %-22s %-44s %8s %8s %5s\n", "process", "span", "at", "length", "runs")
	for _, k := range order {
		r := rows[k]
		fmt.Fprintf(f, "  %-22s %-44s %8.2f %8.2f %5d\n", k.process, k.name, stats.MS(r.offset.Median()), stats.MS(r.length.Median()), len(r.offset))
	}
	fmt.Fprintf(f, "  %-22s %-44s %8s %8.2f\n", "berthctl", "fork … exit", "", stats.MS(total.Median()))
	return nil
}
