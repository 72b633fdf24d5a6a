// Command busybox-archive writes an OCI image layout tar of a busybox
// image made from the host's busybox-static, for `berthctl images
// import`:
//
//	go run ./internal/testimage/cmd/busybox-archive [-name REF] [-busybox PATH] OUT
//
// OUT "-" is stdout. The image is linux/amd64, one layer, its config
// running sh with PATH set; the archive names it REF (default
// docker.io/library/busybox:latest).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/berthrt/berth/internal/testimage"
)

func main() {
	name := flag.String("name", "docker.io/library/busybox:latest", "the image's name in the archive")
	bb := flag.String("busybox", "", "the static busybox binary (default: busybox in PATH)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: busybox-archive [-name REF] [-busybox PATH] OUT|-")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *name, *bb); err != nil {
		fmt.Fprintln(os.Stderr, "busybox-archive:", err)
		os.Exit(1)
	}
}

func run(out, name, bb string) error {
	img, err := testimage.Busybox(bb)
	if err != nil {
		return err
	}
	if out == "-" {
		return write(os.Stdout, img, name)
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if err := write(f, img, name); err != nil {
		f.Close()
		os.Remove(out)
		return err
	}
	return f.Close()
}

func write(w io.Writer, img *testimage.Image, name string) error {
	bw := bufio.NewWriter(w)
	if err := img.WriteOCIArchive(bw, name); err != nil {
		return err
	}
	return bw.Flush()
}
