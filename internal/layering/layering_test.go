package layering

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/berthrt/berth/internal/testutil"
)

const module = "github.com/berthrt/berth/"

// rule forbids the packages in the link closure of pkgs that a prefix of
// forbidden names ("storage/" forbids storage and everything below it).
type rule struct {
	name      string
	pkgs      []string
	forbidden []string
}

var rules = []rule{
	{
		name:      "the client library and berthctl speak only the API",
		pkgs:      []string{"./client", "./cmd/ctl"},
		forbidden: []string{"go.etcd.io/bbolt", module + "storage", module + "services"},
	},
	{
		name:      "the shim links nothing of the daemon's side",
		pkgs:      []string{"./cmd/shim"},
		forbidden: []string{module + "storage", module + "services", module + "supervisor", module + "client", module + "filters", "go.etcd.io/bbolt"},
	},
	{
		name: "the shared vocabulary imports no store",
		pkgs: []string{
			"./content", "./snapshots", "./snapshots/proxy", "./images", "./containers", "./leases", "./gc",
			"./events/topics", "./internal/apiconv",
		},
		forbidden: []string{"go.etcd.io/bbolt", module + "storage", module + "services", module + "supervisor"},
	},
}

func TestImportBoundaries(t *testing.T) {
	gobin, err := exec.LookPath("go")
	testutil.Require(t, err == nil, "go not found in PATH: the test reads the link closure with go list")
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			cmd := exec.Command(gobin, append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, r.pkgs...)...)
			cmd.Dir = testutil.RepoRoot()
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list -deps %v: %v: %s", r.pkgs, err, stderr.String())
			}
			deps := strings.Fields(string(out))
			if len(deps) == 0 {
				t.Fatalf("go list -deps %v listed nothing", r.pkgs)
			}
			for _, bad := range violations(deps, r.forbidden) {
				t.Errorf("%v links %s (forbidden: %v)", r.pkgs, bad, r.forbidden)
			}
		})
	}
}

// violations returns the deps that are, or are below, a forbidden path.
func violations(deps, forbidden []string) []string {
	var out []string
	for _, d := range deps {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

// TestViolations checks the matcher itself, so that a rule cannot pass by
// matching nothing.
func TestViolations(t *testing.T) {
	deps := []string{
		module + "client",
		module + "storage/metadata",
		module + "storagex",
		"go.etcd.io/bbolt/internal/common",
		module + "services",
		module + "filters",
	}
	got := violations(deps, []string{module + "storage", "go.etcd.io/bbolt", module + "services"})
	want := []string{module + "storage/metadata", "go.etcd.io/bbolt/internal/common", module + "services"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("violations = %v, want %v", got, want)
	}
}
