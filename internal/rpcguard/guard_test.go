package rpcguard_test

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/internal/rpcguard"
	"github.com/berthrt/berth/internal/testutil"
)

const service = "berth.test.Guarded"

// serve starts a real ttrpc server guarded by lim on a unix socket and
// returns the socket's path.
func serve(t *testing.T, lim rpcguard.Limits) string {
	t.Helper()
	srv, err := ttrpc.NewServer(ttrpc.WithServerHandshaker(rpcguard.Handshaker(ttrpc.UnixSocketRequireSameUser(), lim)))
	if err != nil {
		t.Fatal(err)
	}
	srv.RegisterService(service, &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"Ping": func(context.Context, func(any) error) (any, error) { return &emptypb.Empty{}, nil },
	}})
	return testutil.ServeTTRPC(t, srv)
}

// dial opens a raw connection that the test closes in Cleanup.
func dial(t *testing.T, sock string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ping calls the service over a new well-behaved client.
func ping(t *testing.T, sock string) error {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return err
	}
	c := ttrpc.NewClient(conn)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Call(ctx, service, "Ping", &emptypb.Empty{}, &emptypb.Empty{})
}

// closedByServer reports whether the server closed c: a read ends with
// EOF (or a reset) before the backstop; false when the read timed out
// with c still open.
func closedByServer(t *testing.T, c net.Conn, backstop time.Duration) bool {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(backstop)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(make([]byte, 1))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	if err == nil {
		t.Fatal("the server sent bytes to a client that sent none")
	}
	return true
}

// TestPerProcessCap: the connections of one process beyond the cap are
// closed at once, those within it stay open, and closing one frees its
// place for a client that is served.
func TestPerProcessCap(t *testing.T) {
	const limit = 4
	sock := serve(t, rpcguard.Limits{PerProcess: limit, PerUser: 100, Silent: 100, FrameTimeout: time.Hour})
	var conns []net.Conn
	for range limit + 2 {
		conns = append(conns, dial(t, sock))
	}
	for i, c := range conns[limit:] {
		if !closedByServer(t, c, 10*time.Second) {
			t.Fatalf("connection %d, over the cap of %d, is still open", limit+i+1, limit)
		}
	}
	for i, c := range conns[:limit] {
		if closedByServer(t, c, 100*time.Millisecond) {
			t.Fatalf("connection %d, within the cap, was closed", i+1)
		}
	}
	if err := ping(t, sock); err == nil {
		t.Fatal("a client over the cap was served")
	}
	conns[0].Close()
	var err error
	// The server sees the close asynchronously; a minute bounds a hang.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err = ping(t, sock); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("a client after a connection closed: %v", err)
	}
}

// TestSilentAndPartialConnections: a process's connections that have sent
// nothing are capped (the one over the cap is closed at accept), one that
// sent half a header is closed after the frame bound, a well-behaved
// client is served meanwhile, a client that connected long before its
// first call is not cut (the daemon's proxy snapshotter client was), and a
// silent connection that speaks frees its place in the silent cap.
func TestSilentAndPartialConnections(t *testing.T) {
	const bound = time.Second
	const silent = 8
	sock := serve(t, rpcguard.Limits{PerProcess: 1000, PerUser: 1000, Silent: silent, FrameTimeout: bound})
	var quiet []net.Conn
	for range silent - 1 {
		quiet = append(quiet, dial(t, sock))
	}
	early, err := net.Dial("unix", sock) // the last silent place: calls later
	if err != nil {
		t.Fatal(err)
	}
	late := ttrpc.NewClient(early)
	defer late.Close()
	over := dial(t, sock)
	if !closedByServer(t, over, time.Minute) {
		t.Fatalf("silent connection %d of a process (cap %d) was not refused", silent+1, silent)
	}
	call := func(c *ttrpc.Client) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return c.Call(ctx, service, "Ping", &emptypb.Empty{}, &emptypb.Empty{})
	}
	time.Sleep(2 * bound) // silent for longer than a frame may take
	if err := call(late); err != nil {
		t.Fatalf("a client whose first call comes %v after it connected: %v", 2*bound, err)
	}
	// late spoke: its silent place is free for a new client.
	var good *ttrpc.Client
	// The server counts the frame asynchronously; a minute bounds a hang.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		good = ttrpc.NewClient(conn)
		if err = call(good); err == nil {
			break
		}
		good.Close()
		good = nil
		time.Sleep(10 * time.Millisecond)
	}
	if good == nil {
		t.Fatal("no client served once a silent connection spoke")
	}
	defer good.Close()

	partial := dial(t, sock)
	if _, err := partial.Write([]byte{0, 0, 0, 8, 0}); err != nil { // half a header, then nothing
		t.Fatal(err)
	}
	if !closedByServer(t, partial, time.Minute) {
		t.Fatal("a connection with half a frame header still open after a minute")
	}
	for i, c := range quiet {
		if closedByServer(t, c, 100*time.Millisecond) {
			t.Fatalf("silent connection %d within the cap was closed", i)
		}
	}
	time.Sleep(2 * bound) // idle between calls, longer than a frame may take
	if err := call(good); err != nil {
		t.Fatalf("a client idle between calls: %v", err)
	}
}
