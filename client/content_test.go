package client_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"

	"github.com/containerd/ttrpc"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	contentsvc "github.com/berthrt/berth/services/content"
	"github.com/berthrt/berth/storage/content/contenttest"
	"github.com/berthrt/berth/storage/content/local"
	"github.com/berthrt/berth/storage/metadata"
)

// newContentDaemon serves the content API over a fresh namespaced store on
// a unix socket, as berthd does, and returns a client of it.
func newContentDaemon(t *testing.T) *client.Client {
	t.Helper()
	dir := t.TempDir()
	db, err := metadata.Open(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	localStore, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(errdefs.ServerErrors))
	if err != nil {
		t.Fatal(err)
	}
	contentsvc.Register(srv, db.ContentStore(localStore))
	sock := filepath.Join(dir, "berth.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), l) }()
	c, err := client.New(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		srv.Close()
		if err := <-served; err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return c
}

// The content store over the API passes the suite every store passes.
func TestContentSuiteThroughClient(t *testing.T) {
	contenttest.Run(t, func(t *testing.T) content.Store {
		return newContentDaemon(t).ContentStore()
	}, contenttest.Options{Namespaced: true})
}
