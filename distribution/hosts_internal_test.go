package distribution

import (
	"testing"

	"github.com/berthrt/berth/errdefs"
)

func FuzzParseHostsFile(f *testing.F) {
	for _, s := range []string{
		"server = \"https://r.example\"\n[host.\"https://m.example\"]\ncapabilities = [\"pull\"]\nca = \"ca.pem\"\n",
		"[host.\"http://127.0.0.1:5000\"]\nskip_verify = true\nclient = [[\"c\", \"k\"]]\n[host.\"http://127.0.0.1:5000\".header]\nx = [\"1\"]\n",
		"ca = [\"a\", \"b\"]\nclient = \"c.pem\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		hosts, err := parseHostsFile(data, "/base", defaultServer("r.example", false))
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("parse error %v is not invalid argument", err)
			}
			return
		}
		if len(hosts) == 0 {
			t.Fatal("no host, not even the server")
		}
		for _, h := range hosts {
			if h.Scheme != "http" && h.Scheme != "https" || h.Host == "" {
				t.Fatalf("host %+v", h)
			}
		}
	})
}
