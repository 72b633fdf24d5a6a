package task

import (
	"slices"
	"testing"

	"github.com/berthrt/berth/mount"
)

// TestWithVolatile: only writable overlays get the option, once, and the
// mounts given are not changed.
func TestWithVolatile(t *testing.T) {
	writable := []string{"lowerdir=/l", "upperdir=/u", "workdir=/w"}
	in := []mount.Mount{
		{Type: "overlay", Source: "overlay", Options: slices.Clone(writable)},
		{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/a:/b"}}, // a view: no upper
		{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/l", "upperdir=/u2", "workdir=/w2", "volatile"}},
		{Type: "bind", Source: "/src", Options: []string{"rbind", "rw"}},
	}
	before := slices.Clone(in[0].Options)
	out, workdirs := withVolatile(in)
	if !slices.Equal(in[0].Options, before) {
		t.Fatalf("the given mount's options changed: %v", in[0].Options)
	}
	if want := append(slices.Clone(writable), "volatile"); !slices.Equal(out[0].Options, want) {
		t.Errorf("writable overlay: %v, want %v", out[0].Options, want)
	}
	for i := 1; i < len(in); i++ {
		if !slices.Equal(out[i].Options, in[i].Options) {
			t.Errorf("mount %d: %v, want it unchanged (%v)", i, out[i].Options, in[i].Options)
		}
	}
	if !slices.Equal(workdirs, []string{"/w"}) {
		t.Errorf("work folders %v, want [/w]", workdirs)
	}
}
