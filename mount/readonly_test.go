package mount

import (
	"slices"
	"testing"
)

func TestReadOnly(t *testing.T) {
	in := []Mount{
		{Type: "overlay", Source: "overlay", Options: []string{"index=off", "lowerdir=/l1:/l2", "upperdir=/u", "workdir=/w"}},
		{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/l1:/l2"}},
		{Type: "overlay", Source: "overlay", Options: []string{"upperdir=/u", "workdir=/w"}},
		{Type: "bind", Source: "/s", Options: []string{"rbind", "rw"}},
	}
	orig := slices.Clone(in[0].Options)
	got := ReadOnly(in)
	want := []Mount{
		{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/u:/l1:/l2", "index=off", "ro"}},
		{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/l1:/l2", "ro"}},
		{Type: "bind", Source: "/u", Options: []string{"rbind", "ro"}},
		{Type: "bind", Source: "/s", Options: []string{"rbind", "ro"}},
	}
	for i := range want {
		if got[i].Type != want[i].Type || got[i].Source != want[i].Source || !slices.Equal(got[i].Options, want[i].Options) {
			t.Errorf("mount %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if !slices.Equal(in[0].Options, orig) {
		t.Errorf("ReadOnly changed its input: %v", in[0].Options)
	}
}
