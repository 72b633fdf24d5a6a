package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/apiconv"
	"github.com/berthrt/berth/namespaces"
	containersv1 "github.com/berthrt/berth/proto/containers/v1"
	eventsv1 "github.com/berthrt/berth/proto/events/v1"
	introspectionv1 "github.com/berthrt/berth/proto/introspection/v1"
	namespacesv1 "github.com/berthrt/berth/proto/namespaces/v1"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
	versionv1 "github.com/berthrt/berth/proto/version/v1"
)

// DefaultAddress is where berthd listens unless configured otherwise.
const DefaultAddress = "/run/berth/berth.sock"

// defaultDialTimeout bounds connecting to the daemon's socket.
const defaultDialTimeout = 10 * time.Second

// Client is a connection to berthd. It is safe for concurrent use; Close
// ends it and every subscription made through it.
type Client struct {
	address string
	options clientOptions

	connMu sync.Mutex // guards conn
	conn   *conn      // the current connection; replaced once it is lost

	subsMu sync.Mutex                 // guards subs and closed
	subs   map[*ttrpc.Client]struct{} // connections of live subscriptions
	closed bool
}

type clientOptions struct {
	defaultNamespace string
	dialTimeout      time.Duration
	dialer           Dialer
}

// Dialer opens a connection to the daemon; the deadline of ctx bounds it.
type Dialer func(ctx context.Context) (net.Conn, error)

// Opt configures a Client.
type Opt func(*clientOptions) error

// WithDefaultNamespace sets the namespace of calls whose context has none.
// Without it, such calls use namespaces.Default.
func WithDefaultNamespace(ns string) Opt {
	return func(o *clientOptions) error {
		o.defaultNamespace = ns
		return nil
	}
}

// WithTimeout bounds connecting to the daemon (10 s by default).
func WithTimeout(d time.Duration) Opt {
	return func(o *clientOptions) error {
		if d <= 0 {
			return fmt.Errorf("dial timeout %v: must be positive: %w", d, errdefs.ErrInvalidArgument)
		}
		o.dialTimeout = d
		return nil
	}
}

// WithDialer connects through dial instead of to the unix socket at the
// address given to New, e.g. to a ttrpc server in the same process. Each
// connection the client makes (the first, one after a loss, one per
// subscription) is a call of dial.
func WithDialer(dial Dialer) Opt {
	return func(o *clientOptions) error {
		if dial == nil {
			return fmt.Errorf("dialer: must not be nil: %w", errdefs.ErrInvalidArgument)
		}
		o.dialer = dial
		return nil
	}
}

// New connects to the daemon listening on the unix socket at address. When
// the connection is lost (the daemon stopped, restarted or was upgraded),
// calls fail with ErrUnavailable until the daemon is back; the next call
// after that connects again. Tasks, their stdio and exits survive the
// restart, and Wait carries on by itself.
func New(address string, opts ...Opt) (*Client, error) {
	o := clientOptions{defaultNamespace: namespaces.Default, dialTimeout: defaultDialTimeout}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	c := &Client{address: address, options: o, subs: map[*ttrpc.Client]struct{}{}}
	cn, err := c.connect()
	if err != nil {
		return nil, err
	}
	c.conn = cn
	return c, nil
}

// conn is one connection to the daemon with a client of every service.
type conn struct {
	ttrpc      *ttrpc.Client
	lost       chan struct{} // closed when the connection is gone
	namespaces namespacesv1.NamespacesClient
	containers containersv1.ContainersClient
	tasks      tasksv1.TasksService
	events     eventsv1.EventsClient
	introspect introspectionv1.IntrospectionService
	health     introspectionv1.HealthService
	versionSvc versionv1.VersionService
}

func (c *Client) connect() (*conn, error) {
	lost := make(chan struct{})
	tc, err := c.dial(ttrpc.WithOnClose(func() { close(lost) }))
	if err != nil {
		return nil, err
	}
	return &conn{
		ttrpc:      tc,
		lost:       lost,
		namespaces: namespacesv1.NewNamespacesClient(tc),
		containers: containersv1.NewContainersClient(tc),
		tasks:      tasksv1.NewTasksClient(tc),
		events:     eventsv1.NewEventsClient(tc),
		introspect: introspectionv1.NewIntrospectionClient(tc),
		health:     introspectionv1.NewHealthClient(tc),
		versionSvc: versionv1.NewVersionClient(tc),
	}, nil
}

// api returns the current connection. When it has been lost (the daemon
// restarted, or was upgraded) it dials again first; if that fails, the
// lost connection is returned and its calls fail with ErrUnavailable.
// Calls are not retried for the caller, since most are not idempotent;
// Wait is, and retries until the daemon is back (see Process.Wait).
func (c *Client) api() *conn {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	select {
	case <-c.conn.lost:
	default:
		return c.conn
	}
	if c.isClosed() {
		return c.conn
	}
	if cn, err := c.connect(); err == nil {
		c.conn = cn
	}
	return c.conn
}

// dial opens a new ttrpc connection to the daemon with the client's
// interceptors.
func (c *Client) dial(opts ...ttrpc.ClientOpts) (*ttrpc.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.options.dialTimeout)
	defer cancel()
	dial := c.options.dialer
	if dial == nil {
		dial = func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.address)
		}
	}
	conn, err := dial(ctx)
	if err != nil {
		return nil, dialError(c.address, err)
	}
	return ttrpc.NewClient(conn, append(opts, ttrpc.WithChainUnaryClientInterceptor(
		connectionErrors,
		namespaceInterceptor(c.options.defaultNamespace),
		errdefs.ClientErrors,
	))...), nil
}

