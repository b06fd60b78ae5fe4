package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
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
}

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
	p := &Proxy{log: log, pools: map[string]*appPool{}, events: events, routed: make(chan struct{}), idPrefix: hex.EncodeToString(b[:])}
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
	var rec *recorder // set when the access log is on
	if p.access != nil {
		rec = &recorder{ResponseWriter: w}
		start := time.Now()
		defer func() { p.logAccess(r, rec, start, rid, fwd.client) }()
		w = rec
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
	}
	envp := p.envPool.Get().(*wsgiadapter.Environ)
	env := buildEnviron((*envp)[:0], r, ri)
	defer func() { *envp = env[:0]; p.envPool.Put(envp) }()
	p.forward(w, r, rt, env, rid)
}

// recorder notes what the access log needs of a response.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	app    string
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// ReadFrom keeps sendfile for static files through the recorder
// (http.ServeContent copies into the ResponseWriter's ReadFrom).
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := io.Copy(r.ResponseWriter, src)
	r.bytes += n
	return n, err
}

// Flush keeps streaming working through the recorder (relay flushes).
func (r *recorder) Flush() {
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

// maxAttempts bounds the fresh connections tried for one request when
// workers cannot be reached (a worker died between its last request and
// this one).
const maxAttempts = 3

func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, rt route, env wsgiadapter.Environ, rid string) {
	ctx := r.Context()
	app, maxBody, timeout := rt.app, rt.maxBody, rt.requestTimeout
	var watch *bodyWatch
	if maxBody > 0 {
		if r.ContentLength > maxBody {
			writeError(w, http.StatusRequestEntityTooLarge, 0)
			return
		}
		if r.ContentLength < 0 {
			// A chunked upload is cut off where it passes the limit.
			watch = &bodyWatch{r: http.MaxBytesReader(w, r.Body, maxBody)}
			r.Body = watch
		}
	}
	// A small body is read up front so a retry can send it again; a
	// streamed one is never retried after its first byte was read, and
	// only read after the REQUEST frame went out.
	var body io.Reader
	size := r.ContentLength
	var small []byte
	if size > 0 && size <= wsgiadapter.InlineBodyMax {
		small = make([]byte, size)
		if _, err := io.ReadFull(r.Body, small); err != nil {
			p.log.Debug("client body incomplete", "request_id", rid, "error", err)
			return
		}
	} else if size != 0 {
		body = r.Body
	}
	var lastErr error
	for attempt := 0; attempt < maxAttempts; {
		l, err := app.acquire(ctx)
		if err != nil {
			p.unavailable(w, r, app, rid, err)
			return
		}
		conn := l.conn
		pooled := conn != nil
		if !pooled {
			attempt++
			conn, err = wsgiadapter.Dial(ctx, l.w.socket)
			if err != nil {
				app.dropConn(l, nil)
				lastErr = err
				if ctx.Err() != nil {
					return // the client left while we dialled
				}
				continue
			}
		}
		if body == nil {
			err = conn.SendBytes(env, small)
		} else {
			err = conn.Send(env, body, size)
		}
		if err != nil {
			app.dropConn(l, conn)
			if errors.Is(err, wsgiadapter.ErrNotDelivered) {
				// A stale pooled connection (its worker died or closed
				// it) costs no attempt: the pool holds at most threads
				// of them, so this ends, with a fresh dial at the latest.
				lastErr = err
				continue
			}
			p.log.Warn("sending request to worker failed", "app", app.key, "worker", l.w.id, "request_id", rid, "error", err)
			writeError(w, http.StatusBadGateway, 0)
			return
		}
		p.relay(w, r, app, l, conn, rid, timeout, watch)
		return
	}
	p.log.Warn("no worker could take the request", "app", app.key, "request_id", rid, "error", lastErr)
	writeError(w, http.StatusBadGateway, 0)
}

