package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthrt/berth/cri/netns"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/testutil"
)

const pluginDir = "/usr/lib/cni"

// testNet is one test's own pod network (testutil.CNINet: a bridge, a
// /24, an IPAM folder and a network name no parallel run shares, all
// removed with the test) with a Network over it.
type testNet struct {
	*Network
	*testutil.CNINet
	ipamDir string // host-local's dataDir/<name>: one file per reserved IP
	nsDir   string
}

func requireCNI(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t, "iptables", "iptables-save", "iptables-restore", "ip", "busybox")
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		_, err := os.Stat(filepath.Join(pluginDir, p))
		testutil.Require(t, err == nil, "CNI plugin "+p+" not in "+pluginDir+" (containernetworking-plugins; run make deps)")
	}
}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	requireCNI(t)
	cn := testutil.NewCNINet(t)
	tmp := t.TempDir()
	tn := &testNet{CNINet: cn, ipamDir: filepath.Join(cn.DataDir, cn.Name), nsDir: filepath.Join(tmp, "netns")}
	confDir := filepath.Join(tmp, "net.d")
	writeConf(t, confDir, "10-test.conflist", cn.Conflist(t))
	var err error
	tn.Network, err = New(Config{BinDirs: []string{pluginDir}, ConfDir: confDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.Status(); err != nil {
		t.Fatalf("Status: %v", err)
	}
	return tn
}

func writeConf(t *testing.T, dir, name string, conf any) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// pod makes a namespace and sets it up; its cleanup tears it down.
func (tn *testNet) pod(t *testing.T, id string, ports ...PortMapping) (*netns.NetNS, Pod, *Result) {
	t.Helper()
	ns, err := netns.New(tn.nsDir)
	if err != nil {
		t.Fatal(err)
	}
	pod := Pod{Name: id, Namespace: "test", UID: "uid-" + id, PortMappings: ports}
	t.Cleanup(func() {
		if err := tn.Teardown(context.Background(), id, ns.Path(), pod); err != nil {
			t.Errorf("cleanup: teardown %s: %v", id, err)
		}
		if err := ns.Remove(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	res, err := tn.Setup(context.Background(), id, ns.Path(), pod)
	if err != nil {
		t.Fatalf("Setup %s: %v", id, err)
	}
	if ip := net.ParseIP(res.IP); ip == nil || !tn.Subnet.Contains(ip) {
		t.Fatalf("Setup %s: IP %q not in %s", id, res.IP, tn.Subnet)
	}
	return ns, pod, res
}

func (tn *testNet) reserved(t *testing.T, ip string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(tn.ipamDir, ip))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func TestSetupPingTeardown(t *testing.T) {
	tn := newTestNet(t)
	ctx := context.Background()
	nsA, podA, a := tn.pod(t, "sandbox-a-"+tn.Name)
	nsB, podB, b := tn.pod(t, "sandbox-b-"+tn.Name)
	if a.IP == b.IP {
		t.Fatalf("both pods got %s", a.IP)
	}
	if !tn.reserved(t, a.IP) || !tn.reserved(t, b.IP) {
		t.Fatalf("IPAM folder %s does not hold %s and %s", tn.ipamDir, a.IP, b.IP)
	}

	for _, c := range []struct {
		from *netns.NetNS
		to   string
	}{{nsA, b.IP}, {nsB, a.IP}} {
		err := c.from.Do(func() error {
			out, err := exec.Command("busybox", "ping", "-c", "1", "-W", "10", c.to).CombinedOutput()
			if err != nil {
				return fmt.Errorf("ping %s: %v\n%s", c.to, err, out)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	// A: torn down while its namespace is there, twice.
	for i := 0; i < 2; i++ {
		if err := tn.Teardown(ctx, "sandbox-a-"+tn.Name, nsA.Path(), podA); err != nil {
			t.Fatalf("Teardown A #%d: %v", i+1, err)
		}
	}
	if tn.reserved(t, a.IP) {
		t.Fatalf("Teardown left %s reserved", a.IP)
	}
	if rules := iptablesLines(t, "sandbox-a-"+tn.Name); len(rules) > 0 {
		t.Fatalf("Teardown left iptables rules:\n%s", strings.Join(rules, "\n"))
	}
	if err := nsA.Do(func() error {
		ifs, err := net.Interfaces()
		if err == nil && len(ifs) != 1 {
			err = fmt.Errorf("links after teardown: %v, want only lo", ifs)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// B: its namespace removed first (a crash), then torn down, twice; a
	// path that is a plain file again must not fail either.
	if err := nsB.Remove(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := tn.Teardown(ctx, "sandbox-b-"+tn.Name, nsB.Path(), podB); err != nil {
			t.Fatalf("Teardown B without its netns #%d: %v", i+1, err)
		}
	}
	if tn.reserved(t, b.IP) {
		t.Fatalf("Teardown after the netns was removed left %s reserved", b.IP)
	}
	if err := os.WriteFile(nsB.Path(), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := tn.Teardown(ctx, "sandbox-b-"+tn.Name, nsB.Path(), podB); err != nil {
		t.Fatalf("Teardown B with a plain file at its netns path: %v", err)
	}
}

// TestPortMapping: a host port reaches a listener in the pod from the host's
// loopback and from the host's address on the bridge, and Teardown removes
// the forwarding rules.
func TestPortMapping(t *testing.T) {
	tn := newTestNet(t)
	hostPort := freePort(t)
	id := "sandbox-p-" + tn.Name
	ns, pod, _ := tn.pod(t, id, PortMapping{HostPort: int32(hostPort), ContainerPort: 8080, Protocol: "TCP"})

	var l net.Listener
	if err := ns.Do(func() (err error) {
		l, err = net.Listen("tcp", ":8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hello from "+id)
			c.Close()
		}
	}()

	gateway := make(net.IP, 4)
	copy(gateway, tn.Subnet.IP)
	gateway[3] = 1 // host-local's default gateway, the bridge's address
	for _, host := range []string{"127.0.0.1", gateway.String()} {
		addr := net.JoinHostPort(host, fmt.Sprint(hostPort))
		c, err := net.DialTimeout("tcp", addr, 30*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "hello from "+id {
			t.Fatalf("through %s: %q, %v", addr, got, err)
		}
	}

	if err := tn.Teardown(context.Background(), id, ns.Path(), pod); err != nil {
		t.Fatal(err)
	}
	if rules := iptablesLines(t, id); len(rules) > 0 {
		t.Fatalf("Teardown left iptables rules:\n%s", strings.Join(rules, "\n"))
	}
}

// TestStatusReloads: Status follows the conf dir without a restart, and
// names what is wrong.
func TestStatusReloads(t *testing.T) {
	requireCNI(t)
	dir := t.TempDir()
	n, err := New(Config{BinDirs: []string{pluginDir}, ConfDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Status(); err == nil || !strings.Contains(err.Error(), "no network config") {
		t.Fatalf("Status with an empty conf dir: %v", err)
	}

	conf := map[string]any{"cniVersion": "1.0.0", "name": "missing-plugin",
		"plugins": []any{map[string]any{"type": "no-such-plugin"}}}
	writeConf(t, dir, "10-a.conflist", conf)
	if err := n.Status(); err == nil || !strings.Contains(err.Error(), `"no-such-plugin"`) {
		t.Fatalf("Status with a missing plugin: %v", err)
	}

	conf["plugins"] = []any{map[string]any{"type": "bridge", "bridge": "unused0",
		"ipam": map[string]any{"type": "host-local", "subnet": "10.199.0.0/24", "dataDir": filepath.Join(dir, "ipam")}}}
	conf["name"] = "usable"
	writeConf(t, dir, "10-a.conflist", conf)
	// The rewrite may land in the same clock tick with the same size; a
	// second file changes the listing for certain.
	writeConf(t, dir, "20-b.conflist", conf)
	if err := n.Status(); err != nil {
		t.Fatalf("Status after a usable config appeared: %v", err)
	}

	if err := os.Remove(filepath.Join(dir, "10-a.conflist")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "20-b.conflist")); err != nil {
		t.Fatal(err)
	}
	if err := n.Status(); err == nil {
		t.Fatal("Status after the configs were removed: nil")
	}
}

func TestBadInput(t *testing.T) {
	requireCNI(t)
	n, err := New(Config{BinDirs: []string{pluginDir}, ConfDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{ConfDir: "/etc/cni/net.d"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("New without bin dirs: %v", err)
	}
	ctx := context.Background()
	for _, pm := range []PortMapping{
		{HostPort: 70000, ContainerPort: 80},
		{HostPort: 8080, ContainerPort: 0},
		{HostPort: 8080, ContainerPort: 80, Protocol: "icmp"},
		{HostPort: 8080, ContainerPort: 80, HostIP: "localhost"},
	} {
		_, err := n.Setup(ctx, "id", "/run/netns/x", Pod{PortMappings: []PortMapping{pm}})
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Setup with %+v: %v, want invalid argument", pm, err)
		}
	}
	if _, err := n.Setup(ctx, "id", "relative", Pod{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Setup with a relative netns path: %v", err)
	}
	if err := n.Teardown(ctx, "", "", Pod{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Teardown without an id: %v", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// iptablesLines returns the rules of the nat and filter tables that
// mention s, as iptables-save prints them.
func iptablesLines(t *testing.T, s string) []string {
	t.Helper()
	var lines []string
	for _, table := range []string{"nat", "filter"} {
		for _, l := range testutil.IPTablesSave(t, table) {
			if strings.Contains(l, s) {
				lines = append(lines, l)
			}
		}
	}
	return lines
}
