package metrics

import (
	"context"
	"maps"
	"net"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/testutil"
)

const testService = "berth.test.Calls"

// TestCallsCounted serves, with the daemon's error edge and these
// metrics, a service whose unary Panic and stream Stream panic and whose
// Ping and Pings answer, over a real ttrpc connection; each call is
// counted once under its method and code, a panicking one as Internal.
func TestCallsCounted(t *testing.T) {
	m := New(&fakeTasks{}, StatsOptions{})
	srv, err := ttrpc.NewServer(errdefs.ServerOpts(m.Interceptor())...)
	if err != nil {
		t.Fatal(err)
	}
	srv.RegisterService(testService, &ttrpc.ServiceDesc{
		Methods: map[string]ttrpc.Method{
			"Panic": func(context.Context, func(any) error) (any, error) { panic("a unary handler's bug") },
			"Ping":  func(context.Context, func(any) error) (any, error) { return &emptypb.Empty{}, nil },
		},
		Streams: map[string]ttrpc.Stream{
			"Stream": {
				Handler: func(ctx context.Context, ss ttrpc.StreamServer) (_ any, err error) {
					defer errdefs.StreamCall(ctx, "/"+testService+"/Stream").Done(&err)
					panic("a stream handler's bug")
				},
				StreamingServer: true,
			},
			"Pings": {
				Handler: func(ctx context.Context, ss ttrpc.StreamServer) (_ any, err error) {
					defer errdefs.StreamCall(ctx, "/"+testService+"/Pings").Done(&err)
					return nil, ss.SendMsg(&emptypb.Empty{})
				},
				StreamingServer: true,
			},
		},
	})
	conn, err := net.Dial("unix", testutil.ServeTTRPCContext(t, m.ServeContext(context.Background()), srv))
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn, ttrpc.WithUnaryClientInterceptor(errdefs.ClientErrors))
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a bound, not a speed check
	defer cancel()

	if err := c.Call(ctx, testService, "Panic", &emptypb.Empty{}, &emptypb.Empty{}); !errdefs.IsInternal(err) {
		t.Fatalf("Panic: %v, want internal", err)
	}
	for range 2 {
		if err := c.Call(ctx, testService, "Ping", &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	stream := func(method string) error {
		s, err := c.NewStream(ctx, &ttrpc.StreamDesc{StreamingServer: true}, testService, method, &emptypb.Empty{})
		if err != nil {
			return err
		}
		for {
			if err := s.RecvMsg(&emptypb.Empty{}); err != nil {
				return err
			}
		}
	}
	if err := errdefs.FromTTRPC(stream("Stream")); !errdefs.IsInternal(err) {
		t.Fatalf("Stream: %v, want internal", err)
	}
	if err := stream("Pings"); err == nil {
		t.Fatal("Pings: a stream ended without an error")
	}

	// The stream's status reaches the client as the handler returns; its
	// observer runs just before: wait for the count, bounded.
	want := map[[2]string]float64{{"Panic", "Internal"}: 1, {"Ping", "OK"}: 2, {"Stream", "Internal"}: 1, {"Pings", "OK"}: 1}
	for {
		got := map[[2]string]float64{}
		for _, s := range gather(t, m, "berth_api_calls_total") {
			l := labels(s)
			if l["service"] == testService {
				got[[2]string{l["method"], l["code"]}] = s.GetCounter().GetValue()
			}
		}
		if maps.Equal(got, want) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("berth_api_calls_total of %s: %v, want %v", testService, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, s := range gather(t, m, "berth_api_call_duration_seconds") {
		if l := labels(s); l["service"] == testService && s.GetHistogram().GetSampleCount() == 0 {
			t.Errorf("berth_api_call_duration_seconds%v: no sample", l)
		}
	}
}

func gather(t *testing.T, m *Metrics, name string) []*dto.Metric {
	t.Helper()
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}