// relay copies the worker's response to the client. A client that goes
// away closes the worker connection, which is how the worker learns to
// stop (docs/protocol.md, Cancelling).
func (p *Proxy) relay(w http.ResponseWriter, r *http.Request, app *appPool, l lease, conn *wsgiadapter.Conn, rid string, timeout time.Duration, watch *bodyWatch) {
	start := time.Now()
	stop := context.AfterFunc(r.Context(), func() { conn.Close() })
	defer func() {
		// The cancel hook must be gone before the connection is pooled:
		// a client leaving right after its response would otherwise
		// close a connection that is already serving someone else. If
		// it ran, Close marked the connection not reusable.
		stop()
		app.release(l, conn)
	}()

	timedOut := func(err error) bool {
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return false
		}
		conn.Close()
		detail := fmt.Sprintf("request %s %s %s exceeded request_timeout %v", rid, r.Method, r.URL.Path, timeout)
		p.log.Warn("request timed out; the worker will be recycled", "app", app.key, "worker", l.w.id, "pid", l.w.pid, "request_id", rid, "after", time.Since(start).Round(time.Millisecond))
		p.events(channel.Event{Kind: channel.EventTimeout, App: app.key, WorkerID: l.w.id, Detail: detail})
		return true
	}
	conn.SetReadTimeout(timeout)
	head, err := conn.ReadHead()
	if err != nil {
		switch {
		case timedOut(err):
			writeError(w, http.StatusGatewayTimeout, 0)
		case watch.tooLarge():
			writeError(w, http.StatusRequestEntityTooLarge, 0)
		case r.Context().Err() != nil:
			// The client left; logged as 499 by the access log later.
		default:
			p.log.Warn("worker failed before answering", "app", app.key, "worker", l.w.id, "pid", l.w.pid, "request_id", rid, "error", err)
			writeError(w, http.StatusBadGateway, 0)
		}
		return
	}
	h := w.Header()
	for _, hv := range head.Headers {
		h.Add(hv.Name, hv.Value)
	}
	if _, ok := h["Content-Type"]; !ok {
		// Do not let net/http sniff and invent a type the app did not send.
		h["Content-Type"] = nil
	}
	w.WriteHeader(head.Status)
	flusher, _ := w.(http.Flusher)
	for {
		chunk, err := conn.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			if timedOut(err) {
				panic(http.ErrAbortHandler)
			}
			if !errors.Is(err, wsgiadapter.ErrAppFailed) && r.Context().Err() == nil {
				p.log.Warn("worker failed mid-response", "app", app.key, "worker", l.w.id, "pid", l.w.pid, "request_id", rid, "error", err)
			}
			// Abort the client's response: it must not look complete.
			panic(http.ErrAbortHandler)
		}
		if _, err := w.Write(chunk); err != nil {
			conn.Close()
			panic(http.ErrAbortHandler)
		}
		if flusher != nil && !conn.Buffered() {
			flusher.Flush()
		}
	}
}

func (p *Proxy) unavailable(w http.ResponseWriter, r *http.Request, app *appPool, rid string, err error) {
	switch {
	case r.Context().Err() != nil:
		return
	case errors.Is(err, errFailing):
		writeError(w, http.StatusServiceUnavailable, 30)
	case errors.Is(err, errQueueTimeout):
		p.log.Warn("request waited too long for a free thread", "app", app.key, "request_id", rid)
		writeError(w, http.StatusServiceUnavailable, 5)
	case errors.Is(err, errQueueFull):
		p.log.Warn("queue full; request refused", "app", app.key, "request_id", rid)
		writeError(w, http.StatusServiceUnavailable, 5)
	default:
		writeError(w, http.StatusServiceUnavailable, 5)
	}
}

// bodyWatch remembers whether a chunked upload was cut off at max_body,
// so the failure can be answered 413 instead of 502.
type bodyWatch struct {
	r      io.ReadCloser
	tooBig atomic.Bool
}

func (b *bodyWatch) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		b.tooBig.Store(true)
	}
	return n, err
}

func (b *bodyWatch) Close() error { return b.r.Close() }

// tooLarge reports whether the body passed max_body; nil means no watch.
func (b *bodyWatch) tooLarge() bool { return b != nil && b.tooBig.Load() }
