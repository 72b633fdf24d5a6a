package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/spf13/cobra"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/internal/dirs"
	"github.com/berthrt/berth/internal/proc"
	"github.com/berthrt/berth/io/cio"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/storage/content/local"
	"github.com/berthrt/berth/storage/metadata"
	"github.com/berthrt/berth/supervisor"
)

// checkOpenTimeout is how long check waits for meta.db's lock: a running
// berthd holds it, and then check refuses at once rather than wait.
const checkOpenTimeout = time.Second

// errInconsistent makes check exit 1 after it printed the problems.
var errInconsistent = errors.New("inconsistent")

// checkCommand is `berthd check`: offline, against the root and state
// folders of a stopped berthd. Offline because it must work when berthd
// cannot start, it must see the stores as a crash left them (berthd's
// start repairs some of it: orphan snapshot folders, dead shims' bundles),
// and berthctl may not link the stores; a running berthd holds meta.db's
// lock, and check then says so.
func checkCommand() *cobra.Command {
	var f flags
	c := &cobra.Command{
		Use:   "check",
		Short: "check the metadata against the disk, with berthd stopped",
		Long: `check compares berthd's metadata with what is on disk and prints one line
per problem (class, namespace, object, detail; tab-separated): containers
without their snapshot, snapshots recorded but missing and snapshots or
folders that nothing records, commits a crash interrupted, blobs recorded but
missing or unrecorded, ingests no lease holds that GC should have
aborted (idle for longer than its TTL), bundles without a container
record or a live shim, the runtime's state of containers that no bundle (nor
a deleted task's bundle, set aside for berthd to finish) holds, mounts under
the root or state folders that no live container uses, and FIFO folders that
no process holds open. It changes
nothing. Exit status 1 when it found a problem. Run it while berthd is
stopped: berthd holds its metadata's lock while it runs.`,
		Example:       "  berthd check --root /var/lib/berth --state /run/berth",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.load(cmd)
			if err != nil {
				return err
			}
			problems, err := check(cmd.Context(), cfg)
			for _, p := range problems {
				fmt.Fprintln(cmd.OutOrStdout(), p)
			}
			if err != nil {
				return err
			}
			if len(problems) > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "berthd check: %d problems\n", len(problems))
				return errInconsistent
			}
			return nil
		},
	}
	f.register(c, false)
	return c
}

// check runs every check against cfg's folders.
func check(ctx context.Context, cfg *Config) ([]metadata.Problem, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	path := filepath.Join(cfg.Root, "meta.db")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("check %s: %w", cfg.Root, err)
	}
	db, err := metadata.Open(path, metadata.WithOpenTimeout(checkOpenTimeout))
	if errdefs.IsUnavailable(err) {
		return nil, fmt.Errorf("%s is locked: is berthd running? stop it first: %w", path, err)
	}
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var problems []metadata.Problem
	// The snapshotters' folders before the snapshotters: opening one
	// removes the folders that it has no record of.
	for _, name := range builtinSnapshotters {
		unknown, missing, err := builtins[name].checkFolders(filepath.Join(cfg.Root, "snapshots", name))
		if err != nil {
			return problems, fmt.Errorf("snapshotter %s: %w", name, err)
		}
		for _, dir := range unknown {
			problems = append(problems, metadata.Problem{What: "snapshot-folder-unknown", Object: dir, Detail: "no snapshot of " + name + " names it"})
		}
		for _, dir := range missing {
			problems = append(problems, metadata.Problem{What: "snapshot-folder-missing", Object: dir, Detail: "the snapshot of " + name + " has no folder"})
		}
	}
	ps, err := db.CheckContainers(ctx)
	if err != nil {
		return problems, err
	}
	problems = append(problems, ps...)
	for _, name := range builtinSnapshotters {
		root := filepath.Join(cfg.Root, "snapshots", name)
		if _, err := os.Stat(root); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		sn, err := builtins[name].open(root)
		if errdefs.IsNotImplemented(err) {
			continue // btrfs on another filesystem: berthd does not use it
		}
		if err != nil {
			return problems, fmt.Errorf("snapshotter %s: %w", name, err)
		}
		ps, err := db.CheckSnapshots(ctx, name, sn)
		sn.Close()
		if err != nil {
			return problems, err
		}
		problems = append(problems, ps...)
	}
	localStore, err := local.NewStore(filepath.Join(cfg.Root, "content"))
	if err != nil {
		return problems, err
	}
	if ps, err = db.CheckContent(ctx, localStore, metadata.DefaultIngestTTL); err != nil {
		return problems, err
	}
	problems = append(problems, ps...)
	ps, err = checkState(ctx, cfg, db)
	return append(problems, ps...), err
}

