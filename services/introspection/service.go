// Package introspection serves berth.services.introspection.v1 (the
// Introspection and Health services) and berth.services.version.v1.
package introspection

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/filters"
	"github.com/berthrt/berth/internal/atomicfile"
	api "github.com/berthrt/berth/proto/introspection/v1"
	versionv1 "github.com/berthrt/berth/proto/version/v1"
	"github.com/berthrt/berth/version"
)

// Service is one entry of the Services list.
type Service struct {
	Type, ID string
	// Err is why the service is not working; nil when it is.
	Err     error
	Exports map[string]string
}

// Config is what the services report.
type Config struct {
	Root, State string
	Services    []Service
	// Restoring is true while shims of a previous daemon are being
	// reconnected.
	Restoring *atomic.Bool
}

type service struct {
	Config
	uuid    string
	started time.Time
}

// Register serves the introspection, health and version APIs on srv. The
// server uuid is kept in <root>/uuid, made on first start.
func Register(srv *ttrpc.Server, cfg Config) error {
	id, err := serverUUID(cfg.Root)
	if err != nil {
		return err
	}
	s := &service{Config: cfg, uuid: id, started: time.Now()}
	api.RegisterIntrospectionService(srv, s)
	api.RegisterHealthService(srv, health{s})
	versionv1.RegisterVersionService(srv, versionService{})
	return nil
}

func (s *service) Services(_ context.Context, req *api.ServicesRequest) (*api.ServicesResponse, error) {
	filter, err := filters.ParseAll(req.GetFilters()...)
	if err != nil {
		return nil, err
	}
	resp := &api.ServicesResponse{}
	for _, sv := range s.Config.Services {
		out := &api.Service{Type: sv.Type, Id: sv.ID, Status: "ok", Exports: sv.Exports}
		if sv.Err != nil {
			out.Status, out.Error = "error", sv.Err.Error()
		}
		if filter.Match(filters.AdapterFunc(func(path []string) (string, bool) {
			if len(path) != 1 {
				return "", false
			}
			switch path[0] {
			case "type":
				return out.Type, true
			case "id":
				return out.Id, true
			case "status":
				return out.Status, true
			}
			return "", false
		})) {
			resp.Services = append(resp.Services, out)
		}
	}
	return resp, nil
}

func (s *service) Server(context.Context, *emptypb.Empty) (*api.ServerResponse, error) {
	return &api.ServerResponse{
		Uuid:      s.uuid,
		Pid:       uint64(os.Getpid()),
		StartedAt: timestamppb.New(s.started),
		Version:   version.Version,
		Root:      s.Root,
		State:     s.State,
	}, nil
}

type health struct{ s *service }

func (h health) Check(context.Context, *emptypb.Empty) (*api.HealthResponse, error) {
	if h.s.Restoring != nil && h.s.Restoring.Load() {
		return &api.HealthResponse{Status: api.HealthResponse_RESTORING}, nil
	}
	return &api.HealthResponse{Status: api.HealthResponse_SERVING}, nil
}

type versionService struct{}

func (versionService) Version(context.Context, *emptypb.Empty) (*versionv1.VersionResponse, error) {
	return &versionv1.VersionResponse{Version: version.Version, Revision: version.Revision(), GoVersion: runtime.Version()}, nil
}

// serverUUID reads the daemon's uuid from root, making one (random,
// version 4) on first start.
func serverUUID(root string) (string, error) {
	path := filepath.Join(root, "uuid")
	data, err := os.ReadFile(path)
	if err == nil {
		if id := strings.TrimSpace(string(data)); len(id) == 36 {
			return id, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("server uuid: %w", err)
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	id := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
	if err := atomicfile.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("server uuid: %w", err)
	}
	return id, nil
}
