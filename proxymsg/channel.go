// Package proxymsg owns the socketpair between the master and the proxy:
// the message types both sides agree on and their length-prefixed JSON
// framing. It is the only thing the proxy and the supervisor share, so
// neither imports the other.
//
// Down (master → proxy): Setup once, then Table whenever routing or a
// worker's state changes, Reopen after log rotation, Certs when the TLS
// certificates were re-read, ACME when its settings changed, Figures every
// few seconds when metrics are on, and MetricsQuery for `pyctl metrics`.
// Up (proxy → master): Event, and MetricsAnswer. Listening sockets that
// change while the proxy runs travel on a second socketpair (files.go).
package proxymsg

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// maxMessage bounds one message; a table for thousands of apps fits.
const maxMessage = 64 << 20

// Message is one envelope on the channel; exactly one field is set.
type Message struct {
	Setup  *Setup  `json:"setup,omitempty"`
	Table  *Table  `json:"table,omitempty"`
	Event  *Event  `json:"event,omitempty"`
	Reopen *Reopen `json:"reopen,omitempty"`
	Certs  *Certs  `json:"certs,omitempty"`
	// ProxyProtocol replaces the peers that must send a PROXY header
	// (config reload).
	ProxyProtocol *ProxyProtocol `json:"proxy_protocol,omitempty"`
	// ACME replaces the automatic certificate settings (config reload).
	ACME *ACMEConfig `json:"acme,omitempty"`
	// Figures (down) are the supervisor's figures the proxy exports as
	// metrics; MetricsQuery (down) asks for a scrape's text, answered by
	// MetricsAnswer (up). See metrics.go.
	Figures       *Figures       `json:"figures,omitempty"`
	MetricsQuery  *MetricsQuery  `json:"metrics_query,omitempty"`
	MetricsAnswer *MetricsAnswer `json:"metrics_answer,omitempty"`
}

// ProxyProtocol is [proxy] proxy_protocol: connections from these
// peers (CIDR prefixes) must begin with a PROXY protocol header, whose
// client is then the connection's; from others, none may.
type ProxyProtocol struct {
	Allowed []string `json:"allowed"`
}

// Certs replaces the proxy's TLS certificates (config reload, SIGHUP):
// the whole set, which the master has read and checked. The proxy serves
// the new set from the next handshake on; connections already open keep
// the session they have.
type Certs struct {
	Pairs []CertPair `json:"pairs"`
}

// Reopen asks the proxy to reopen its access log (the master got SIGUSR1,
// after logrotate moved the file and the master created the new one).
type Reopen struct{}

