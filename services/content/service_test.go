package content

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	digest "github.com/opencontainers/go-digest"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/namespaces"
	api "github.com/berthrt/berth/proto/content/v1"
	"github.com/berthrt/berth/storage/content/local"
	"github.com/berthrt/berth/storage/metadata"
)

// server serves the API over a fresh namespaced store; dial opens raw
// connections to it.
type server struct {
	sock  string
	store content.Store
}

func newServer(t *testing.T) *server {
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
	s := &server{sock: filepath.Join(dir, "berth.sock"), store: db.ContentStore(localStore)}
	Register(srv, s.store)
	l, err := net.Listen("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	return s
}

// dial returns a raw API client on a connection of its own.
func (s *server) dial(t *testing.T) (api.ContentClient, *ttrpc.Client) {
	t.Helper()
	conn, err := net.Dial("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn, ttrpc.WithUnaryClientInterceptor(errdefs.ClientErrors))
	t.Cleanup(func() { c.Close() })
	return api.NewContentClient(c), c
}

func random(t *testing.T, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	if _, err := rand.Read(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeAll writes p as one blob in namespace ns over a raw stream, in
// chunks of size chunk.
func writeAll(t *testing.T, c api.ContentClient, ns, ref string, p []byte, chunk int) *api.WriteContentResponse {
	t.Helper()
	stream, err := c.Write(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	reqs := []*api.WriteContentRequest{{Ref: ref, Namespace: ns, Total: int64(len(p)), Expected: digest.FromBytes(p).String()}}
	for off := 0; off < len(p); off += chunk {
		reqs = append(reqs, &api.WriteContentRequest{Action: api.WriteAction_WRITE_ACTION_WRITE, Offset: int64(off), Data: p[off:min(len(p), off+chunk)]})
	}
	reqs = append(reqs, &api.WriteContentRequest{Action: api.WriteAction_WRITE_ACTION_COMMIT, Offset: int64(len(p))})
	var resp *api.WriteContentResponse
	for _, req := range reqs {
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		if resp, err = stream.Recv(); err != nil {
			t.Fatalf("%v: %v", req.GetAction(), errdefs.FromTTRPC(err))
		}
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("after COMMIT: %v, want the end of the stream", err)
	}
	return resp
}

// Read sends chunks of at most 1 MiB, in order, and only what was asked.
func TestReadChunks(t *testing.T) {
	s := newServer(t)
	c, _ := s.dial(t)
	p := random(t, 3<<20+5)
	resp := writeAll(t, c, "ns", "r", p, content.ChunkSize)
	if resp.GetDigest() != digest.FromBytes(p).String() || resp.GetOffset() != int64(len(p)) {
		t.Fatalf("COMMIT response %+v", resp)
	}
	read := func(req *api.ReadContentRequest) ([]byte, int, error) {
		t.Helper()
		req.Digest, req.Namespace = digest.FromBytes(p).String(), "ns"
		stream, err := c.Read(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		chunks := 0
		for {
			resp, err := stream.Recv()
			if err == io.EOF {
				return got, chunks, nil
			} else if err != nil {
				return got, chunks, errdefs.FromTTRPC(err)
			}
			if len(resp.GetData()) > content.ChunkSize || resp.GetOffset() != req.GetOffset()+int64(len(got)) {
				t.Fatalf("chunk of %d bytes at %d", len(resp.GetData()), resp.GetOffset())
			}
			got = append(got, resp.GetData()...)
			chunks++
		}
	}
	got, chunks, err := read(&api.ReadContentRequest{})
	if err != nil || !bytes.Equal(got, p) || chunks != 4 {
		t.Fatalf("read all: %d bytes in %d chunks, %v", len(got), chunks, err)
	}
	got, _, err = read(&api.ReadContentRequest{Offset: 1 << 20, Size: 1000})
	if err != nil || !bytes.Equal(got, p[1<<20:1<<20+1000]) {
		t.Fatalf("read 1000 at 1 MiB: %d bytes, %v", len(got), err)
	}
	got, _, err = read(&api.ReadContentRequest{Offset: int64(len(p)) - 3, Size: 100})
	if err != nil || !bytes.Equal(got, p[len(p)-3:]) {
		t.Fatalf("read across the end: %d bytes, %v", len(got), err)
	}
	for _, req := range []*api.ReadContentRequest{{Offset: int64(len(p)) + 1}, {Offset: -1}, {Size: -1}} {
		if _, _, err := read(req); !errdefs.IsInvalidArgument(err) {
			t.Errorf("read %+v: %v, want InvalidArgument", req, err)
		}
	}
}

// The protocol's refusals each end the stream with their class; a small
// blob fits one request.
func TestWriteProtocol(t *testing.T) {
	s := newServer(t)
	c, _ := s.dial(t)
	small := []byte("one request")
	stream, err := c.Write(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&api.WriteContentRequest{Action: api.WriteAction_WRITE_ACTION_COMMIT, Ref: "small", Namespace: "ns",
		Data: small, Expected: digest.FromBytes(small).String(), Labels: map[string]string{"a": "b"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || resp.GetDigest() != digest.FromBytes(small).String() || resp.GetOffset() != int64(len(small)) {
		t.Fatalf("COMMIT in the first request: %+v, %v", resp, err)
	}
	info, err := s.store.Info(namespaces.WithNamespace(t.Context(), "ns"), digest.FromBytes(small))
	if err != nil || info.Labels["a"] != "b" {
		t.Fatalf("Info: %+v, %v", info, err)
	}

	for _, tc := range []struct {
		name  string
		reqs  []*api.WriteContentRequest
		class error
	}{
		{"no namespace", []*api.WriteContentRequest{{Ref: "x"}}, errdefs.ErrFailedPrecondition},
		{"bad namespace", []*api.WriteContentRequest{{Ref: "x", Namespace: "../x"}}, errdefs.ErrInvalidArgument},
		{"no ref", []*api.WriteContentRequest{{Namespace: "ns"}}, errdefs.ErrInvalidArgument},
		{"chunk too large", []*api.WriteContentRequest{{Ref: "x", Namespace: "ns", Action: api.WriteAction_WRITE_ACTION_WRITE, Data: make([]byte, content.ChunkSize+1)}}, errdefs.ErrInvalidArgument},
		{"offset past the ingest", []*api.WriteContentRequest{{Ref: "x", Namespace: "ns", Action: api.WriteAction_WRITE_ACTION_WRITE, Offset: 5, Data: []byte("a")}}, errdefs.ErrFailedPrecondition},
		{"unknown action", []*api.WriteContentRequest{{Ref: "x", Namespace: "ns", Action: 7}}, errdefs.ErrInvalidArgument},
		{"another ref", []*api.WriteContentRequest{{Ref: "x", Namespace: "ns"}, {Ref: "y"}}, errdefs.ErrInvalidArgument},
		{"exists", []*api.WriteContentRequest{{Ref: "x", Namespace: "ns", Expected: digest.FromBytes(small).String()}}, errdefs.ErrAlreadyExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream, err := c.Write(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for i, req := range tc.reqs {
				if err := stream.Send(req); err != nil {
					t.Fatal(err)
				}
				_, err := stream.Recv()
				if i < len(tc.reqs)-1 {
					if err != nil {
						t.Fatalf("request %d: %v", i, err)
					}
					continue
				}
				if err := errdefs.FromTTRPC(err); !errors.Is(err, tc.class) {
					t.Fatalf("error %v, want class %v", err, tc.class)
				}
			}
		})
	}
}

// A client whose connection drops mid-write leaves the ingest, and lets go
// of the ref: the next writer resumes at the offset.
func TestWriteConnectionLost(t *testing.T) {
	s := newServer(t)
	c, conn := s.dial(t)
	p := random(t, 3000)
	stream, err := c.Write(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []*api.WriteContentRequest{
		{Ref: "lost", Namespace: "ns"},
		{Action: api.WriteAction_WRITE_ACTION_WRITE, Data: p[:1000]},
	} {
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()

	ctx := namespaces.WithNamespace(t.Context(), "ns")
	deadline := time.Now().Add(5 * time.Second)
	for {
		w, err := s.store.Writer(ctx, content.WithRef("lost"))
		if errdefs.IsUnavailable(err) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // the server has yet to see the connection go
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		st, err := w.Status()
		if err != nil || st.Offset != 1000 {
			t.Fatalf("resumed at %+v, %v; want 1000", st, err)
		}
		w.Close()
		return
	}
}
