package errdefs_test

import (
	"bytes"
	"context"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/testutil"
)

const panicService = "berth.test.Panics"

// servePanics serves, through a real ttrpc server with the error edge of
// errdefs.ServerOpts, a service whose Panic method and Stream stream
// panic, whose Big method replies with more than a message may carry, and
// whose Ping answers, and returns a client of it.
func servePanics(t *testing.T) *ttrpc.Client {
	t.Helper()
	srv, err := ttrpc.NewServer(errdefs.ServerOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	srv.RegisterService(panicService, &ttrpc.ServiceDesc{
		Methods: map[string]ttrpc.Method{
			"Panic": func(context.Context, func(any) error) (any, error) {
				var m map[string]int
				m["write to a nil map"]++ // a runtime panic, as a bug makes
				return &emptypb.Empty{}, nil
			},
			"Ping": func(context.Context, func(any) error) (any, error) { return &emptypb.Empty{}, nil },
			"Big": func(context.Context, func(any) error) (any, error) {
				return wrapperspb.Bytes(make([]byte, errdefs.MaxReplySize+1)), nil
			},
		},
		Streams: map[string]ttrpc.Stream{
			"Stream": {
				Handler: func(ctx context.Context, ss ttrpc.StreamServer) (_ any, err error) {
					defer errdefs.StreamCall(ctx, "/"+panicService+"/Stream").Done(&err)
					panic("a stream handler's bug")
				},
				StreamingServer: true,
			},
		},
	})
	conn, err := net.Dial("unix", testutil.ServeTTRPC(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn, ttrpc.WithUnaryClientInterceptor(errdefs.ClientErrors))
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRecoverPanics: a panicking unary handler and a panicking stream
// handler each fail their call with an Internal error naming the method,
// and the server, and the very connection, keep serving.
func TestRecoverPanics(t *testing.T) {
	c := servePanics(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	for i := 0; i < 3; i++ {
		err := c.Call(ctx, panicService, "Panic", &emptypb.Empty{}, &emptypb.Empty{})
		if !errdefs.IsInternal(err) || !strings.Contains(err.Error(), "/"+panicService+"/Panic") || !strings.Contains(err.Error(), "nil map") {
			t.Fatalf("call of a panicking handler: %v, want internal naming the method and the panic", err)
		}
		if err := c.Call(ctx, panicService, "Ping", &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
			t.Fatalf("call after a panic: %v", err)
		}
	}

	stream, err := c.NewStream(ctx, &ttrpc.StreamDesc{StreamingServer: true}, panicService, "Stream", &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	err = errdefs.FromTTRPC(stream.RecvMsg(&emptypb.Empty{}))
	if !errdefs.IsInternal(err) || !strings.Contains(err.Error(), "a stream handler's bug") {
		t.Fatalf("stream of a panicking handler: %v, want internal naming the panic", err)
	}
	if err := c.Call(ctx, panicService, "Ping", &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
		t.Fatalf("call after a stream's panic: %v", err)
	}
}

// TestPanicLog: the panics of unary and stream handlers reach the logger
// of SetPanicLog with their method, value and stack, once each; without
// one they go to the log package's standard logger.
func TestPanicLog(t *testing.T) {
	type logged struct{ method, value, stack string }
	var mu sync.Mutex
	var got []logged
	errdefs.SetPanicLog(func(method, value string, stack []byte) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, logged{method, value, string(stack)})
	})
	t.Cleanup(func() { errdefs.SetPanicLog(nil) })
	c := servePanics(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	c.Call(ctx, panicService, "Panic", &emptypb.Empty{}, &emptypb.Empty{})
	stream, err := c.NewStream(ctx, &ttrpc.StreamDesc{StreamingServer: true}, panicService, "Stream", &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	stream.RecvMsg(&emptypb.Empty{})
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("%d panics logged, want 2: %+v", len(got), got)
	}
	for i, want := range []struct{ method, value, frame string }{
		{"/" + panicService + "/Panic", "nil map", "errdefs_test.servePanics"},
		{"/" + panicService + "/Stream", "a stream handler's bug", "errdefs_test.servePanics"},
	} {
		if got[i].method != want.method || !strings.Contains(got[i].value, want.value) || !strings.Contains(got[i].stack, want.frame) {
			t.Errorf("panic %d logged as %q %q, stack:\n%s\nwant %s, %q, a stack through %s", i, got[i].method, got[i].value, got[i].stack, want.method, want.value, want.frame)
		}
	}

	var buf bytes.Buffer
	log.SetOutput(&buf)
	defer log.SetOutput(os.Stderr)
	errdefs.SetPanicLog(nil)
	c.Call(ctx, panicService, "Panic", &emptypb.Empty{}, &emptypb.Empty{})
	if out := buf.String(); !strings.Contains(out, "/"+panicService+"/Panic") || !strings.Contains(out, "nil map") || !strings.Contains(out, "errdefs_test.servePanics") {
		t.Errorf("without a panic log, the standard logger got %q", out)
	}
}