// Setup tells a freshly started proxy how to run.
type Setup struct {
	// Listeners are the inherited listening sockets, in the order of the
	// proxy's descriptors starting at 4, by address for logs.
	Listeners []string `json:"listeners"`
	// ListenerTLS says, for each of Listeners, whether it is a
	// tls_listen socket; nil: all plain HTTP.
	ListenerTLS []bool `json:"listener_tls,omitempty"`
	// ListenerMetrics says, for each of Listeners, whether it is the
	// metrics_listen socket (the proxy serves /metrics there, no app);
	// nil: none is.
	ListenerMetrics []bool `json:"listener_metrics,omitempty"`
	// Version is the daemon's version, for pyhost_build_info.
	Version string `json:"version,omitempty"`
	// Certs are the [[tls]] certificates, as the master read them;
	// later changes come as Message.Certs.
	Certs []CertPair `json:"certs,omitempty"`
	// ACME, when set, turns automatic certificates on ([proxy] acme);
	// later changes come as Message.ACME.
	ACME *ACME `json:"acme,omitempty"`
	// ProxyProtocol are the peers that must send a PROXY header (CIDR
	// prefixes); later changes come as Message.ProxyProtocol.
	ProxyProtocol []string `json:"proxy_protocol,omitempty"`
	// FilesFD is the proxy's descriptor for its end of the files socket,
	// on which later ListenerSets arrive (files.go); 0: none, the
	// inherited listeners are all it serves.
	FilesFD int `json:"files_fd,omitempty"`
	// ShutdownTimeout bounds how long in-flight requests may finish:
	// config's value, which the proxy takes as it is (0 would be none).
	ShutdownTimeout time.Duration `json:"shutdown_timeout"`
	// Procs is the proxy's GOMAXPROCS; 0 leaves Go's default.
	Procs int `json:"procs"`
	// AccessLog is the file the proxy appends a line per request to (the
	// master creates it, owned by the proxy's user); "" for none.
	AccessLog string `json:"access_log,omitempty"`
	// AccessLogPerApp: also send each app's access lines up as
	// EventAccess, for log_dir/USER/APP.access.log ([daemon]
	// access_log_per_app), which the proxy cannot open itself.
	AccessLogPerApp bool `json:"access_log_per_app,omitempty"`
	// TrustedProxies are the CIDR prefixes whose X-Forwarded-* and
	// X-Request-Id the proxy believes.
	TrustedProxies []string `json:"trusted_proxies,omitempty"`

	// The client limits, the [proxy] keys of docs/config.md. 0 leaves a
	// limit at the proxy's default; a negative size, rate or count turns
	// it off (a config value of 0 where the key allows it).
	BufferRequestBody   int64         `json:"buffer_request_body,omitempty"`
	RequestSpoolLimit   int64         `json:"request_spool_limit,omitempty"`
	ClientBodyTimeout   time.Duration `json:"client_body_timeout,omitempty"`
	ClientBodyMinRate   int64         `json:"client_body_min_rate,omitempty"`
	SendTimeout         time.Duration `json:"send_timeout,omitempty"`
	KeepaliveTimeout    time.Duration `json:"keepalive_timeout,omitempty"`
	MaxConnections      int           `json:"max_connections,omitempty"`
	MaxConnectionsPerIP int           `json:"max_connections_per_ip,omitempty"`
}

// Table is the whole routing state. It is always sent whole and replaces
// the previous one: simpler to reason about than deltas, and small.
type Table struct {
	Serial uint64 `json:"serial"`
	Apps   []App  `json:"apps"`
	// Default is the key of the app that answers a Host no app claims;
	// "" for none (404).
	Default string `json:"default,omitempty"`
}

// AppState is what the proxy needs to know of an app's life.
type AppState string

// App states as the proxy sees them.
const (
	AppRunning  AppState = "running"  // serve with its ready workers; wait for starting ones
	AppStarting AppState = "starting" // no worker ready yet: queue requests
	AppFailing  AppState = "failing"  // 503 with Retry-After
	AppStopped  AppState = "stopped"  // 503
	// AppIdle: stopped for lack of requests; a request queues and the
	// proxy sends EventWake once.
	AppIdle AppState = "idle"
)

// App is one routable app.
type App struct {
	// Key is unique and stable: "user/app".
	Key     string   `json:"key"`
	Domains []string `json:"domains"` // empty: any host (express mode)
	Prefix  string   `json:"prefix"`  // "/" or "/path" without trailing slash
	State   AppState `json:"state"`
	// The app's tunables the proxy enforces, from config's table of
	// tunables (config.App.RouteTunables, whose rows name these fields),
	// always as the app's config has them: validated, defaults applied.
	//
	// QueueTimeout bounds how long a request waits for a free thread;
	// StartupTimeout how long it waits while the app starts or wakes.
	QueueTimeout   time.Duration `json:"queue_timeout"`
	StartupTimeout time.Duration `json:"startup_timeout"`
	// QueueLimit bounds how many requests wait; more get 503 at once.
	QueueLimit int `json:"queue_limit"`
	// RequestTimeout: a worker silent this long (before its response
	// head, or between chunks) gets the request cancelled: 504, and
	// EventTimeout. 0: none.
	RequestTimeout time.Duration `json:"request_timeout"`
	// MaxBody is the largest request body (413 above); 0: unlimited.
	MaxBody int64    `json:"max_body"`
	Workers []Worker `json:"workers"`
	// Static are URL paths the proxy serves from a directory itself.
	Static []StaticMount `json:"static,omitempty"`
	// HTTPSOnly: a plain-HTTP request gets a 308 to its https URL
	// (ACME's HTTP-01 challenges excepted).
	HTTPSOnly bool `json:"https_only,omitempty"`
	// HSTS is the Strict-Transport-Security value of https responses;
	// "": none.
	HSTS string `json:"hsts,omitempty"`
}

