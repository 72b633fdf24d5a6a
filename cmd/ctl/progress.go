package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/images/progress"
)

// redrawInterval bounds how often a live display redraws.
const redrawInterval = 100 * time.Millisecond

// progressDisplay shows the reports of a pull or push: on a terminal, a
// line per blob redrawn in place; otherwise a plain line each time a
// blob's status changes, which a log or a script can read. It is used by
// the goroutine that runs the transfer.
type progressDisplay struct {
	out   io.Writer
	live  bool
	width int // of the terminal, when live

	blobs []*blobProgress // first seen first
	byRef map[string]*blobProgress
	drawn int       // lines of the last live drawing
	at    time.Time // of the last live drawing
}

type blobProgress struct {
	p      client.Progress
	status progress.Status // last printed, when not live
}

// newProgressDisplay returns a display on out, live when out is a
// terminal.
func newProgressDisplay(out io.Writer) *progressDisplay {
	d := &progressDisplay{out: out, byRef: map[string]*blobProgress{}}
	if f, ok := out.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
			d.live, d.width = true, int(ws.Col)
		}
	}
	return d
}

// update records a report; it is a client.WithPullProgress function.
func (d *progressDisplay) update(p client.Progress) {
	b, ok := d.byRef[p.Ref]
	if !ok {
		b = &blobProgress{}
		d.byRef[p.Ref] = b
		d.blobs = append(d.blobs, b)
	}
	changed := b.p.Status != p.Status
	b.p = p
	if !d.live {
		if changed {
			fmt.Fprintln(d.out, blobLine(p, 0))
		}
		return
	}
	if changed || time.Since(d.at) >= redrawInterval {
		d.draw()
	}
}

// finish draws the last state.
func (d *progressDisplay) finish() {
	if d.live {
		d.draw()
	}
}

// draw redraws every blob's line in place: up over the last drawing,
// then each line cleared and written.
func (d *progressDisplay) draw() {
	var b strings.Builder
	if d.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", d.drawn)
	}
	for _, blob := range d.blobs {
		b.WriteString("\r\x1b[2K")
		b.WriteString(blobLine(blob.p, d.width))
		b.WriteByte('\n')
	}
	io.WriteString(d.out, b.String())
	d.drawn, d.at = len(d.blobs), time.Now()
}

// blobLine is "layer  sha256:0123456789ab  downloading  [====    ]  1.0 MiB/4.0 MiB";
// the bar only when width leaves room for it.
func blobLine(p client.Progress, width int) string {
	line := fmt.Sprintf("%-8s %-19s %-11s", blobKind(p.MediaType), shortDigest(p.Digest.String()), p.Status)
	sizes := humanSize(p.Offset) + "/" + humanSize(p.Total)
	if p.Status == progress.StatusDone || p.Status == progress.StatusExists {
		sizes = humanSize(p.Total)
	}
	if bar := width - len(line) - len(sizes) - 6; bar >= 10 {
		bar = min(bar, 40)
		filled := 0
		if p.Total > 0 {
			filled = int(min(p.Offset, p.Total) * int64(bar) / p.Total)
		}
		line += " [" + strings.Repeat("=", filled) + strings.Repeat(" ", bar-filled) + "]"
	}
	return line + "  " + sizes
}

// blobKind names a blob by its media type.
func blobKind(mediaType string) string {
	switch {
	case images.IsIndex(mediaType):
		return "index"
	case images.IsManifest(mediaType):
		return "manifest"
	case strings.Contains(mediaType, "config"):
		return "config"
	case strings.Contains(mediaType, "layer"):
		return "layer"
	}
	return "blob"
}

// shortDigest is "sha256:" and the first 12 hex digits.
func shortDigest(d string) string {
	if alg, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return alg + ":" + hex[:12]
	}
	return d
}

// humanSize is n bytes in binary units: "512 B", "1.5 KiB", "50.0 MiB".
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
