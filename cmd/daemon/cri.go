package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/cri"
	"github.com/berthrt/berth/cri/cni"
	"github.com/berthrt/berth/cri/streaming"
	"github.com/berthrt/berth/internal/rpcguard"
)

// The CRI is a client of the daemon's own ttrpc services through the Go
// client library, over connections made in the process (socket pairs
// handed to the ttrpc server): the same code paths as every other
// client, with no second way in to keep in step, and no dependence on the
// API socket's path staying in place.

// criIdleTimeout is how long a CRI connection without a call in flight
// stays open. The kubelet calls every second or so.
const criIdleTimeout = time.Minute

// startCRI serves the CRI on cfg.CRI.Address, calling berthd's services
// through srv. The returned stop ends it (a second call does nothing);
// containers keep running. A CRI
// that cannot start is logged, and berthd serves its own API without it.
func startCRI(ctx context.Context, cfg *Config, srv *ttrpc.Server, log *slog.Logger) (stop func()) {
	if !cfg.CRI.Enabled {
		return func() {}
	}
	log = log.With("component", "cri")
	stop, err := runCRI(ctx, cfg, srv, log)
	if err != nil {
		log.Error("the CRI is not served", "error", err)
		return func() {}
	}
	log.Info("CRI serving", "address", cfg.CRI.Address, "sandbox_image", cfg.CRI.SandboxImage)
	return sync.OnceFunc(stop)
}

func runCRI(ctx context.Context, cfg *Config, srv *ttrpc.Server, log *slog.Logger) (stop func(), err error) {
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	pipe := newPipeListener()
	undo = append(undo, func() { pipe.Close() })
	go srv.Serve(ctx, pipe)
	c, err := client.New("berthd", client.WithDefaultNamespace(cri.Namespace), client.WithDialer(pipe.Dial))
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { c.Close() })
	network, err := cni.New(cni.Config{BinDirs: cfg.CRI.CNI.BinDirs, ConfDir: cfg.CRI.CNI.ConfDir})
	if err != nil {
		return nil, err
	}
	if err := network.Status(); err != nil {
		log.Warn("the pod network is not ready", "error", err)
	}
	// Under the state folder, whose other folders are namespaces of
	// bundles: a name beginning with a dot is none.
	state := filepath.Join(cfg.State, ".cri")
	s, err := cri.New(cri.Config{
		Client:       c,
		SandboxImage: cfg.CRI.SandboxImage,
		Streaming:    streamingConfig(cfg.CRI),
		StateDir:     state,
		NetNSDir:     filepath.Join(state, "netns"),
		ImageFSDir:   filepath.Join(cfg.Root, "snapshots"),
		Network:      network,
		Log:          log,
	})
	if err != nil {
		return nil, err
	}
	undo = append(undo, s.Close)
	if err := s.Load(ctx); err != nil {
		return nil, err
	}
	s.WatchEvents()
	// Without its stream server the CRI still serves; Exec, Attach and
	// PortForward then answer Unavailable.
	if err := s.ServeStreams(); err != nil {
		log.Error("the CRI stream server is not serving", "error", err)
	}
	l, err := listen(cfg.CRI.Address, cfg.API.UID, cfg.API.GID)
	if err != nil {
		return nil, err
	}
	// The API's caps per peer process and user apply to the CRI socket
	// too (its own count: a kubelet and berthctl do not share places).
	criLimits, _ := cfg.API.limits() // validated with the config
	// But one process may hold as many as its user: critest, the
	// conformance suite, opens two connections per spec and closes none,
	// hundreds in a run; the per-user cap still bounds a flood, and idle
	// connections are closed (criIdleTimeout).
	criLimits.PerProcess = max(criLimits.PerProcess, criLimits.PerUser)
	refused := func(err error) { log.Warn("CRI connection refused", "error", err) }
	// An idle connection is closed (GOAWAY; a client dials again on its
	// next call) so that it gives its place in those caps back: critest
	// opens two connections per spec and never closes them.
	g := grpc.NewServer(append(cri.ServerOptions(log), grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: criIdleTimeout}))...)
	s.Register(g)
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := g.Serve(rpcguard.Listener(peerChecked{l, allowPeers(cfg.API.UID, cfg.API.GID), log}, criLimits, refused)); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			log.Error("serve the CRI", "error", err)
		}
	}()
	return func() {
		stopped := make(chan struct{})
		go func() { g.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(shutdownTimeout):
			g.Stop()
		}
		<-served
		s.Close()
		c.Close()
		pipe.Close()
		os.Remove(cfg.CRI.Address)
	}, nil
}

// peerChecked admits on the CRI socket the callers that the API socket
// admits (allowPeers), the second lock after the socket's mode.
type peerChecked struct {
	net.Listener
	allow ttrpc.UnixCredentialsFunc
	log   *slog.Logger
}

func (p peerChecked) Accept() (net.Conn, error) {
	for {
		conn, err := p.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if _, _, err := p.allow.Handshake(context.Background(), conn); err != nil {
			p.log.Warn("CRI connection refused", "error", err)
			conn.Close()
			continue
		}
		return conn, nil
	}
}

// pipeListener is a net.Listener of connections made in this process:
// Dial makes a unix socket pair, queues one end for Accept and returns
// the other. Being unix sockets, they carry the daemon's own credentials
// through the ttrpc server's peer check.
type pipeListener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// Dial returns a new connection to the listener's server.
func (p *pipeListener) Dial(ctx context.Context) (net.Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	client, err := fdConn(fds[0])
	if err != nil {
		unix.Close(fds[1])
		return nil, err
	}
	server, err := fdConn(fds[1])
	if err != nil {
		client.Close()
		return nil, err
	}
	select {
	case p.conns <- server:
		return client, nil
	case <-p.closed:
		err = net.ErrClosed
	case <-ctx.Done():
		err = ctx.Err()
	}
	client.Close()
	server.Close()
	return nil, err
}

// fdConn makes a net.Conn of a socket fd, which it takes over.
func fdConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "berthd-in-process")
	defer f.Close()
	return net.FileConn(f)
}

func (p *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.closed:
		return nil, net.ErrClosed
	}
}

func (p *pipeListener) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	return nil
}

func (p *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "berthd-in-process" }

// streamingConfig is the stream server's part of the [cri] config, which
// validate has checked.
func streamingConfig(c CRIConfig) streaming.Config {
	idle, _ := time.ParseDuration(c.StreamIdleTimeout)
	return streaming.Config{Address: c.StreamAddress, Port: c.StreamPort, IdleTimeout: idle}
}
