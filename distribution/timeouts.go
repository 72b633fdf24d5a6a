package distribution

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"

	"github.com/berthrt/berth/errdefs"
)

// Timeouts bound every request a Resolver makes, to a registry host or to
// its token endpoint, so that a peer that accepts a connection and never
// answers (or stops half-way) fails the step instead of hanging it. A zero
// field is its DefaultTimeouts value.
type Timeouts struct {
	// Connect bounds getting a connection: name lookup, TCP connect and
	// TLS handshake (or the wait for an idle pooled connection).
	Connect time.Duration
	// ResponseHeader bounds the wait for the response's headers after the
	// whole request has been sent.
	ResponseHeader time.Duration
	// Stall bounds how long a request or response body may go without a
	// byte moving; a large blob may take as long as it likes while bytes
	// flow.
	Stall time.Duration
}

// DefaultTimeouts are the bounds of a Resolver whose options give none.
var DefaultTimeouts = Timeouts{Connect: 30 * time.Second, ResponseHeader: 30 * time.Second, Stall: 30 * time.Second}

// withDefaults fills the zero fields of t from DefaultTimeouts.
func (t Timeouts) withDefaults() Timeouts {
	if t.Connect <= 0 {
		t.Connect = DefaultTimeouts.Connect
	}
	if t.ResponseHeader <= 0 {
		t.ResponseHeader = DefaultTimeouts.ResponseHeader
	}
	if t.Stall <= 0 {
		t.Stall = DefaultTimeouts.Stall
	}
	return t
}

// idle is how long a peer that is bound to answer within t can leave a
// transfer without a byte moving: connect, send, wait for headers.
func (t Timeouts) idle() time.Duration { return t.Connect + t.Stall + t.ResponseHeader }

// The steps of the registry protocol, named in timeout errors.
const (
	stepResolve      = "resolve"
	stepToken        = "token"
	stepManifest     = "manifest"
	stepBlob         = "blob"
	stepCheck        = "check"
	stepPushBlob     = "push blob"
	stepPushManifest = "push manifest"
)

type stepKey struct{}

// stepContext is what a request's context says about it: the step and the
// repository whose API paths (/v2/<repository>/…) the step's requests use.
// A request of the step to another path is the token endpoint's.
type stepContext struct{ step, repository string }

// withStep marks ctx's requests as step's, for repository.
func withStep(ctx context.Context, step, repository string) context.Context {
	return context.WithValue(ctx, stepKey{}, stepContext{step: step, repository: repository})
}

// stepOf names the step req belongs to.
func stepOf(req *http.Request) string {
	sc, ok := req.Context().Value(stepKey{}).(stepContext)
	if !ok {
		return "request"
	}
	if !strings.HasPrefix(req.URL.Path, "/v2/"+sc.repository+"/") {
		return stepToken
	}
	return sc.step
}

// TimeoutError is a request a bound of Timeouts cut. It is of class
// ErrUnavailable: the peer may answer a later try.
type TimeoutError struct {
	// Host is the host:port that did not answer.
	Host string
	// Step is the registry step: resolve, token, manifest, blob, check,
	// push blob or push manifest.
	Step string
	// Phase says what the request waited for.
	Phase string
	// Limit is the bound that ran out.
	Limit time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("registry %s, step %s: %s within %v", e.Host, e.Step, e.Phase, e.Limit)
}

// Unwrap gives the class.
func (e *TimeoutError) Unwrap() error { return errdefs.ErrUnavailable }

// Timeout reports true, as a net.Error's does.
func (e *TimeoutError) Timeout() bool { return true }

// The phases of one request, as TimeoutError.Phase says them.
const (
	phaseConnect = "no connection"
	phaseSend    = "the request body did not move"
	phaseHeaders = "no response headers"
	phaseBody    = "the response body did not move"
)

// boundedTransport applies Timeouts to every round trip of base. One
// watchdog per request holds a deadline that each phase (connect, send,
// headers, body) sets and each byte of a body pushes back; when it passes,
// the request's context is cancelled with a TimeoutError as its cause,
// which the request's error then becomes.
type boundedTransport struct {
	base http.RoundTripper
	t    Timeouts
}

func (b *boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watchdog{cancel: cancel, host: req.URL.Host, step: stepOf(req), stall: b.t.Stall}
	w.arm(phaseConnect, b.t.Connect)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn:      func(httptrace.GotConnInfo) { w.arm(phaseSend, b.t.Stall) },
		WroteRequest: func(httptrace.WroteRequestInfo) { w.arm(phaseHeaders, b.t.ResponseHeader) },
	})
	out := req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		out.Body = &watchedBody{rc: req.Body, w: w}
		if req.GetBody != nil {
			out.GetBody = func() (io.ReadCloser, error) {
				rc, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				return &watchedBody{rc: rc, w: w}, nil
			}
		}
	}
	resp, err := b.base.RoundTrip(out)
	if err != nil {
		w.stop()
		err = w.cause(req.Context(), ctx, err)
		cancel(nil)
		return nil, err
	}
	w.arm(phaseBody, b.t.Stall)
	resp.Body = &watchedBody{rc: resp.Body, w: w, parent: req.Context(), ctx: ctx, done: func() {
		w.stop()
		cancel(nil)
	}}
	return resp, nil
}

// watchdog cancels a request whose deadline passes.
type watchdog struct {
	cancel     context.CancelCauseFunc
	host, step string
	stall      time.Duration

	mu       sync.Mutex  // guards the fields below
	timer    *time.Timer // fires at or before deadline
	phase    string
	limit    time.Duration
	deadline time.Time
	stopped  bool
}

// arm starts phase, which may last d.
func (w *watchdog) arm(phase string, d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	w.phase, w.limit, w.deadline = phase, d, time.Now().Add(d)
	if w.timer == nil {
		w.timer = time.AfterFunc(d, w.fire)
	} else {
		w.timer.Reset(d)
	}
}

// progress pushes the deadline back by the phase's limit: a byte moved.
// The timer is left alone (it fires and re-arms for the rest), so a
// byte costs no timer operation.
func (w *watchdog) progress() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deadline = time.Now().Add(w.limit)
}

func (w *watchdog) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if left := time.Until(w.deadline); left > 0 {
		w.timer.Reset(left)
		return
	}
	w.stopped = true
	w.cancel(&TimeoutError{Host: w.host, Step: w.step, Phase: w.phase, Limit: w.limit})
}

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

// cause is the error of a request whose own context is ctx, made from
// parent: the TimeoutError when the watchdog cut it (and the caller did
// not give up first), else err.
func (w *watchdog) cause(parent, ctx context.Context, err error) error {
	var te *TimeoutError
	if parent.Err() == nil && errors.As(context.Cause(ctx), &te) {
		return te
	}
	return err
}

// watchedBody reports each byte read to the watchdog. As a response body
// it also ends the watch when closed, and turns the error of a read the
// watchdog cut into the TimeoutError.
type watchedBody struct {
	rc          io.ReadCloser
	w           *watchdog
	parent, ctx context.Context // the request's context and its own; nil for a request body
	done        func()          // nil for a request body
	once        sync.Once
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.w.progress()
	}
	if err != nil && err != io.EOF && b.ctx != nil {
		err = b.w.cause(b.parent, b.ctx, err)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	err := b.rc.Close()
	if b.done != nil {
		b.once.Do(b.done)
	}
	return err
}
