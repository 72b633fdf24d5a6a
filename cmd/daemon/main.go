// Command berthd is berth's daemon. The daemon services (metadata,
// supervisor, images) are not built yet; today it reports its version.
package main

import (
	"fmt"
	"os"

	"github.com/berthrt/berth/version"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "version" {
		fmt.Println("berthd", version.Version)
		return
	}
	fmt.Fprintln(os.Stderr, "berthd: only `berthd version` exists so far; run containers through a shim with `berthctl shim run`")
	os.Exit(2)
}
