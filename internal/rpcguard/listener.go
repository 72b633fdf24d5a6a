package rpcguard

import (
	"net"
	"sync"
)

// Listener caps the connections of each peer process and user of l as
// Handshaker does, for a server that is not ttrpc (the CRI's gRPC): a
// connection over a cap is closed at accept, reported to refused (nil for
// none), and Accept goes on to the next, so that one peer's flood never
// stops the server. Only the caps of lim apply; its FrameTimeout is
// ttrpc's framing and is ignored.
func Listener(l net.Listener, lim Limits, refused func(error)) net.Listener {
	return &capListener{Listener: l, g: &guard{lim: lim, byPID: map[int32]int{}, byUID: map[uint32]int{}}, refused: refused}
}

type capListener struct {
	net.Listener
	g       *guard
	refused func(error)
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cred, err := peerCred(conn)
		if err == nil {
			err = l.g.take(cred)
		}
		if err != nil {
			conn.Close()
			if l.refused != nil {
				l.refused(err)
			}
			continue
		}
		return &releasingConn{Conn: conn, release: func() { l.g.release(cred) }}, nil
	}
}

// releasingConn frees its place in the caps when it is first closed.
type releasingConn struct {
	net.Conn
	release     func()
	releaseOnce sync.Once
}

func (c *releasingConn) Close() error {
	c.releaseOnce.Do(c.release)
	return c.Conn.Close()
}
