package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/accesslog"
	"github.com/pyhost/pyhost/proxymsg"
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

	events func(proxymsg.Event)

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
	// challenge, when set, answers ACME's HTTP-01 challenges on plain
	// HTTP; set before serving (SetChallengeHandler).
	challenge ChallengeHandler
	// metrics, when set, counts requests per app (metrics.go); set
	// before the first Update.
	metrics *proxyMetrics
}

// ChallengeHandler answers ACME HTTP-01 challenges (RFC 8555 §8.3):
// package acme's Manager has this method.
// It reports false for a request that is no challenge it knows, which
// then goes to the app as any other.
type ChallengeHandler interface {
	HTTPChallenge(w http.ResponseWriter, r *http.Request) bool
}

// acmeChallengePath is where HTTP-01 challenges are asked for: never
// redirected by https_only, and offered to the ChallengeHandler first.
const acmeChallengePath = "/.well-known/acme-challenge/"

// SetChallengeHandler makes h answer ACME HTTP-01 challenges on plain
// HTTP, before routing; call it before serving. Nil, the default, leaves
// those paths to the apps (an app's own certbot --webroot works).
func (p *Proxy) SetChallengeHandler(h ChallengeHandler) { p.challenge = h }

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
func New(log hclog.Logger, events func(proxymsg.Event)) *Proxy {
	var b [4]byte
	rand.Read(b[:])
	if events == nil {
		events = func(proxymsg.Event) {}
	}
	p := &Proxy{log: log, pools: map[string]*appPool{}, events: events, routed: make(chan struct{}), idPrefix: hex.EncodeToString(b[:]), limits: DefaultLimits}
	p.routes.Store(newRouter())
	p.envPool.New = func() any { e := make(wsgiadapter.Environ, 0, 64); return &e }
	return p
}

// Update installs a new routing table.
func (p *Proxy) Update(t proxymsg.Table) {
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
					p.events(proxymsg.Event{Kind: proxymsg.EventDrained, App: app, WorkerID: worker})
				},
				onWake: func(app string) { p.events(proxymsg.Event{Kind: proxymsg.EventWake, App: app}) },
				onBudget: func(app, worker string) {
					p.events(proxymsg.Event{Kind: proxymsg.EventBudget, App: app, WorkerID: worker})
				},
				metrics: p.metrics.forApp(a.Key),
			}
			p.pools[a.Key] = pool
		}
		pool.update(a)
		seen[a.Key] = true
		r := newRoute(a.Prefix, pool, a.MaxBody, a.RequestTimeout, a.Static...)
		r.httpsOnly, r.hsts = a.HTTPSOnly, a.HSTS
		rt.addRoute(a.Domains, r)
		if a.Key == t.Default {
			rt.setDefault(r)
		}
	}
	for key, pool := range p.pools {
		if !seen[key] {
			pool.update(proxymsg.App{Key: key, State: proxymsg.AppStopped})
			delete(p.pools, key)
			p.metrics.drop(pool.metrics)
		}
	}
	p.routes.Store(rt)
	p.routedOnce.Do(func() { close(p.routed) })
	p.events(proxymsg.Event{Kind: proxymsg.EventApplied, Serial: t.Serial})
}

// Stats returns every worker's counters.
func (p *Proxy) Stats() map[string]proxymsg.WorkerStats {
	p.poolsMu.Lock()
	defer p.poolsMu.Unlock()
	out := map[string]proxymsg.WorkerStats{}
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
	var arrived time.Time
	if p.metrics != nil {
		arrived = time.Now()
	}
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
			start := arrived // one clock read for both, when metrics are on
			if start.IsZero() {
				start = time.Now()
			}
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
	challenge := r.TLS == nil && strings.HasPrefix(r.URL.Path, acmeChallengePath)
	if challenge && p.challenge != nil && p.challenge.HTTPChallenge(w, r) {
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
	am := rt.app.metrics
	if am != nil {
		if rec == nil {
			rec = &recorder{ResponseWriter: w, app: rt.app.key}
			w = rec
		}
		if r.ContentLength != 0 {
			r.Body = countedBody{r.Body, &am.reqBytes}
		}
		defer am.done(r.Method, rec, arrived)
	}
	if rt.httpsOnly && fwd.scheme != "https" && !challenge {
		p.redirectHTTPS(w, r)
		return
	}
	if rt.hsts != "" && fwd.scheme == "https" {
		// At the head, unless the app sent its own: error pages get it
		// too (they clear what was set before them).
		if rec == nil {
			rec = &recorder{ResponseWriter: w, app: rt.app.key}
			w = rec
		}
		rec.hsts = rt.hsts
	}
	if m, rest, ok := rt.staticFor(r.URL.Path); ok {
		serveStatic(w, r, m, rest)
		if am != nil {
			am.staticBytes.Add(uint64(rec.bytes))
		}
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

// redirectHTTPS answers a plain-HTTP request for an https_only app with
// a 308 to the same URL over https (308, not 301: the method and body
// stay, RFC 9110 §15.4.9): the same host, on the first TLS listener's
// port unless that is 443 (or there is none: a TLS front before pyhost
// is on 443).
func (p *Proxy) redirectHTTPS(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	if host == "" {
		// HTTP/1.0 without Host: the address the client reached.
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
			host = la.AddrPort().Addr().Unmap().String()
		}
	}
	if strings.IndexByte(host, ':') >= 0 {
		host = "[" + host + "]"
	}
	port := 0
	if p.httpsPort != nil {
		port = p.httpsPort()
	}
	if port != 0 && port != 443 {
		host += ":" + strconv.Itoa(port)
	}
	h := w.Header()
	h.Set("Location", "https://"+host+r.URL.RequestURI())
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusPermanentRedirect)
	if r.Method != http.MethodHead {
		io.WriteString(w, "308 Permanent Redirect: this site is served over https\n")
	}
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
	// hsts, when set, is the Strict-Transport-Security of the head,
	// unless the app sent one of its own.
	hsts string
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code // not an informational 1xx: the response follows
	}
	if r.close && code >= 200 {
		r.Header().Set("Connection", "close")
	}
	if r.hsts != "" && code >= 200 {
		if h := r.Header(); h.Get("Strict-Transport-Security") == "" {
			h.Set("Strict-Transport-Security", r.hsts)
		}
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
