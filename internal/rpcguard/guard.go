package rpcguard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
)

// Limits are the bounds of a guarded server.
type Limits struct {
	// PerProcess caps the open connections of one peer process.
	PerProcess int
	// PerUser caps the open connections of all processes of one user.
	PerUser int
	// Silent caps the connections of one peer process that have not
	// sent a whole frame yet: connected, and quiet. A client may connect
	// early and call later (the daemon's clients of a proxy snapshotter
	// or of a spare shim do), so a silent connection is not cut after a
	// time; a flood of them is refused at accept instead.
	Silent int
	// FrameTimeout bounds a frame from its first byte to its last.
	FrameTimeout time.Duration
}

// DefaultLimits leave room for any real client (a client library holds one
// connection per Client) and none for a flood.
var DefaultLimits = Limits{PerProcess: 128, PerUser: 1024, Silent: 32, FrameTimeout: 10 * time.Second}

// frameHeaderLength is ttrpc's frame header: payload length (4 bytes, big
// endian), stream id (4), message type (1), flags (1).
const frameHeaderLength = 10

// Handshaker returns a ttrpc handshaker that enforces lim and then runs
// inner (nil for none) on every accepted unix connection. ttrpc logs a
// refusal with its error and closes the connection.
func Handshaker(inner ttrpc.Handshaker, lim Limits) ttrpc.Handshaker {
	return &guard{inner: inner, lim: lim, byPID: map[int32]int{}, byUID: map[uint32]int{}, silent: map[int32]int{}}
}

type guard struct {
	inner ttrpc.Handshaker
	lim   Limits

	mu    sync.Mutex     // guards byPID and byUID
	byPID map[int32]int  // open connections per peer process
	byUID map[uint32]int // open connections per peer user
	// silent counts, per peer process, open connections that have not
	// sent a whole frame yet (Handshaker only; nil for Listener).
	silent map[int32]int
}

func (g *guard) Handshake(ctx context.Context, conn net.Conn) (net.Conn, any, error) {
	cred, err := peerCred(conn)
	if err != nil {
		return nil, nil, err
	}
	if err := g.take(cred); err != nil {
		return nil, nil, err
	}
	info := any(cred)
	if g.inner != nil {
		c, i, err := g.inner.Handshake(ctx, conn)
		if err != nil {
			g.release(cred)
			return nil, nil, err
		}
		conn, info = c, i
	}
	var spoke sync.Once // the connection leaves the silent count once
	spoken := func() { spoke.Do(func() { g.spoke(cred) }) }
	release := func() { spoken(); g.release(cred) }
	return &framedConn{releasingConn: releasingConn{Conn: conn, release: release}, timeout: g.lim.FrameTimeout, spoke: spoken}, info, nil
}

// take counts a connection of cred, or refuses it over a cap.
func (g *guard) take(cred *unix.Ucred) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.byPID[cred.Pid] >= g.lim.PerProcess {
		return fmt.Errorf("peer pid %d (uid %d) holds %d connections already, the most a process may", cred.Pid, cred.Uid, g.byPID[cred.Pid])
	}
	if g.byUID[cred.Uid] >= g.lim.PerUser {
		return fmt.Errorf("peer uid %d holds %d connections already, the most a user may (pid %d)", cred.Uid, g.byUID[cred.Uid], cred.Pid)
	}
	if g.silent != nil && g.silent[cred.Pid] >= g.lim.Silent {
		return fmt.Errorf("peer pid %d (uid %d) holds %d connections that have sent nothing yet, the most a process may", cred.Pid, cred.Uid, g.silent[cred.Pid])
	}
	g.byPID[cred.Pid]++
	g.byUID[cred.Uid]++
	if g.silent != nil {
		g.silent[cred.Pid]++
	}
	return nil
}

// spoke takes a connection of cred out of the silent count: it sent a
// whole frame, or it is closed.
func (g *guard) spoke(cred *unix.Ucred) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.silent[cred.Pid]--; g.silent[cred.Pid] <= 0 {
		delete(g.silent, cred.Pid)
	}
}

func (g *guard) release(cred *unix.Ucred) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.byPID[cred.Pid]--; g.byPID[cred.Pid] <= 0 {
		delete(g.byPID, cred.Pid)
	}
	if g.byUID[cred.Uid]--; g.byUID[cred.Uid] <= 0 {
		delete(g.byUID, cred.Uid)
	}
}

// peerCred reads SO_PEERCRED of a unix connection.
func peerCred(conn net.Conn) (*unix.Ucred, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("connection of type %T: only unix sockets are served", conn)
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var (
		cred    *unix.Ucred
		credErr error
	)
	if err := rc.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if credErr != nil {
		return nil, fmt.Errorf("peer credentials: %w", credErr)
	}
	return cred, nil
}

// framedConn follows ttrpc's frames in the bytes it reads: while a frame
// is incomplete a read deadline of timeout from its first byte is set, and
// between frames (and before the first) none. ttrpc reads from one goroutine, so the parser
// needs no lock.
type framedConn struct {
	releasingConn
	timeout time.Duration

	spoke func() // called when a frame has come whole (idempotent)

	header      [frameHeaderLength]byte
	headerN     int   // bytes of the current frame's header read
	remaining   int64 // payload bytes of the current frame still to come
	deadlineSet bool  // a read deadline is set (a frame begun is due)
}

func (c *framedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.deadlineSet && errors.Is(err, os.ErrDeadlineExceeded) {
		// ttrpc ends a connection on EOF but keeps one whose read failed
		// otherwise, idle, until the server shuts down.
		return n, fmt.Errorf("no whole frame within %v: %w", c.timeout, io.ErrUnexpectedEOF)
	}
	if n > 0 {
		completed := c.follow(p[:n])
		if completed {
			c.spoke()
		}
		between := c.headerN == 0 && c.remaining == 0
		switch {
		case between && c.deadlineSet:
			if derr := c.Conn.SetReadDeadline(time.Time{}); derr != nil && err == nil {
				err = derr
			}
			c.deadlineSet = false
		case !between && (!c.deadlineSet || completed):
			// A frame began in this read (after one that ended in it,
			// perhaps): its bound starts now.
			if derr := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); derr != nil && err == nil {
				err = derr
			}
			c.deadlineSet = true
		}
	}
	return n, err
}

// follow moves the frame parser over b and reports whether a frame ended
// in it.
func (c *framedConn) follow(b []byte) (completed bool) {
	for len(b) > 0 {
		if c.remaining > 0 {
			k := min(int64(len(b)), c.remaining)
			c.remaining -= k
			b = b[k:]
			completed = completed || c.remaining == 0
			continue
		}
		k := copy(c.header[c.headerN:], b)
		c.headerN += k
		b = b[k:]
		if c.headerN == frameHeaderLength {
			c.remaining = int64(binary.BigEndian.Uint32(c.header[:4]))
			c.headerN = 0
			completed = completed || c.remaining == 0
		}
	}
	return completed
}
