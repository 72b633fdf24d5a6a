package integration

import (
	"encoding/json"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/unpack"
)

// TestCtlContainersCommit commits a container's changes with berthctl and
// checks the image it records: one layer more, the config changed as the
// --change flags ask.
func TestCtlContainersCommit(t *testing.T) {
	d := newDaemon(t)
	const ns = "ctl-commit"
	ctx := d.nsContext(ns)
	c := d.client(t, ns)
	base := importBusybox(t, ctx, c, "overlayfs")
	ctl := newCtl(t, d)
	ctl.ok("-n", ns, "run", base.Name(), "src", "sh", "-c", commitChanges)
	t.Cleanup(func() { ctl.run("-n", ns, "containers", "rm", "src") })

	const ref = "example.com/test/ctl-commit:1"
	out := strings.TrimSpace(ctl.ok("-n", ns, "containers", "commit", "-m", "from the test",
		"--change-cmd", "cat", "--change-cmd", "/new.txt", "--change-env", "COMMITTED=yes", "src", ref))
	img, err := c.GetImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if img.Target().Digest.String() != out {
		t.Fatalf("commit printed %q, the image's target is %s", out, img.Target().Digest)
	}
	r, err := unpack.Resolve(ctx, c.ContentStore(), img.Target(), nil)
	if err != nil {
		t.Fatal(err)
	}
	baseResolved, err := unpack.Resolve(ctx, c.ContentStore(), base.Target(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Layers) != len(baseResolved.Layers)+1 {
		t.Fatalf("%d layers, want the base's %d and one more", len(r.Layers), len(baseResolved.Layers))
	}
	data, err := content.ReadBlob(ctx, c.ContentStore(), r.Config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Config.Cmd, " ") != "cat /new.txt" || !strings.Contains(strings.Join(cfg.Config.Env, " "), "COMMITTED=yes") {
		t.Errorf("committed config: cmd %q env %q", cfg.Config.Cmd, cfg.Config.Env)
	}
	if n := len(cfg.History); n == 0 || cfg.History[n-1].Comment != "from the test" {
		t.Errorf("history %+v, want the message last", cfg.History)
	}

	ctl.fails(1, []string{"nosuch", "not found"}, "-n", ns, "containers", "commit", "nosuch", "example.com/x:1")
	ctl.fails(2, nil, "-n", ns, "containers", "commit", "src")
}
