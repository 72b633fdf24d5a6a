package mount

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseOptions(t *testing.T) {
	tests := []struct {
		opts        []string
		flags       uintptr
		propagation uintptr
		data        string
	}{
		{opts: nil},
		{opts: []string{"defaults", ""}},
		{opts: []string{"ro"}, flags: unix.MS_RDONLY},
		{opts: []string{"ro", "rw"}},
		{opts: []string{"rw", "ro"}, flags: unix.MS_RDONLY},
		{opts: []string{"nosuid", "nodev", "noexec"}, flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{opts: []string{"nosuid", "suid", "nodev", "dev", "noexec", "exec"}},
		{opts: []string{"sync", "dirsync"}, flags: unix.MS_SYNCHRONOUS | unix.MS_DIRSYNC},
		{opts: []string{"sync", "async"}},
		{opts: []string{"mand"}, flags: unix.MS_MANDLOCK},
		{opts: []string{"mand", "nomand"}},
		{opts: []string{"remount", "ro"}, flags: unix.MS_REMOUNT | unix.MS_RDONLY},
		{opts: []string{"bind"}, flags: unix.MS_BIND},
		{opts: []string{"rbind", "ro"}, flags: unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY},
		{opts: []string{"noatime", "nodiratime"}, flags: unix.MS_NOATIME | unix.MS_NODIRATIME},
		{opts: []string{"noatime", "atime"}},
		{opts: []string{"noatime", "relatime"}, flags: unix.MS_RELATIME},
		{opts: []string{"relatime", "strictatime"}, flags: unix.MS_STRICTATIME},
		{opts: []string{"strictatime", "noatime"}, flags: unix.MS_NOATIME},
		{opts: []string{"private"}, propagation: unix.MS_PRIVATE},
		{opts: []string{"rprivate"}, propagation: unix.MS_PRIVATE | unix.MS_REC},
		{opts: []string{"shared"}, propagation: unix.MS_SHARED},
		{opts: []string{"rshared"}, propagation: unix.MS_SHARED | unix.MS_REC},
		{opts: []string{"slave"}, propagation: unix.MS_SLAVE},
		{opts: []string{"rslave"}, propagation: unix.MS_SLAVE | unix.MS_REC},
		{opts: []string{"unbindable"}, propagation: unix.MS_UNBINDABLE},
		{opts: []string{"shared", "runbindable"}, propagation: unix.MS_UNBINDABLE | unix.MS_REC},
		{
			opts:  []string{"nosuid", "mode=755", "size=65536k", "ro"},
			flags: unix.MS_NOSUID | unix.MS_RDONLY,
			data:  "mode=755,size=65536k",
		},
		{
			opts: []string{"lowerdir=/l1:/l2", "upperdir=/u", "workdir=/w", "index=off"},
			data: "lowerdir=/l1:/l2,upperdir=/u,workdir=/w,index=off",
		},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.opts, ","), func(t *testing.T) {
			flags, propagation, data := ParseOptions(tt.opts)
			if flags != tt.flags || propagation != tt.propagation || data != tt.data {
				t.Errorf("ParseOptions(%q) = %#x, %#x, %q; want %#x, %#x, %q",
					tt.opts, flags, propagation, data, tt.flags, tt.propagation, tt.data)
			}
		})
	}
}

func FuzzParseOptions(f *testing.F) {
	f.Add("rbind,ro,rprivate,mode=755")
	f.Add("lowerdir=/a:/b,upperdir=/u,,workdir=/w")
	f.Fuzz(func(t *testing.T, s string) {
		opts := strings.Split(s, ",")
		_, _, data := ParseOptions(opts)
		if data == "" {
			return
		}
		for _, d := range strings.Split(data, ",") {
			if d == "" {
				t.Fatalf("empty option in data %q", data)
			}
			if _, ok := mountFlags[d]; ok {
				t.Fatalf("flag %q left in data %q", d, data)
			}
			if _, ok := propagationFlags[d]; ok {
				t.Fatalf("propagation %q left in data %q", d, data)
			}
		}
	})
}
