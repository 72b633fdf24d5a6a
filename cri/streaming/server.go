package streaming

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	k8sstreaming "k8s.io/cri-streaming/pkg/streaming"
)

const (
	// DefaultAddress is where the server listens unless told otherwise:
	// the URLs it hands out are bearer tokens, for the kubelet's side only.
	DefaultAddress = "127.0.0.1"
	// DefaultIdleTimeout closes a stream that carried nothing this long,
	// as the kubelet's own default.
	DefaultIdleTimeout = 4 * time.Hour
	// readHeaderTimeout bounds how long a connection may take to send its
	// request headers.
	readHeaderTimeout = 30 * time.Second
)

// Config is where and how the server serves.
type Config struct {
	// Address is the IP or host name to listen on; empty is
	// DefaultAddress.
	Address string
	// Port is the TCP port; 0 picks a free one.
	Port int
	// IdleTimeout closes a stream idle this long; 0 is DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// Server serves streaming URLs on its own listener.
type Server struct {
	k8s  k8sstreaming.Server
	http *http.Server
	l    net.Listener
}

// New listens on cfg's address and returns a Server whose streams run
// through rt. Serve must be called to answer.
func New(cfg Config, rt *Runtime) (*Server, error) {
	if cfg.Address == "" {
		cfg.Address = DefaultAddress
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("stream server port %d: must be 0 to 65535", cfg.Port)
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	l, err := net.Listen("tcp", net.JoinHostPort(cfg.Address, strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, fmt.Errorf("stream server: %w", err)
	}
	kcfg := k8sstreaming.DefaultConfig
	kcfg.Addr = l.Addr().String()
	kcfg.BaseURL = &url.URL{Scheme: "http", Host: l.Addr().String()}
	kcfg.StreamIdleTimeout = cfg.IdleTimeout
	k, err := k8sstreaming.NewServer(kcfg, rt)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("stream server: %w", err)
	}
	return &Server{
		k8s:  k,
		http: &http.Server{Handler: k, ReadHeaderTimeout: readHeaderTimeout},
		l:    l,
	}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.l.Addr() }

// Serve answers until Close; it returns nil after Close.
func (s *Server) Serve() error {
	if err := s.http.Serve(s.l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops listening and waits, until ctx ends, for open streams to
// end; then it closes them.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.http.Close())
	}
	return err
}

// Close stops listening and ends every open stream.
func (s *Server) Close() error { return s.http.Close() }

// GetExec returns the URL of an exec stream; the caller has checked that
// the container exists and runs.
func (s *Server) GetExec(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	return s.k8s.GetExec(req)
}

// GetAttach returns the URL of an attach stream.
func (s *Server) GetAttach(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	return s.k8s.GetAttach(req)
}

// GetPortForward returns the URL of a port-forward stream.
func (s *Server) GetPortForward(req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	return s.k8s.GetPortForward(req)
}
