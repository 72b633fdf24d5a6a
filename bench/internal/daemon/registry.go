package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
)

// Registry is Debian's docker-registry on a loopback port, its storage in
// a folder of the benchmark's.
type Registry struct {
	// Addr is host:port, for references (Addr + "/repo:tag").
	Addr string
	*Process
}

// StartRegistry starts bin (docker-registry) on a free loopback port with
// its config, storage and log in dir, and waits until it answers /v2/.
func StartRegistry(ctx context.Context, bin, dir string) (*Registry, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	conf := filepath.Join(dir, "registry.yml")
	text := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n  secret: bench\n",
		filepath.Join(dir, "registry"), addr)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, err
	}
	p, err := Start("docker-registry", filepath.Join(dir, "registry.log"), bin, "serve", conf)
	if err != nil {
		return nil, err
	}
	err = p.WaitReady(ctx, func() error {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(err, p.Stop())
	}
	return &Registry{Addr: addr, Process: p}, nil
}
