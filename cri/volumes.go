package cri

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/oci"
)

// imageVolumesMax bounds the VOLUME entries of an image config honoured
// for one container: the config is input.
const imageVolumesMax = 64

// The VOLUME folders of a container's image config get, as containerd
// gives them, an empty folder of their own on the host, bind-mounted
// read-write, unless a CRI mount covers the same path. They live in
// Config.StateDir/volumes/<container id>/<n> and go with the container.

// volumesDir is the folder of container id's image volumes.
func (s *Server) volumesDir(id string) string {
	return filepath.Join(s.cfg.StateDir, "volumes", id)
}

// withImageVolumes makes the folders of the image's volumes for container
// id and mounts them. Options after it (the CRI's mounts) replace a mount
// of the same destination.
func (s *Server) withImageVolumes(id string, volumes map[string]struct{}, mounts []*runtimeapi.Mount) oci.SpecOpts {
	return func(ctx context.Context, sp *specs.Spec) error {
		if len(volumes) > imageVolumesMax {
			return fmt.Errorf("image config: %d volumes, more than %d: %w", len(volumes), imageVolumesMax, errdefs.ErrInvalidArgument)
		}
		var dsts []string
		for dst := range volumes {
			dst = path.Clean(dst)
			if !path.IsAbs(dst) {
				return fmt.Errorf("image config: volume %q is not an absolute path: %w", dst, errdefs.ErrInvalidArgument)
			}
			if !slices.ContainsFunc(mounts, func(m *runtimeapi.Mount) bool { return path.Clean(m.GetContainerPath()) == dst }) {
				dsts = append(dsts, dst)
			}
		}
		sort.Strings(dsts)
		var ms []specs.Mount
		for i, dst := range dsts {
			src := filepath.Join(s.volumesDir(id), strconv.Itoa(i))
			if err := os.MkdirAll(src, 0o755); err != nil {
				return fmt.Errorf("image volume %s: %w", dst, err)
			}
			ms = append(ms, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rprivate", "rw"}})
		}
		return oci.WithMounts(ms)(ctx, sp)
	}
}
