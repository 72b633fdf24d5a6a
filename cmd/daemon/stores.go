package main

import (
	"log/slog"
	"path/filepath"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/internal/fsperm"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/storage/content/local"
	"github.com/berthrt/berth/storage/metadata"
	"github.com/berthrt/berth/supervisor"
)

// stores is what berthd keeps durably: the metadata database, the blob
// store, the snapshotters, and the folder where services mount what they
// cannot use in place.
type stores struct {
	db          *metadata.DB
	contentRoot string
	blobs       content.Store // the local store; nsContent is what namespaces see
	nsContent   content.Store
	tempMounts  string
	snaps       *snapshotters
}

// openStores opens the stores under cfg.Root, after making sure that no
// host user but root reaches the root and state folders. Close closes
// them.
func openStores(cfg *Config, log *slog.Logger) (*stores, error) {
	// Containers' files are under both folders: no host user but root may
	// reach them (the CVE-2021-41103 class). Folders an earlier release
	// made looser are tightened here.
	if err := fsperm.Restrict(cfg.Root, rootPerm); err != nil {
		return nil, err
	}
	if err := fsperm.Restrict(cfg.State, supervisor.StatePerm); err != nil {
		return nil, err
	}
	db, err := metadata.Open(filepath.Join(cfg.Root, "meta.db"))
	if err != nil {
		return nil, err
	}
	st := &stores{db: db, contentRoot: filepath.Join(cfg.Root, "content"), tempMounts: filepath.Join(cfg.Root, tempMountsName)}
	fail := func(err error) (*stores, error) {
		db.Close()
		return nil, err
	}
	// With the database held no other daemon runs on this root: what is
	// mounted in its temporary mount folder was left by a killed one.
	if err := mount.CleanupTempMounts(st.tempMounts); err != nil {
		log.Warn("remove temporary mounts left by an earlier daemon", "folder", st.tempMounts, "error", err)
	}
	if err := fsperm.Restrict(st.tempMounts, mount.TempMountPerm); err != nil {
		return fail(err)
	}
	if st.blobs, err = local.NewStore(st.contentRoot); err != nil {
		return fail(err)
	}
	st.nsContent = db.ContentStore(st.blobs)
	st.snaps = openSnapshotters(cfg, db, log.With("component", "snapshots"))
	return st, nil
}

// Close closes the snapshotters, then the database.
func (st *stores) Close() error {
	st.snaps.Close()
	return st.db.Close()
}
