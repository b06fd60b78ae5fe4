package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/accesslog"
	"github.com/pyhost/pyhost/channel"
	"github.com/pyhost/pyhost/wsgiadapter"
)

// Proxy is the HTTP handler that routes and forwards requests to workers.
// Its routing state is replaced whole by Update; ServeHTTP never blocks on
// an update.
type Proxy struct {
	log    hclog.Logger
	routes atomic.Pointer[router]

	// pools persist across tables so idle connections and in-flight
	// counts survive a routing change. Guarded by poolsMu; only Update
	// writes it.
	poolsMu sync.Mutex
	pools   map[string]*appPool

	events func(channel.Event)

	// routed is closed by the first Update: until the master has said
	// what to route, a request waits rather than get a 404 for a site
	// that is about to exist.
	routed     chan struct{}
	routedOnce sync.Once

	idPrefix string
	idSeq    atomic.Uint64
	envPool  sync.Pool

	// access, when set, gets a line per request (R11).
	access *accesslog.Writer
	// trusted are the proxies whose X-Forwarded-* and X-Request-Id are
	// believed (R8); set before serving.
	trusted []netip.Prefix
	// limits are set before serving (SetLimits); New starts with the
	// defaults.
	limits Limits
	// uploadMem and uploadSpooled are the bytes of request bodies held
	// in memory and in spool files now, each under its budget
	// (forward.go).
	uploadMem       atomic.Int64
	uploadSpooled   atomic.Int64
	uploadSpoolOnce sync.Once
	uploadSpoolAt   string // set by uploadSpoolOnce: the spool directory, "" for none

	// httpsPort is the port of the first TLS listener, 0 when none (an
	// https_only redirect then names no port); set before serving.
	httpsPort func() int
}

// SetLimits sets the client limits (zero fields take their defaults);
// call it before serving.
func (p *Proxy) SetLimits(l Limits) { p.limits = l.WithDefaults() }

// SetTrustedProxies sets trusted_proxies; call it before serving.
func (p *Proxy) SetTrustedProxies(trusted []netip.Prefix) { p.trusted = trusted }

// SetAccessLog makes the proxy log every request to w; call it before
// serving.
func (p *Proxy) SetAccessLog(w *accesslog.Writer) { p.access = w }

// New returns a Proxy with an empty table: every request gets 404 until
// the first Update. events receives what the master must hear (a worker
// drained, a request timed out, an idle app woken, a worker's request
// budget spent); it is called from any goroutine, must not block, and may
// be nil.
func New(log hclog.Logger, events func(channel.Event)) *Proxy {
	var b [4]byte
	rand.Read(b[:])
	if events == nil {
		events = func(channel.Event) {}
	}
	p := &Proxy{log: log, pools: map[string]*appPool{}, events: events, routed: make(chan struct{}), idPrefix: hex.EncodeToString(b[:]), limits: DefaultLimits}
	p.routes.Store(newRouter())
	p.envPool.New = func() any { e := make(wsgiadapter.Environ, 0, 64); return &e }
	return p
}

// Update installs a new routing table.
func (p *Proxy) Update(t channel.Table) {
	p.poolsMu.Lock()
	defer p.poolsMu.Unlock()
	rt := newRouter()
	seen := make(map[string]bool, len(t.Apps))
	for _, a := range t.Apps {
		pool, ok := p.pools[a.Key]
		if !ok {
			pool = &appPool{
				key: a.Key,
				onDrained: func(app, worker string) {
					p.events(channel.Event{Kind: channel.EventDrained, App: app, WorkerID: worker})
				},
				onWake: func(app string) { p.events(channel.Event{Kind: channel.EventWake, App: app}) },
				onBudget: func(app, worker string) {
					p.events(channel.Event{Kind: channel.EventBudget, App: app, WorkerID: worker})
				},
			}
			p.pools[a.Key] = pool
		}
		pool.update(a)
		seen[a.Key] = true
		r := newRoute(a.Prefix, pool, a.MaxBody, a.RequestTimeout, a.Static...)
		rt.addRoute(a.Domains, r)
		if a.Key == t.Default {
			rt.setDefault(r)
		}
	}
	for key, pool := range p.pools {
		if !seen[key] {
			pool.update(channel.App{Key: key, State: channel.AppStopped})
			delete(p.pools, key)
		}
	}
	p.routes.Store(rt)
	p.routedOnce.Do(func() { close(p.routed) })
	p.events(channel.Event{Kind: channel.EventApplied, Serial: t.Serial})
}

// Stats returns every worker's counters.
func (p *Proxy) Stats() map[string]channel.WorkerStats {
	p.poolsMu.Lock()
	defer p.poolsMu.Unlock()
	out := map[string]channel.WorkerStats{}
	for _, pool := range p.pools {
		pool.stats(out)
	}
	return out
}

