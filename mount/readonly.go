package mount

import (
	"slices"
	"strings"
)

// ReadOnly returns mounts made read-only, for reading a snapshot without
// changing it. An overlay with an upper folder becomes one without: the
// upper folder joins the lower ones, on top, so that reading, say, a
// running container's snapshot never mounts its upper folder a second
// time as an upper (which overlayfs refuses with index=on, and warns
// about otherwise), and needs no work folder. A single folder left is
// bound instead, as an overlay without upper needs two lower folders.
// Other mounts get "ro" in place of "rw".
func ReadOnly(mounts []Mount) []Mount {
	out := make([]Mount, len(mounts))
	for i, m := range mounts {
		if m.Type == "overlay" {
			if layers := overlayLayers(m); len(layers) > 0 {
				m = readOnlyOverlay(m, layers)
			}
		}
		m.Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "rw" })
		if !slices.Contains(m.Options, "ro") {
			m.Options = append(m.Options, "ro")
		}
		out[i] = m
	}
	return out
}

// overlayLayers returns an overlay's upper folder and lower folders,
// topmost first; none when it has no upper folder.
func overlayLayers(m Mount) []string {
	var upper string
	var lowers []string
	for _, o := range m.Options {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			upper = v
		} else if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			lowers = strings.Split(v, ":")
		}
	}
	if upper == "" {
		return nil
	}
	return append([]string{upper}, lowers...)
}

func readOnlyOverlay(m Mount, layers []string) Mount {
	if len(layers) == 1 {
		return Mount{Type: "bind", Source: layers[0], Target: m.Target, Options: []string{"rbind", "ro"}}
	}
	opts := []string{"lowerdir=" + strings.Join(layers, ":")}
	for _, o := range m.Options {
		if !strings.HasPrefix(o, "upperdir=") && !strings.HasPrefix(o, "workdir=") && !strings.HasPrefix(o, "lowerdir=") {
			opts = append(opts, o)
		}
	}
	m.Options = opts
	return m
}
