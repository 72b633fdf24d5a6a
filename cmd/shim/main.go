// Command berth-shim owns one container: it runs the OCI runtime for it,
// holds its stdio, reaps its processes and serves the shim API over ttrpc.
// See package shimapi for the bootstrap contract.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/internal/spantrace"
)

const usage = `usage: berth-shim start|delete --namespace NS --id ID --bundle DIR [--runtime NAME|PATH] [--runtime-root DIR]
       berth-shim delete ... [--served-as DIR]
       berth-shim start --spare --bundle DIR [--parent-pid PID]

  start   start a shim for the bundle (or find the one serving it) and print its socket address;
          with --spare, a shim in the folder DIR that serves no container until a Create binds it
          to a bundle (the folder renamed to it), and exits with its caller until then
  delete  clean up after a shim that is gone: force-delete the container, unmount its rootfs,
          print the persisted exit status as JSON; --served-as names the bundle's path while
          its shim served it, when it was renamed since (the runtime calls the shim left name it)
`

// options are the flags shared by every entry point.
type options struct {
	namespace   string
	id          string
	bundle      string
	runtime     string
	runtimeRoot string
	debug       bool
	spare       bool
	parentPid   int
	servedAs    string // delete: the bundle's path while its shim served it
}

func (o *options) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&o.namespace, "namespace", "", "namespace of the container")
	fs.StringVar(&o.id, "id", "", "container id")
	fs.StringVar(&o.bundle, "bundle", "", "absolute path of the bundle folder")
	fs.StringVar(&o.runtime, "runtime", "runc", "OCI runtime: a name looked up in PATH, or a path to a binary with runc's command line")
	fs.StringVar(&o.runtimeRoot, "runtime-root", "", "runtime state folder (default /run/berth/runc/NAMESPACE)")
	fs.BoolVar(&o.debug, "debug", false, "debug logging")
	fs.BoolVar(&o.spare, "spare", false, "start (or serve) a spare shim: no container until a Create binds it (start only)")
	fs.StringVar(&o.servedAs, "served-as", "", "with delete: the bundle's absolute path while its shim served it, when the bundle was renamed since (default --bundle)")
	fs.IntVar(&o.parentPid, "parent-pid", 0, "with --spare: the pid of the caller, which the spare outlives only once bound (default: the parent process)")
	return fs
}

func (o *options) validate(cmd string) error {
	if o.spare {
		if cmd == "delete" {
			return fmt.Errorf("--spare: a spare holds no container to delete; shut it down")
		}
		if o.namespace != "" || o.id != "" {
			return fmt.Errorf("--spare: a spare has no --namespace or --id until it is bound")
		}
	} else {
		if err := identifiers.Validate(o.namespace); err != nil {
			return fmt.Errorf("--namespace: %w", err)
		}
		if err := identifiers.Validate(o.id); err != nil {
			return fmt.Errorf("--id: %w", err)
		}
	}
	if o.bundle == "" || o.bundle[0] != '/' {
		return fmt.Errorf("--bundle %q: must be an absolute path", o.bundle)
	}
	if st, err := os.Stat(o.bundle); err != nil {
		return fmt.Errorf("--bundle: %w", err)
	} else if !st.IsDir() {
		return fmt.Errorf("--bundle %s: not a folder", o.bundle)
	}
	if o.servedAs != "" && (cmd != "delete" || o.servedAs[0] != '/') {
		return fmt.Errorf("--served-as %q: an absolute path, with delete only", o.servedAs)
	}
	if o.runtimeRoot == "" && !o.spare {
		o.runtimeRoot = "/run/berth/runc/" + o.namespace
	}
	return nil
}

func main() {
	spantrace.Mark("main")
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var o options
	cmd := os.Args[1]
	fs := o.flags(cmd)
	var run func(context.Context, *options) error
	switch cmd {
	case "start":
		run = start
	case "serve": // internal: the re-executed long-lived copy
		run = serve
	case "delete":
		run = del
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "berth-shim: unknown command %q\n%s", cmd, usage)
		os.Exit(2)
	}
	if err := fs.Parse(os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	if err := o.validate(cmd); err != nil {
		fmt.Fprintf(os.Stderr, "berth-shim %s: %v\n", cmd, err)
		os.Exit(2)
	}
	if err := run(context.Background(), &o); err != nil {
		fmt.Fprintf(os.Stderr, "berth-shim %s: %v\n", cmd, err)
		os.Exit(1)
	}
}