// StaticMount is one [[static]] of an app.
type StaticMount struct {
	URL string `json:"url"` // full path with a trailing slash: "/static/"
	Dir string `json:"dir"` // absolute
	// Owner is the app owner's uid. A proxy running as someone else
	// serves only world-readable files from a directory Owner owns, so a
	// mount cannot lend the proxy's own rights to a tenant.
	Owner uint32 `json:"owner"`
}

// Worker is one worker process the proxy may send requests to.
type Worker struct {
	// ID is unique for the daemon's life: no two workers ever share one.
	ID       string `json:"id"`
	PID      int    `json:"pid"`
	Socket   string `json:"socket"`
	Threads  int    `json:"threads"`
	Draining bool   `json:"draining"` // send nothing new; report Drained when idle
	// RequestBudget is how many requests this worker serves before it is
	// recycled (its max_requests after jitter); the proxy sends
	// EventBudget when the last of them completes. 0: no budget.
	RequestBudget int `json:"request_budget,omitempty"`
}

// EventKind names what the proxy reports.
type EventKind string

// Events the proxy sends up.
const (
	// EventDrained: a draining worker has no request in flight and the
	// proxy closed its connections; it may be stopped now.
	EventDrained EventKind = "drained"
	// EventStats: per-worker request counters, sent about once a second
	// while they change.
	EventStats EventKind = "stats"
	// EventTimeout: a request on WorkerID exceeded request_timeout; the
	// worker should be recycled. Detail says which request and how long.
	EventTimeout EventKind = "timeout"
	// EventWake: a request arrived for an idle app.
	EventWake EventKind = "wake"
	// EventApplied: the proxy routes by the table with Serial now.
	EventApplied EventKind = "applied"
	// EventBudget: WorkerID completed its RequestBudget requests and
	// should be recycled. Sent once per worker, the moment it happens.
	EventBudget EventKind = "budget"
	// EventAccess: App's access-log lines since the last one, whole, in
	// Detail, for its per-app access log (Setup.AccessLogPerApp); Serial
	// numbers the batches, so that two equal ones are never merged.
	EventAccess EventKind = "access"
)

// WorkerStats are the proxy's counters for one worker.
type WorkerStats struct {
	Served uint64 `json:"served"` // requests completed
	Busy   int    `json:"busy"`   // requests in flight now
}

// Event is one report from the proxy.
type Event struct {
	Kind     EventKind `json:"kind"`
	App      string    `json:"app,omitempty"`
	WorkerID string    `json:"worker_id,omitempty"`
	// Stats, for EventStats: by worker ID.
	Stats map[string]WorkerStats `json:"stats,omitempty"`
	// Detail, for EventTimeout: "request 3f2a-1c exceeded 60s".
	Detail string `json:"detail,omitempty"`
	// Serial, for EventApplied.
	Serial uint64 `json:"serial,omitempty"`
}

// ErrTooLarge is returned for a message over the size limit.
var ErrTooLarge = errors.New("channel message too large")

// Conn frames messages on a stream. Send is safe for concurrent use;
// Receive must be called from one goroutine.
type Conn struct {
	wmu sync.Mutex
	w   io.Writer
	r   *bufio.Reader
}

// NewConn wraps a stream (one end of the socketpair).
func NewConn(rw io.ReadWriter) *Conn {
	return &Conn{w: rw, r: bufio.NewReader(rw)}
}

// Send writes one message.
func (c *Conn) Send(m Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode channel message: %w", err)
	}
	if len(b) > maxMessage {
		return ErrTooLarge
	}
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b)))
	buf = append(buf, b...)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.w.Write(buf); err != nil {
		return fmt.Errorf("send channel message: %w", err)
	}
	return nil
}

// Receive reads one message. io.EOF means the peer closed the channel.
func (c *Conn) Receive() (Message, error) {
	var head [4]byte
	if _, err := io.ReadFull(c.r, head[:]); err != nil {
		return Message{}, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n > maxMessage {
		return Message{}, fmt.Errorf("%w: %d bytes", ErrTooLarge, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		return Message{}, fmt.Errorf("read channel message: %w", err)
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return Message{}, fmt.Errorf("decode channel message: %w", err)
	}
	return m, nil
}
