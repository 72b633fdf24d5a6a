package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/fsperm"
	"github.com/berthrt/berth/services/introspection"
	snapshotsvc "github.com/berthrt/berth/services/snapshots"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/snapshots/proxy"
	"github.com/berthrt/berth/storage/metadata"
	"github.com/berthrt/berth/storage/snapshots/btrfs"
	"github.com/berthrt/berth/storage/snapshots/native"
	"github.com/berthrt/berth/storage/snapshots/overlay"
)

// builtinSnapshotters are the snapshotters berthd has, each in
// <root>/snapshots/<name>.
var builtinSnapshotters = []string{overlay.Name, native.Name, btrfs.Name}

// builtins open each built-in snapshotter, and check its folders read-only
// (berthd check).
var builtins = map[string]struct {
	open         func(root string) (snapshots.Snapshotter, error)
	checkFolders func(root string) (unknown, missing []string, err error)
}{
	overlay.Name: {overlay.New, overlay.CheckFolders},
	native.Name:  {native.New, native.CheckFolders},
	btrfs.Name:   {btrfs.New, btrfs.CheckFolders},
}

// proxyDialTimeout bounds connecting to an external snapshotter at start.
const proxyDialTimeout = 5 * time.Second

// snapshotters are the daemon's snapshotters: the built-in ones and the
// proxy plugins of type "snapshot", each under the namespaced view of the
// metadata DB.
type snapshotters struct {
	// service is what the snapshots API serves.
	service snapshotsvc.Config
	// collectors are the GC's view of every snapshotter that opened.
	collectors []metadata.SnapshotCollector
	// introspection lists every snapshotter, with its error if it failed.
	introspection []introspection.Service
}

// openSnapshotters opens every snapshotter of cfg. One that fails to open
// (overlayfs on a filesystem overlay cannot use, an external snapshotter
// that does not answer) is logged and listed as failed: the daemon serves
// the others.
func openSnapshotters(cfg *Config, db *metadata.DB, log *slog.Logger) *snapshotters {
	s := &snapshotters{service: snapshotsvc.Config{
		Snapshotters: map[string]snapshots.Snapshotter{},
		Failed:       map[string]error{},
		Default:      cfg.Snapshotter.Default,
	}}
	add := func(name string, exports map[string]string, sn snapshots.Snapshotter, err error) {
		svc := introspection.Service{Type: "berth.snapshotter.v1", ID: name, Exports: exports}
		switch {
		case errdefs.IsNotImplemented(err):
			// Not for this host (btrfs on another filesystem): expected,
			// not an error on every start.
			log.Info("snapshotter not available", "snapshotter", name, "reason", err)
		case err != nil:
			log.Error("snapshotter did not open", "snapshotter", name, "error", err)
		}
		if err != nil {
			s.service.Failed[name], svc.Err = err, err
		} else {
			s.service.Snapshotters[name] = db.Snapshotter(name, sn)
			s.collectors = append(s.collectors, db.SnapshotCollector(name, sn))
		}
		s.introspection = append(s.introspection, svc)
	}
	for _, name := range builtinSnapshotters {
		root := filepath.Join(cfg.Root, "snapshots", name)
		sn, err := openBuiltin(root, builtins[name].open)
		add(name, map[string]string{"root": root}, sn, err)
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.ProxyPlugins)) {
		p := cfg.ProxyPlugins[name]
		if p.Type != proxySnapshot {
			continue
		}
		sn, err := dialProxy(p.Address, name)
		add(name, map[string]string{"address": p.Address}, sn, err)
	}
	slices.SortFunc(s.introspection, func(a, b introspection.Service) int { return strings.Compare(a.ID, b.ID) })
	return s
}

func openBuiltin(root string, open func(string) (snapshots.Snapshotter, error)) (snapshots.Snapshotter, error) {
	for _, dir := range []string{filepath.Dir(root), root} {
		if err := fsperm.Restrict(dir, rootPerm); err != nil {
			return nil, err
		}
	}
	return open(root)
}

// dialProxy connects to the external snapshotter at address and returns
// it under name (the proxy plugin's; the program may serve any name).
func dialProxy(address, name string) (snapshots.Snapshotter, error) {
	ctx, cancel := context.WithTimeout(context.Background(), proxyDialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", address)
	if err != nil {
		return nil, fmt.Errorf("connect to external snapshotter at %s: %w", address, err)
	}
	return proxy.New(ttrpc.NewClient(conn, ttrpc.WithUnaryClientInterceptor(errdefs.ClientErrors)), name), nil
}

// Close closes every snapshotter that opened.
func (s *snapshotters) Close() error {
	var errs []error
	for name, sn := range s.service.Snapshotters {
		if err := sn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close snapshotter %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
