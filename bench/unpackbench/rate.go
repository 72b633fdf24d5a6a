package main

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// rateProxy forwards loopback TCP connections to target, pacing what
// target sends back to rate bytes a second over all connections at once:
// a registry at the far end of a network link rather than beside the
// client, where fetching, not applying, takes most of a pull's time.
type rateProxy struct {
	l      net.Listener
	target string
	rate   float64 // bytes a second

	mu    sync.Mutex            // guards the fields below
	next  time.Time             // when the bytes handed out so far are due
	conns map[net.Conn]struct{} // open, both sides: Stop closes them
	wg    sync.WaitGroup
}

// startRateProxy listens on a loopback port; Addr is where to connect.
func startRateProxy(target string, mibPerSec float64) (*rateProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &rateProxy{l: l, target: target, rate: mibPerSec * (1 << 20), conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.serve)
	return p, nil
}

func (p *rateProxy) Addr() string { return p.l.Addr().String() }

func (p *rateProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.forward(c) })
	}
}

func (p *rateProxy) forward(c net.Conn) {
	defer p.forget(c)
	d := net.Dialer{Timeout: 10 * time.Second}
	u, err := d.DialContext(context.Background(), "tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(c, u) {
		u.Close()
		return
	}
	defer p.forget(u)
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(u, c) // requests: not paced
		u.(*net.TCPConn).CloseWrite()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := u.Read(buf)
		if n > 0 {
			p.wait(n)
			if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	c.(*net.TCPConn).CloseWrite()
	<-done
}

// wait sleeps until n more bytes may go, at rate over all connections.
func (p *rateProxy) wait(n int) {
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	p.next = p.next.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	due := p.next
	p.mu.Unlock()
	// Sleeps shorter than the timer's granularity (about 1 ms here) would
	// each last that long: let the bytes run ahead of their time by up to
	// rateSlack before sleeping.
	if ahead := time.Until(due); ahead > rateSlack {
		time.Sleep(ahead)
	}
}

// rateSlack is how far the bytes may run ahead of the rate.
const rateSlack = 5 * time.Millisecond

// track records open connections; false once stopped.
func (p *rateProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

// forget closes c and stops tracking it.
func (p *rateProxy) forget(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// Stop closes the listener and every connection (the clients keep idle
// ones open), and waits for their goroutines.
func (p *rateProxy) Stop() error {
	err := p.l.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
