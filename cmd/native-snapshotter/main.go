// Command native-snapshotter is an external snapshotter: it serves the
// native snapshotter (plain copies, package storage/snapshots/native) over
// the snapshots API (berth.services.snapshots.v1) on a unix socket, for
// berthd to use through its config:
//
//	[proxy_plugins.mynative]
//	type = "snapshot"
//	address = "/run/native-snapshotter.sock"
//
// It answers every snapshotter name (berthd sends the proxy plugin's) and
// knows no namespaces: berthd keeps each namespace's records and names
// the snapshots underneath. SIGTERM or SIGINT stops it: calls under way
// finish (for at most five seconds), and the socket is removed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/fsperm"
	"github.com/berthrt/berth/internal/rpcguard"
	"github.com/berthrt/berth/internal/unixsock"
	snapshotsvc "github.com/berthrt/berth/services/snapshots"
	"github.com/berthrt/berth/storage/snapshots/native"
)

// shutdownTimeout bounds how long a stopping server waits for calls.
const shutdownTimeout = 5 * time.Second

func main() {
	address := flag.String("address", "/run/berth-native-snapshotter.sock", "unix socket to serve on (made with mode 0600)")
	root := flag.String("root", "/var/lib/berth-native-snapshotter", "folder of the snapshots and their metadata")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "native-snapshotter: no arguments expected")
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*address, *root); err != nil {
		fmt.Fprintln(os.Stderr, "native-snapshotter:", err)
		os.Exit(1)
	}
}

func run(address, root string) (err error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if root, err = filepath.Abs(root); err != nil {
		return err
	}
	// The layers hold containers' files (setuid ones, device nodes): no
	// host user but root may reach them, also in an older install.
	if err := fsperm.Restrict(root, 0o700); err != nil {
		return err
	}
	sn, err := native.New(root)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sn.Close()) }()
	srv, err := ttrpc.NewServer(append(errdefs.ServerOpts(), ttrpc.WithServerHandshaker(rpcguard.Handshaker(nil, rpcguard.DefaultLimits)))...)
	if err != nil {
		return err
	}
	snapshotsvc.Register(srv, snapshotsvc.Config{Any: sn})
	if err := os.MkdirAll(filepath.Dir(address), 0o711); err != nil {
		return err
	}
	l, err := unixsock.Listen(address)
	if err != nil {
		return err
	}
	defer os.Remove(address)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()
	log.Info("native-snapshotter serving", "address", address, "root", root)
	select {
	case err := <-served:
		if err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
			return fmt.Errorf("serve %s: %w", address, err)
		}
		return nil
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	log.Info("native-snapshotter stopped")
	return nil
}