// CloseIdle closes every pooled connection (at shutdown).
func (p *Proxy) CloseIdle() {
	p.poolsMu.Lock()
	defer p.poolsMu.Unlock()
	for _, pool := range p.pools {
		pool.closeAll()
	}
}

func (p *Proxy) newRequestID() string {
	return p.idPrefix + "-" + strconv.FormatUint(p.idSeq.Add(1), 16)
}

// ServeHTTP routes and forwards one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	peer, peerPort, _ := net.SplitHostPort(r.RemoteAddr)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	fwd := resolveForwarded(peer, p.trusted, r.Header, r.Host, scheme, p.newRequestID())
	rid := fwd.requestID
	w.Header().Set("X-Request-Id", rid)
	var rec *recorder // set when the access log is on, or the connection must close
	closing := mustClose(r)
	if p.access != nil || closing {
		rec = &recorder{ResponseWriter: w, close: closing}
		if p.access != nil {
			start := time.Now()
			defer func() { p.logAccess(r, rec, start, rid, fwd.client) }()
		}
		w = rec
	}
	drain := r.ContentLength != 0 // until forward takes the body over
	if drain {
		// A body nobody read (an error page, a 404, a static file),
		// net/http reads and drops after the answer, up to 256 KiB,
		// before the next request: that must not wait on a slow client
		// forever either.
		defer func() {
			if drain {
				http.NewResponseController(w).SetReadDeadline(time.Now().Add(p.limits.ClientBodyTimeout))
			}
		}()
	}
	if code := refuse(r); code != 0 {
		// Before routing: no app, no worker, sees what the proxy will
		// not forward.
		writeError(w, code, 0)
		return
	}
	select {
	case <-p.routed:
	case <-r.Context().Done():
		return
	}
	rt, ok := p.routes.Load().match(r.Host, r.URL.Path)
	if !ok {
		writeError(w, http.StatusNotFound, 0)
		return
	}
	if rec != nil {
		rec.app = rt.app.key
	}
	if m, rest, ok := rt.staticFor(r.URL.Path); ok {
		serveStatic(w, r, m, rest)
		return
	}
	ri := reqInfo{prefix: rt.prefix, scheme: fwd.scheme, requestID: rid, remoteAddr: fwd.client, remotePort: peerPort,
		forwardedFor: fwd.chain, forwardedHost: fwd.host}
	if fwd.client != peer {
		ri.remotePort = "" // the port is the last proxy's, not the client's
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		ri.serverPort = strconv.Itoa(la.Port)
		ri.serverAddr = la.AddrPort().Addr()
	}
	envp := p.envPool.Get().(*wsgiadapter.Environ)
	env := buildEnviron((*envp)[:0], r, ri)
	defer func() { *envp = env[:0]; p.envPool.Put(envp) }()
	if hasNUL(env) {
		// The worker protocol cannot carry it (the environ is
		// NUL-separated): refused here, before a worker is taken.
		writeError(w, http.StatusBadRequest, 0)
		return
	}
	drain = !p.forward(w, r, rt, env, rid)
}

// recorder notes what the access log needs of a response, and closes
// the connection after it when the request calls for that (mustClose).
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	app    string
	// close adds "Connection: close" to the response head, whoever
	// writes it (writeError clears the headers set before it).
	close bool
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code // not an informational 1xx: the response follows
	}
	if r.close && code >= 200 {
		r.Header().Set("Connection", "close")
	}
	r.ResponseWriter.WriteHeader(code)
}

// implicitHeader is net/http's WriteHeader(200) before the first byte
// of a body, done here so the recorder sees it.
func (r *recorder) implicitHeader() {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.implicitHeader()
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// ReadFrom keeps sendfile for static files through the recorder
// (http.ServeContent copies into the ResponseWriter's ReadFrom).
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	r.implicitHeader()
	n, err := io.Copy(r.ResponseWriter, src)
	r.bytes += n
	return n, err
}

// Flush keeps streaming working through the recorder (relay flushes).
func (r *recorder) Flush() {
	r.implicitHeader()
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (p *Proxy) logAccess(r *http.Request, rec *recorder, start time.Time, rid, client string) {
	status := rec.status
	if status == 0 {
		// Nothing was written: the client left first, or the request was
		// aborted mid-way; 499 as nginx logs a client that went away.
		status = 499
	}
	p.access.Log(accesslog.Entry{
		RemoteAddr: client,
		Time:       start,
		Method:     r.Method,
		URI:        r.RequestURI,
		Proto:      r.Proto,
		Status:     status,
		Bytes:      rec.bytes,
		Referer:    r.Header.Get("Referer"),
		UserAgent:  r.Header.Get("User-Agent"),
		Duration:   time.Since(start),
		App:        rec.app,
		RequestID:  rid,
	})
}
