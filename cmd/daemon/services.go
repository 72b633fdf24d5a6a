package main

import (
	"path/filepath"

	"github.com/containerd/ttrpc"

	"github.com/berthrt/berth/services"
	"github.com/berthrt/berth/services/containers"
	contentsvc "github.com/berthrt/berth/services/content"
	diffsvc "github.com/berthrt/berth/services/diff"
	eventsvc "github.com/berthrt/berth/services/events"
	gcsvc "github.com/berthrt/berth/services/gc"
	imagesvc "github.com/berthrt/berth/services/images"
	"github.com/berthrt/berth/services/introspection"
	leasesvc "github.com/berthrt/berth/services/leases"
	nssvc "github.com/berthrt/berth/services/namespaces"
	snapshotsvc "github.com/berthrt/berth/services/snapshots"
	"github.com/berthrt/berth/services/tasks"
	transfersvc "github.com/berthrt/berth/services/transfer"
)

// apiService is one registration on the API server: the services (ids)
// that register serves, each listed by introspection with exports.
type apiService struct {
	ids      []string
	exports  map[string]string
	register func(*ttrpc.Server) error
}

// registerServices wires every service of the daemon API onto the API
// server. Introspection lists what this table registers (then the
// snapshotters and the metadata store), so the list and the registrations
// cannot drift apart.
func (d *daemon) registerServices(cfg *Config, st *stores) error {
	db, locks := st.db, &services.IDLocks{}
	gcInterval, gcDelay, _, _ := cfg.GC.durations() // validated with the config
	registryTimeouts, _ := cfg.Registry.timeouts()  // validated with the config
	var listed []introspection.Service
	table := []apiService{
		{ids: []string{"namespaces"}, register: func(srv *ttrpc.Server) error {
			nssvc.Register(srv, db.Namespaces(), d.exchange)
			return nil
		}},
		{ids: []string{"containers"}, register: func(srv *ttrpc.Server) error {
			containers.Register(srv, containers.Config{Store: db.Containers(), Tasks: taskIndex{d.sup}, Publisher: d.exchange, DefaultRuntime: cfg.Runtime.Default, Locks: locks, Snapshotter: st.snaps.service.Snapshotter})
			return nil
		}},
		{ids: []string{"tasks"}, exports: map[string]string{"state": cfg.State, "runtime": cfg.Runtime.Default, "shim": d.shim}, register: func(srv *ttrpc.Server) error {
			tasks.Register(srv, tasks.Config{Containers: db.Containers(), Supervisor: d.sup, Locks: locks})
			return nil
		}},
		{ids: []string{"events"}, register: func(srv *ttrpc.Server) error {
			eventsvc.Register(srv, d.exchange)
			return nil
		}},
		{ids: []string{"content"}, exports: map[string]string{"root": st.contentRoot}, register: func(srv *ttrpc.Server) error {
			contentsvc.Register(srv, st.nsContent)
			return nil
		}},
		{ids: []string{"images"}, register: func(srv *ttrpc.Server) error {
			imagesvc.Register(srv, imagesvc.Config{Store: db.Images(), Publisher: d.exchange, GC: d.gcs})
			return nil
		}},
		{ids: []string{"diff"}, register: func(srv *ttrpc.Server) error {
			diffsvc.Register(srv, diffsvc.Config{Content: st.nsContent, TempMounts: st.tempMounts})
			return nil
		}},
		{ids: []string{"leases"}, register: func(srv *ttrpc.Server) error {
			leasesvc.Register(srv, leasesvc.Config{Leases: db.Leases(), GC: d.gcs})
			return nil
		}},
		{ids: []string{"transfer"}, exports: map[string]string{"hosts_dir": cfg.Registry.ConfigPath}, register: func(srv *ttrpc.Server) error {
			transfersvc.Register(srv, transfersvc.Config{
				Content: st.nsContent, Images: db.Images(), Leases: db.Leases(), Publisher: d.exchange,
				HostsDir: cfg.Registry.ConfigPath, DockerConfig: cfg.Registry.DockerConfig, Timeouts: registryTimeouts, Fetched: d.mtr.pullFetched(), Log: d.log.With("component", "transfer"),
				Snapshotter: st.snaps.service.Snapshotter, DefaultSnapshotter: cfg.Snapshotter.Default, TempMounts: st.tempMounts,
			})
			return nil
		}},
		{ids: []string{"gc"}, exports: map[string]string{"interval": gcInterval.String(), "delete_delay": gcDelay.String()}, register: func(srv *ttrpc.Server) error {
			gcsvc.Register(srv, d.gcs)
			return nil
		}},
		// One registration serves the introspection, health and version
		// APIs; it reports the list, which is complete before any
		// registration runs.
		{ids: []string{"introspection", "health", "version"}, register: func(srv *ttrpc.Server) error {
			return introspection.Register(srv, introspection.Config{Root: cfg.Root, State: cfg.State, Restoring: &d.restoring, Services: listed})
		}},
		{ids: []string{"snapshots"}, exports: map[string]string{"default": cfg.Snapshotter.Default}, register: func(srv *ttrpc.Server) error {
			snapshotsvc.Register(srv, st.snaps.service)
			return nil
		}},
	}
	for _, s := range table {
		for i, id := range s.ids {
			sv := introspection.Service{Type: "berth.service.v1", ID: id}
			if i == 0 {
				sv.Exports = s.exports
			}
			listed = append(listed, sv)
		}
	}
	listed = append(listed, introspection.Service{Type: "berth.metadata.v1", ID: "bolt", Exports: map[string]string{"path": filepath.Join(cfg.Root, "meta.db")}})
	listed = append(listed, st.snaps.introspection...)
	for _, s := range table {
		if err := s.register(d.srv); err != nil {
			return err
		}
	}
	return nil
}
