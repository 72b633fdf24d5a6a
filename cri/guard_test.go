package cri_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/cri"
	"github.com/berthrt/berth/internal/rpcguard"
	"github.com/berthrt/berth/internal/testutil"
)

const guardedService = "berth.test.Guarded"

// guardedDesc is a service whose handlers panic on request, served with
// the CRI's own server options: what a broken CRI handler would do.
var guardedDesc = grpc.ServiceDesc{
	ServiceName: guardedService,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Ping", Handler: unaryHandler(false)},
		{MethodName: "Panic", Handler: unaryHandler(true)},
	},
	Streams: []grpc.StreamDesc{{
		StreamName:    "PanicStream",
		ServerStreams: true,
		Handler: func(any, grpc.ServerStream) error {
			var m map[string]int
			m["nil map"]++
			return nil
		},
	}},
}

func unaryHandler(panics bool) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
		in := new(emptypb.Empty)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(context.Context, any) (any, error) {
			if panics {
				panic("handler broke")
			}
			return &emptypb.Empty{}, nil
		}
		return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + guardedService + "/Ping"}, h)
	}
}

// serveGuarded serves guardedDesc as berthd serves the CRI (its server
// options, its per-peer caps) on a unix socket; it returns the socket and
// the server's log.
func serveGuarded(t *testing.T, lim rpcguard.Limits) (string, *testutil.Buffer) {
	t.Helper()
	logs := &testutil.Buffer{}
	sock := filepath.Join(t.TempDir(), "cri.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(cri.ServerOptions(slog.New(slog.NewTextHandler(logs, nil)))...)
	g.RegisterService(&guardedDesc, struct{}{})
	served := make(chan error, 1)
	go func() {
		served <- g.Serve(rpcguard.Listener(l, lim, func(err error) { t.Logf("refused: %v", err) }))
	}()
	t.Cleanup(func() {
		g.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("serve: %v", err)
		}
	})
	return sock, logs
}

func dialGuarded(t *testing.T, sock string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func call(cc *grpc.ClientConn, method string, opts ...grpc.CallOption) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return cc.Invoke(ctx, "/"+guardedService+"/"+method, &emptypb.Empty{}, &emptypb.Empty{}, opts...)
}

// TestPanicIsInternal: a panic in a unary or a stream handler fails that
// call with codes.Internal, the stack goes to the log, and the same
// connection is served on.
func TestPanicIsInternal(t *testing.T) {
	sock, logs := serveGuarded(t, rpcguard.DefaultLimits)
	cc := dialGuarded(t, sock)

	err := call(cc, "Panic")
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "handler broke") {
		t.Fatalf("unary panic: got %v, want Internal naming the panic", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := cc.NewStream(ctx, &guardedDesc.Streams[0], "/"+guardedService+"/PanicStream")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(&emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	err = st.RecvMsg(&emptypb.Empty{})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "nil map") {
		t.Fatalf("stream panic: got %v, want Internal naming the panic", err)
	}

	if err := call(cc, "Ping"); err != nil {
		t.Fatalf("the server stopped serving after panics: %v", err)
	}
	log := logs.String()
	if strings.Count(log, "panic in a CRI handler") != 2 || !strings.Contains(log, "guard_test.go") {
		t.Errorf("want both panics logged with their stacks, got:\n%s", log)
	}
}

// TestPerPeerCap: a connection beyond a peer's cap is closed at accept
// while the peer's others are served, and closing one frees its place.
func TestPerPeerCap(t *testing.T) {
	sock, _ := serveGuarded(t, rpcguard.Limits{PerProcess: 2, PerUser: 8})
	held := []*grpc.ClientConn{dialGuarded(t, sock), dialGuarded(t, sock)}
	for _, cc := range held {
		if err := call(cc, "Ping"); err != nil {
			t.Fatal(err)
		}
	}

	over, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	if err := over.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := over.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("a third connection of this process: read %v, want EOF (closed at accept)", err)
	}
	for _, cc := range held {
		if err := call(cc, "Ping"); err != nil {
			t.Fatalf("a connection within the cap: %v", err)
		}
	}

	// The server frees the place when it sees the close, which may come
	// after a first attempt of the new client: gRPC retries it.
	held[0].Close()
	if err := call(dialGuarded(t, sock), "Ping", grpc.WaitForReady(true)); err != nil {
		t.Fatalf("after one closed, a new connection: %v", err)
	}
}