// checkState checks the state folder: bundles against container records
// and live shims, the runtime's state against bundles, mounts under the
// root and state folders, FIFO folders.
func checkState(ctx context.Context, cfg *Config, db *metadata.DB) ([]metadata.Problem, error) {
	var problems []metadata.Problem
	add := func(what, ns, obj, detail string) {
		problems = append(problems, metadata.Problem{What: what, Namespace: ns, Object: obj, Detail: detail})
	}
	live := map[string]bool{}     // bundles whose shim runs
	tasks := map[string]bool{}    // ids of the bundles that a live shim or a kept exit status holds
	recorded := map[string]bool{} // FIFO folders of execs that a bundle records, removed with it
	nss, err := dirs.Names(cfg.State)
	if err != nil {
		return nil, err
	}
	for _, ns := range nss {
		if identifiers.Validate(ns) != nil {
			continue
		}
		ids, err := dirs.Names(filepath.Join(cfg.State, ns))
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			bundle := filepath.Join(cfg.State, ns, id)
			if _, err := db.Containers().Get(namespaces.WithNamespace(ctx, ns), id); errdefs.IsNotFound(err) {
				add("bundle-without-container", ns, bundle, "no container record")
			} else if err != nil {
				return nil, err
			}
			for _, name := range supervisor.RecordedExecFIFOFolders(bundle) {
				recorded[name] = true
			}
			switch {
			case supervisor.BundleShimServes(bundle):
				live[bundle], tasks[id] = true, true
			case exists(filepath.Join(bundle, supervisor.ReapedMarker)):
				// The shim is gone and the bundle keeps the exit
				// status until the task is deleted.
				tasks[id] = true
			default:
				add("bundle-without-shim", ns, bundle, "no live shim and no exit status kept")
			}
		}
	}
	left, err := supervisor.RuntimeStateLeft(cfg.State)
	if err != nil {
		return nil, err
	}
	for _, dir := range left {
		add("runtime-state-left", filepath.Base(filepath.Dir(dir)), dir, "the runtime's container of no task: its cgroups are left too, and the runtime refuses a new container of its id (runc delete --force it)")
	}
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (bool, bool) {
		return !under(m.Mountpoint, cfg.Root) && !under(m.Mountpoint, cfg.State), false
	})
	if err != nil {
		return nil, err
	}
	for _, m := range mounts {
		if filepath.Base(m.Mountpoint) == "rootfs" && live[filepath.Dir(m.Mountpoint)] {
			continue
		}
		add("mount-left", "", m.Mountpoint, m.FSType+" mount that no live container uses")
	}
	fifoRoot := filepath.Join(cfg.State, filepath.Base(cio.DefaultFIFODir))
	fifoDirs, err := dirs.Names(fifoRoot)
	if err != nil || len(fifoDirs) == 0 {
		return problems, err
	}
	open := proc.OpenFolders()
	for _, d := range fifoDirs {
		// A Creator names the folder "<id>-<random>" (cio.NewFIFOSetInDir);
		// its task's bundle may not hold the FIFOs open, with no stdio.
		dir := filepath.Join(fifoRoot, d)
		id := d[:max(strings.LastIndexByte(d, '-'), 0)]
		if !open[dir] && !tasks[id] && !recorded[d] {
			add("fifo-folder-left", "", dir, "no task of its id and no process holds a FIFO in it open")
		}
	}
	return problems, nil
}

func under(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../")
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