// connectionErrors gives the errors of a lost connection (the daemon
// stopped or restarted, or Close) the class ErrUnavailable; without it they
// reach the caller as bare ttrpc or syscall errors.
func connectionErrors(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, _ *ttrpc.UnaryClientInfo, invoker ttrpc.Invoker) error {
	err := invoker(ctx, req, resp)
	if connectionLost(err) {
		return fmt.Errorf("connection to berthd lost: %w: %w", errdefs.ErrUnavailable, err)
	}
	return err
}

// connectionLost reports whether err says the connection to the daemon is
// gone, and is not of a class already.
func connectionLost(err error) bool {
	if err == nil || errdefs.IsUnavailable(err) {
		return false
	}
	return errors.Is(err, ttrpc.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// dialError says what a failed connect means for the caller, with a class.
func dialError(address string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("connect to berthd at %s: the daemon is not running (%w): %w", address, errdefs.ErrUnavailable, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("connect to berthd at %s: %w: %w", address, errdefs.ErrPermissionDenied, err)
	default:
		return fmt.Errorf("connect to berthd at %s: %w: %w", address, errdefs.ErrUnavailable, err)
	}
}

// namespaceInterceptor puts ns into the metadata of a request whose context
// named no namespace.
func namespaceInterceptor(ns string) ttrpc.UnaryClientInterceptor {
	return func(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, _ *ttrpc.UnaryClientInfo, invoker ttrpc.Invoker) error {
		if ns != "" && !hasMetadata(req, namespaces.MetadataKey) {
			req.Metadata = append(req.Metadata, &ttrpc.KeyValue{Key: namespaces.MetadataKey, Value: ns})
		}
		return invoker(ctx, req, resp)
	}
}

func hasMetadata(req *ttrpc.Request, key string) bool {
	for _, kv := range req.Metadata {
		if kv.Key == key {
			return true
		}
	}
	return false
}

// namespace returns the namespace calls made with ctx act in.
func (c *Client) namespace(ctx context.Context) (string, error) {
	if ns, ok := namespaces.Namespace(ctx); ok && ns != "" {
		return ns, nil
	}
	if c.options.defaultNamespace == "" {
		return "", fmt.Errorf("namespace is required: %w", errdefs.ErrFailedPrecondition)
	}
	return c.options.defaultNamespace, nil
}

func (c *Client) isClosed() bool {
	c.subsMu.Lock()
	defer c.subsMu.Unlock()
	return c.closed
}

// Close ends the connection and every subscription.
func (c *Client) Close() error {
	c.subsMu.Lock()
	c.closed = true
	subs := c.subs
	c.subs = nil
	c.subsMu.Unlock()
	for s := range subs {
		s.Close()
	}
	c.connMu.Lock()
	defer c.connMu.Unlock()
	return c.conn.ttrpc.Close()
}

// DefaultNamespace returns the namespace of calls whose context has none.
func (c *Client) DefaultNamespace() string { return c.options.defaultNamespace }

// NamespaceService returns the raw Namespaces service client.
func (c *Client) NamespaceService() namespacesv1.NamespacesClient { return c.api().namespaces }

// ContainerService returns the raw Containers service client.
func (c *Client) ContainerService() containersv1.ContainersClient { return c.api().containers }

// TaskService returns the raw Tasks service client.
func (c *Client) TaskService() tasksv1.TasksService { return c.api().tasks }

// EventService returns the raw Events service client. Its Subscribe stream
// errors are not converted to classes; Client.Subscribe's are.
func (c *Client) EventService() eventsv1.EventsClient { return c.api().events }

// IntrospectionService returns the raw Introspection service client.
func (c *Client) IntrospectionService() introspectionv1.IntrospectionService {
	return c.api().introspect
}

// HealthService returns the raw Health service client.
func (c *Client) HealthService() introspectionv1.HealthService { return c.api().health }

// VersionService returns the raw Version service client.
func (c *Client) VersionService() versionv1.VersionService { return c.api().versionSvc }

// Version is the daemon's build.
type Version struct {
	Version   string
	Revision  string
	GoVersion string
}

// Version returns the daemon's build.
func (c *Client) Version(ctx context.Context) (Version, error) {
	r, err := c.api().versionSvc.Version(ctx, &emptypb.Empty{})
	if err != nil {
		return Version{}, err
	}
	return Version{Version: r.Version, Revision: r.Revision, GoVersion: r.GoVersion}, nil
}

// ServerInfo identifies a daemon instance.
type ServerInfo struct {
	// UUID is stable for the daemon's root folder, across restarts.
	UUID      string
	Pid       uint64
	StartedAt time.Time
	Version   string
	Root      string
	State     string
}

// Server identifies the daemon instance.
func (c *Client) Server(ctx context.Context) (ServerInfo, error) {
	r, err := c.api().introspect.Server(ctx, &emptypb.Empty{})
	if err != nil {
		return ServerInfo{}, err
	}
	return ServerInfo{
		UUID:      r.Uuid,
		Pid:       r.Pid,
		StartedAt: apiconv.TimeFromProto(r.StartedAt),
		Version:   r.Version,
		Root:      r.Root,
		State:     r.State,
	}, nil
}

// IsServing reports whether the daemon serves requests (also while it
// still reconnects to the shims of a previous run).
func (c *Client) IsServing(ctx context.Context) (bool, error) {
	r, err := c.api().health.Check(ctx, &emptypb.Empty{})
	if err != nil {
		return false, err
	}
	s := r.Status
	return s == introspectionv1.HealthResponse_SERVING || s == introspectionv1.HealthResponse_RESTORING, nil
}
