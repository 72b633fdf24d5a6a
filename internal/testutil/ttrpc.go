package testutil

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"

	"github.com/containerd/ttrpc"
)

// ServeTTRPC serves srv on a new unix socket in a temporary folder until
// Cleanup, which closes srv and fails the test if Serve failed otherwise,
// and returns the socket's path.
func ServeTTRPC(t testing.TB, srv *ttrpc.Server) string {
	t.Helper()
	return ServeTTRPCContext(t, context.Background(), srv)
}

// ServeTTRPCContext is ServeTTRPC with ctx given to Serve (the context
// that every handler's derives from).
func ServeTTRPCContext(t testing.TB, ctx context.Context, srv *ttrpc.Server) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return sock
}
