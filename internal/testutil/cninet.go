package testutil

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// CNINet is one test's own pod network for the CNI bridge plugin: a
// network name, a bridge, a /24 and a host-local IPAM folder that no
// parallel test or run shares (nor the host's own CNI setup on cni0 and
// 10.88.0.0/16, which the shared config names). Its cleanup removes the
// bridge and every iptables rule and chain naming the network, also when
// the test fails.
type CNINet struct {
	Name    string // network name, in every iptables comment the plugins write
	Bridge  string
	Subnet  *net.IPNet
	DataDir string // host-local's dataDir: the reservations are in DataDir/Name
}

// SharedCNIConflist is the path of the shared CNI bridge config the tests
// and critest start from.
func SharedCNIConflist() string {
	return filepath.Join(RepoRoot(), "..", "shared", "cri", "cni-bridge.conflist")
}

// NewCNINet picks a network of the test's own; it needs root and the
// iptables tools (else it fails in CI and skips elsewhere).
func NewCNINet(t *testing.T) *CNINet {
	t.Helper()
	RequireRoot(t, "iptables-save", "iptables-restore", "ip")
	var r [3]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatal(err)
	}
	token := hex.EncodeToString(r[:])
	n := &CNINet{
		Name:   "berth-test-" + token,
		Bridge: "bt" + token, // within IFNAMSIZ
		// 10.200.0.0 to 10.231.255.0: away from the shared config's
		// 10.88/16, one /24 per network.
		Subnet:  &net.IPNet{IP: net.IPv4(10, 200+r[0]%32, r[1], 0).To4(), Mask: net.CIDRMask(24, 32)},
		DataDir: filepath.Join(t.TempDir(), "ipam"),
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && (n.Subnet.Contains(ipn.IP) || ipn.Contains(n.Subnet.IP)) {
			t.Fatalf("subnet %s is in use on this host (%s); run again", n.Subnet, ipn)
		}
	}
	t.Cleanup(func() { n.cleanup(t) })
	return n
}

// Conflist returns the shared bridge config (SharedCNIConflist) made the
// network's: its name, bridge, subnet and IPAM folder.
func (n *CNINet) Conflist(t *testing.T) map[string]any {
	t.Helper()
	src := SharedCNIConflist()
	raw, err := os.ReadFile(src)
	Require(t, err == nil, "the CNI test config "+src+" is missing")
	var conf map[string]any
	if err := json.Unmarshal(raw, &conf); err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	conf["name"] = n.Name
	for _, p := range conf["plugins"].([]any) {
		p := p.(map[string]any)
		if p["type"] != "bridge" {
			continue
		}
		p["bridge"] = n.Bridge
		ipam := p["ipam"].(map[string]any)
		ipam["dataDir"] = n.DataDir
		ipam["ranges"] = [][]map[string]string{{{"subnet": n.Subnet.String()}}}
	}
	return conf
}

// IPTablesSave returns the rules of an iptables table, as iptables-save
// prints them.
func IPTablesSave(t *testing.T, table string) []string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", table).Output()
	if err != nil {
		t.Fatalf("iptables-save -t %s: %v", table, err)
	}
	var lines []string
	s := bufio.NewScanner(bytes.NewReader(out))
	for s.Scan() {
		lines = append(lines, s.Text())
	}
	return lines
}

// cleanup removes what the plugins may have left of the network: rules
// whose comment names it and the per-sandbox chains they jump to (the
// CNI-HOSTPORT-* chains are shared by every portmap user and stay), and
// the bridge.
func (n *CNINet) cleanup(t *testing.T) {
	for _, table := range []string{"nat", "filter"} {
		var dels []string
		chains := map[string]bool{}
		lines := IPTablesSave(t, table)
		for _, l := range lines {
			if !strings.HasPrefix(l, "-A ") || !strings.Contains(l, n.Name) {
				continue
			}
			if f := strings.Fields(l); len(f) > 1 && f[len(f)-2] == "-j" &&
				strings.HasPrefix(f[len(f)-1], "CNI-") && !strings.HasPrefix(f[len(f)-1], "CNI-HOSTPORT-") {
				chains[f[len(f)-1]] = true
			}
		}
		for _, l := range lines {
			if strings.HasPrefix(l, "-A ") && strings.Contains(l, n.Name) && !chains[strings.Fields(l)[1]] {
				dels = append(dels, "-D"+strings.TrimPrefix(l, "-A"))
			}
		}
		if len(dels) == 0 && len(chains) == 0 {
			continue
		}
		t.Logf("cleanup: removing %d rules and %d chains the plugins left in %s", len(dels), len(chains), table)
		script := "*" + table + "\n" + strings.Join(dels, "\n") + "\n"
		for c := range chains {
			script += "-F " + c + "\n-X " + c + "\n"
		}
		script += "COMMIT\n"
		cmd := exec.Command("iptables-restore", "--noflush")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("cleanup: iptables-restore: %v\n%s\n%s", err, out, script)
		}
	}
	if _, err := net.InterfaceByName(n.Bridge); err == nil {
		if out, err := exec.Command("ip", "link", "del", n.Bridge).CombinedOutput(); err != nil {
			t.Errorf("cleanup: ip link del %s: %v\n%s", n.Bridge, err, out)
		}
	}
}
