package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLightDeps keeps berthctl and the client library off the packages
// that only the daemon needs: the registry client (with net/http and
// crypto/tls) and distribution/reference, whose initialisation (regular
// expressions compiled at start) every berthctl command paid for; and
// off protojson, whose package init (a regular expression, 1 % of a
// `run --rm`'s CPU time) ran in every command for the one that prints
// events (berthctl encodes payloads itself, eventjson.go).
func TestLightDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".", "../../client").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/berthrt/berth/distribution",
		"github.com/distribution/reference",
		"oras.land/",
		"github.com/berthrt/berth/services/transfer",
		"net/http",
		"crypto/tls",
		"google.golang.org/protobuf/encoding/protojson",
		"google.golang.org/protobuf/internal/encoding/json",
	}
	for _, p := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if p == f || strings.HasPrefix(p, f+"/") || strings.HasSuffix(f, "/") && strings.HasPrefix(p, f) {
				t.Errorf("berthctl or the client library links %s", p)
			}
		}
	}
}
