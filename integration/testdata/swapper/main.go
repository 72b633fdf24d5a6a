// Command swapper is the process of TestCommitSwapRace's container: in
// its working folder it swaps the folder d with d.l, a symlink to the
// path given, over and over until SIGTERM, then prints how many swaps it
// made. Each swap is one renameat2 with RENAME_EXCHANGE, so both names
// always exist: a walk by path that crosses d finds a folder or a
// symlink, never nothing, and goes on through the symlink rather than
// failing on a missing name (as a mv and ln loop of busybox sh, with a
// fork between the steps, made it do).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: swapper TARGET")
		os.Exit(2)
	}
	if err := os.Symlink(os.Args[1], "d.l"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, unix.SIGTERM)
	fmt.Println("ready")
	for n := 0; ; n++ {
		select {
		case <-term:
			fmt.Printf("swaps %d\n", n)
			return
		default:
		}
		// Each state holds for a while, so that a walk sees both;
		// sleeping leaves the CPU to the walk.
		time.Sleep(50 * time.Microsecond)
		if err := unix.Renameat2(unix.AT_FDCWD, "d", unix.AT_FDCWD, "d.l", unix.RENAME_EXCHANGE); err != nil {
			fmt.Fprintln(os.Stderr, "swap:", err)
			os.Exit(1)
		}
	}
}
