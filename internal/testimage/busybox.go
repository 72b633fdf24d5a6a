package testimage

import (
	"archive/tar"
	"fmt"
	"os"
	"os/exec"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BusyboxEntries returns the entries of a minimal root filesystem made
// from the host's static busybox at path (Debian's busybox-static; ""
// looks it up in PATH): bin/busybox with a symlink per applet, etc/passwd
// and etc/group with root, and the folders a container expects (proc,
// sys, dev, tmp, root). The binary must be static: the image holds no
// libraries.
func BusyboxEntries(path string) ([]Entry, error) {
	if path == "" {
		p, err := exec.LookPath("busybox")
		if err != nil {
			return nil, fmt.Errorf("busybox not found (apt-get install busybox-static): %w", err)
		}
		path = p
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(path, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", path, err)
	}
	entries := []Entry{
		Dir("bin"), Dir("etc"), Dir("proc"), Dir("sys"), Dir("dev"), Dir("root"),
		{Name: "tmp", Type: tar.TypeDir, Mode: 0o1777},
		Executable("bin/busybox", bin),
		File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
		File("etc/group", "root:x:0:\n"),
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" && !strings.Contains(applet, "/") {
			entries = append(entries, Symlink("bin/"+applet, "busybox"))
		}
	}
	return entries, nil
}

// Busybox builds a one-layer image of BusyboxEntries(path) whose config
// runs sh with PATH set, as docker.io/library/busybox does.
func Busybox(path string) (*Image, error) {
	entries, err := BusyboxEntries(path)
	if err != nil {
		return nil, err
	}
	return Build(BusyboxConfig(), entries)
}

// BusyboxConfig is the runtime config of Busybox's image.
func BusyboxConfig() ocispec.ImageConfig {
	return ocispec.ImageConfig{
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd: []string{"sh"},
	}
}
