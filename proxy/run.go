package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/pyhost/pyhost/accesslog"
	"github.com/pyhost/pyhost/proxymsg"
)

// Server limits that protect the front from slow or hostile clients,
// besides the configured ones (Limits).
const (
	// readHeaderTimeout bounds a request's head over HTTP/1 and, on a
	// TLS listener, the TLS handshake (net/http uses it for both).
	readHeaderTimeout = 10 * time.Second
	// maxHeaderBytes bounds a request's head: over HTTP/1 the bytes of
	// its lines, over HTTP/2 the decoded header list (advertised as
	// SETTINGS_MAX_HEADER_LIST_SIZE); past it, 431.
	maxHeaderBytes = 64 << 10
	// h2MaxStreams is how many requests one HTTP/2 connection may have
	// in flight (SETTINGS_MAX_CONCURRENT_STREAMS), nginx's
	// http2_max_concurrent_streams: more streams are refused.
	h2MaxStreams  = 128
	statsInterval = time.Second
)

// newServer is the http.Server of one listener: every timeout set, so
// that a client that stops half-way is cut (the body's deadlines are
// forward's, per read). The same limits hold for HTTP/2 on a TLS
// listener: IdleTimeout closes an HTTP/2 connection with no stream open,
// MaxHeaderBytes bounds its header lists, the body limits are forward's
// per request whatever the protocol, and WriteByteTimeout closes a
// connection that takes nothing for send_timeout. Go's HTTP/2 server
// bounds the handlers a client can start by resetting streams
// (CVE-2023-44487, "rapid reset"): a reset stream's handler counts
// against h2MaxStreams until it returns.
func newServer(h http.Handler, l Limits, log hclog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       l.KeepAliveTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: h2MaxStreams,
			WriteByteTimeout:     l.SendTimeout,
		},
		ErrorLog: log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
}

// setupLimits are the limits Setup carries, the defaults where it is
// silent.
func setupLimits(s proxymsg.Setup) Limits {
	return Limits{
		BufferRequestBody: s.BufferRequestBody,
		RequestSpoolLimit: s.RequestSpoolLimit,
		ClientBodyTimeout: s.ClientBodyTimeout,
		ClientBodyMinRate: s.ClientBodyMinRate,
		SendTimeout:       s.SendTimeout,
		KeepAliveTimeout:  s.KeepaliveTimeout,
		MaxConns:          s.MaxConnections,
		MaxConnsPerIP:     s.MaxConnectionsPerIP,
	}.WithDefaults()
}

// setProxyProtocol makes allowed (CIDR prefixes) the peers of pp.
func setProxyProtocol(pp *ProxyProtocol, allowed []string) error {
	var pfx []netip.Prefix
	for _, a := range allowed {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return fmt.Errorf("proxy_protocol %q: %w", a, err)
		}
		pfx = append(pfx, p)
	}
	pp.Set(pfx)
	return nil
}

// tidyAfter is how long after a crowd of connections began to leave the
// memory it held is given back: the rest of the crowd leaves meanwhile
// (an attack's connections are cut within a client_body_timeout of each
// other), and a churning attack costs a full collection per tidyAfter at
// most.
const tidyAfter = 5 * time.Second

// tidyMemory gives the heap's free memory back to the system tidyAfter
// after a crowd of connections began to leave (dropped). Without it the
// body buffers of an attack's connections stay resident: the collector
// would not even run again until the heap doubled, or sysmon forced it
// two minutes later, and the scavenger returns pages slowly after that.
func tidyMemory(ctx context.Context, dropped <-chan struct{}) {
	for {
		select {
		case <-dropped:
		case <-ctx.Done():
			return
		}
		t := time.NewTimer(tidyAfter)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		debug.FreeOSMemory()
	}
}

// openFileLimit is the proxy's RLIMIT_NOFILE (Go raised the soft limit
// to the hard one at start); 0 when unknown.
func openFileLimit() uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}

// Run is the proxy process: it takes its Setup from the master, serves
// the inherited listeners (and, when Setup names a files socket, every
// ListenerSet the master sends on it from then on), applies every Table
// it receives and reports events up. It returns nil after a graceful stop
// (ctx cancelled), and an error when the master went away or a listener
// failed.
func Run(ctx context.Context, ch *proxymsg.Conn, listeners []net.Listener, log hclog.Logger) error {
	first, err := ch.Receive()
	if err != nil {
		return fmt.Errorf("read setup from master: %w", err)
	}
	if first.Setup == nil {
		return errors.New("first message from master is not setup")
	}
	setup := *first.Setup
	if setup.Procs > 0 {
		runtime.GOMAXPROCS(setup.Procs)
	}

	events := newEventQueue()
	p := New(log, events.push)

	var trusted []netip.Prefix
	for _, t := range setup.TrustedProxies {
		pfx, err := netip.ParsePrefix(t)
		if err != nil {
			return fmt.Errorf("trusted proxy %q: %w", t, err)
		}
		trusted = append(trusted, pfx)
	}
	p.SetTrustedProxies(trusted)
	certs := &Certs{}
	if err := certs.Load(setup.Certs); err != nil {
		return err
	}
	if slices.Contains(setup.ListenerMetrics, true) {
		p.metrics = newProxyMetrics(p, setup.Version, certs)
	}
	// Automatic certificates: one front for the listeners, whatever a
	// reload later turns on, off or over to another CA.
	acmeCerts := newACMEFront(log.Named("acme"))
	defer acmeCerts.close()
	certs.SetExtra(acmeCerts)
	p.SetChallengeHandler(acmeCerts)
	if err := acmeCerts.configure(setup.ACME); err != nil {
		log.Error("automatic certificates are off", "error", err)
	}
	pp := &ProxyProtocol{}
	if err := setProxyProtocol(pp, setup.ProxyProtocol); err != nil {
		return err
	}
	limits := setupLimits(setup)
	p.SetLimits(limits)
	maxConns := connCap(limits.MaxConns, openFileLimit())
	if maxConns < limits.MaxConns {
		log.Warn("max_connections lowered to what the open-file limit backs", "max_connections", limits.MaxConns, "now", maxConns, "nofile", openFileLimit())
	}
	var refusals rateLog
	conns := newConnLimiter(maxConns, limits.MaxConnsPerIP, trusted)
	var al *accesslog.Writer
	if setup.AccessLog != "" {
		var err error
		al, err = accesslog.Open(setup.AccessLog, func(err error) { log.Error("writing the access log", "error", err) })
		if err != nil {
			return err
		}
	}
	if setup.AccessLogPerApp {
		// Each app's lines go up to the master, which writes them to
		// log_dir/USER/APP.access.log: the proxy cannot enter USER/.
		if al == nil {
			al = accesslog.NewPerAppOnly()
		}
		var batch atomic.Uint64
		al.SetPerApp(func(app string, lines []byte) {
			events.push(proxymsg.Event{Kind: proxymsg.EventAccess, App: app, Detail: string(lines), Serial: batch.Add(1)})
		})
	}
	if al != nil {
		defer al.Close()
		p.SetAccessLog(al)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go tidyMemory(ctx, conns.dropped)
	masterGone := make(chan error, 1)
	go func() {
		for {
			m, err := ch.Receive()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = errors.New("master closed the channel")
				}
				masterGone <- err
				return
			}
			if m.Certs != nil {
				// The master checked the set; a refusal here leaves the
				// running one, as there.
				if err := certs.Load(m.Certs.Pairs); err != nil {
					log.Error("cannot load the new certificates; the ones in use stay", "error", err)
				} else {
					log.Info("certificates loaded", "pairs", len(m.Certs.Pairs))
				}
			}
			if m.ProxyProtocol != nil {
				if err := setProxyProtocol(pp, m.ProxyProtocol.Allowed); err != nil {
					log.Error("cannot apply proxy_protocol; the peers before stay", "error", err)
				} else {
					log.Info("proxy_protocol peers changed", "allowed", m.ProxyProtocol.Allowed)
				}
			}
			if m.ACME != nil {
				if err := acmeCerts.configure(m.ACME.ACME); err != nil {
					log.Error("cannot apply the new ACME settings; the ones before stay", "error", err)
				}
			}
			if m.Table != nil {
				p.Update(*m.Table)
				acmeCerts.setTable(*m.Table)
			}
			if m.Figures != nil && p.metrics != nil {
				p.metrics.figures.Set(*m.Figures)
			}
			if m.MetricsQuery != nil {
				// Gathered aside: a table must not wait behind it.
				go func(q proxymsg.MetricsQuery) {
					a := p.metrics.answer(q)
					if err := ch.Send(proxymsg.Message{MetricsAnswer: &a}); err != nil {
						log.Error("send metrics to master", "error", err)
					}
				}(*m.MetricsQuery)
			}
			if m.Reopen != nil && p.access != nil {
				if err := p.access.Reopen(); err != nil {
					log.Error("cannot reopen the access log", "error", err)
				}
			}
		}
	}()
	go func() {
		tick := time.NewTicker(statsInterval)
		defer tick.Stop()
		var last map[string]proxymsg.WorkerStats
		for {
			select {
			case <-tick.C:
				st := p.Stats()
				if maps.Equal(st, last) {
					continue
				}
				last = st
				if err := ch.Send(proxymsg.Message{Event: &proxymsg.Event{Kind: proxymsg.EventStats, Stats: st}}); err != nil {
					log.Error("send stats to master", "error", err)
				}
			case <-events.ready:
				for _, ev := range events.take() {
					if err := ch.Send(proxymsg.Message{Event: &ev}); err != nil {
						log.Error("send event to master", "error", err)
					}
				}
			case <-ctx.Done():
				return
			}
		}
	}()

	// The master sends config's value (graceful_timeout, or the built-in
	// one); the proxy has no default of its own.
	grace := setup.ShutdownTimeout
	lns := newListenerSet(log, grace, func() *http.Server { return newServer(p, limits, log) })
	if p.metrics != nil {
		mh := p.metrics.handler(log.Named("metrics"))
		lns.newMetricsServer = func() *http.Server { return newServer(mh, limits, log) }
	}
	lns.tlsConfig = certs.TLSConfig()
	p.httpsPort = lns.httpsPort
	// Every listener reads PROXY headers from the allowed peers, the set
	// of which a config reload may change (even from none).
	lns.proxyProto = func(ln net.Listener) net.Listener {
		return newProxyListener(ln, pp, func(peer netip.Addr, err error) {
			refusals.warn(log, "proxy_protocol", "connection refused: PROXY protocol", "peer", peer, "error", err)
		})
	}
	lns.limit = func(ln net.Listener) net.Listener {
		return &limitListener{Listener: ln, lim: conns, refused: func(why refusal, addr netip.Addr) {
			total, from := conns.count(netip.Prefix{})
			if why == refusedPerIP {
				key, _ := clientKey(addr, trusted)
				_, from = conns.count(key)
			}
			refusals.warn(log, string(why), "connection refused at "+string(why), "client", addr, "open", total, "open_from_client", from)
		}}
	}
	for i, ln := range listeners {
		addr := ln.Addr().String()
		if i < len(setup.Listeners) {
			addr = setup.Listeners[i]
		}
		lns.addKind(ln, addr, lnKind{tls: i < len(setup.ListenerTLS) && setup.ListenerTLS[i], metrics: i < len(setup.ListenerMetrics) && setup.ListenerMetrics[i]})
	}
	log.Info("proxy serving", "listeners", setup.Listeners)
	if setup.FilesFD > 0 {
		f := os.NewFile(uintptr(setup.FilesFD), "files")
		fc, err := proxymsg.NewFilesConn(f)
		f.Close()
		if err != nil {
			sctx, scancel := context.WithTimeout(context.Background(), grace)
			defer scancel()
			lns.shutdown(sctx)
			return err
		}
		defer fc.Close()
		go applyListenerSets(fc, lns, log)
	}

	var result error
	select {
	case <-ctx.Done():
	case err := <-masterGone:
		result = err
	case err := <-lns.failed:
		result = err
	}
	sctx, scancel := context.WithTimeout(context.Background(), grace)
	defer scancel()
	lns.shutdown(sctx)
	p.CloseIdle()
	if setup.AccessLogPerApp {
		// The last requests' lines, which the event loop (stopped with
		// ctx) would not send any more.
		al.Flush()
		for _, ev := range events.take() {
			if ev.Kind == proxymsg.EventAccess {
				ch.Send(proxymsg.Message{Event: &ev})
			}
		}
	}
	return result
}

// listenerSet is what the proxy listens on. Each listener has an
// http.Server of its own, so one can be taken away alone: its Shutdown
// stops accepting, closes its idle keep-alive connections at once and
// each busy one after its response (sent with "Connection: close"),
// while the others go on untouched. They share the handler, so routing
// and pools are the same whichever listener a request came in on.
type listenerSet struct {
	log       hclog.Logger
	grace     time.Duration // how long a removed listener's requests may finish
	newServer func() *http.Server
	// newMetricsServer is the server of the metrics listener; nil:
	// metrics are off, and such a listener answers 404.
	newMetricsServer func() *http.Server
	// failed gets the first error of a Serve that was not told to stop.
	failed chan error

	// limit, when set, wraps each listener before it is served: the
	// connection caps (limitListener), shared by every listener.
	limit func(net.Listener) net.Listener
	// tlsConfig serves the TLS listeners; set before the first add.
	tlsConfig *tls.Config
	// proxyProto, when set, wraps each listener first: the PROXY
	// protocol's header comes before the caps count the client, and
	// before a TLS handshake.
	proxyProto func(net.Listener) net.Listener

	// tlsPort is the port of the first TLS listener, 0 when none: where
	// https_only redirects to.
	tlsPort atomic.Int32

	mu       sync.Mutex
	stopping bool              // guarded by mu: shutdown began; no more changes
	cur      []*servedListener // guarded by mu
	wg       sync.WaitGroup    // every Serve, and every drain of a removed listener
}

// lnKind is what a listener serves: the apps over plain HTTP or TLS, or
// the metrics (metrics_listen, plain HTTP).
type lnKind struct{ tls, metrics bool }

// fresh is a listener received but not served yet.
type fresh struct {
	ln   net.Listener
	addr string
	id   socketID
	kind lnKind
}

func closeFresh(fs []fresh) {
	for _, f := range fs {
		f.ln.Close()
	}
}

// servedListener is one listening socket and its server.
type servedListener struct {
	addr    string
	id      socketID
	tls     bool // TLS is terminated here
	metrics bool // serves /metrics, not the apps
	port    int  // the bound port
	srv     *http.Server
	closed  chan struct{} // closed once the socket no longer accepts
}

// socketID tells sockets apart however they are named: the inode of an
// open socket is unique while it is open, and both a listener the proxy
// serves and a descriptor just received for it are open.
type socketID struct{ dev, ino uint64 }

func newListenerSet(log hclog.Logger, grace time.Duration, newServer func() *http.Server) *listenerSet {
	return &listenerSet{log: log, grace: grace, newServer: newServer, failed: make(chan error, 1)}
}

// add serves ln from now on, terminating TLS on it when tls is set.
// Only during set-up: apply is for changes.
func (s *listenerSet) add(ln net.Listener, addr string, tls bool) {
	s.addKind(ln, addr, lnKind{tls: tls})
}

// addKind is add for a listener of any kind.
func (s *listenerSet) addKind(ln net.Listener, addr string, k lnKind) {
	id, err := listenerID(ln)
	if err != nil {
		// It is then never taken for a descriptor the master sends, so
		// a set without it removes it: nothing worse than a reconnect.
		s.log.Warn("cannot identify listener", "listener", addr, "error", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = append(s.cur, s.serveLocked(ln, addr, id, k))
	s.portLocked()
}

// httpsPort is the port of the first TLS listener, 0 when there is none.
func (s *listenerSet) httpsPort() int { return int(s.tlsPort.Load()) }

// portLocked notes the first TLS listener's port.
func (s *listenerSet) portLocked() {
	port := 0
	for _, l := range s.cur {
		if l.tls && !l.metrics {
			port = l.port
			break
		}
	}
	s.tlsPort.Store(int32(port))
}

func (s *listenerSet) serveLocked(ln net.Listener, addr string, id socketID, k lnKind) *servedListener {
	tlsOn := k.tls && !k.metrics
	l := &servedListener{addr: addr, id: id, tls: tlsOn, metrics: k.metrics, closed: make(chan struct{})}
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		l.port = ta.Port
	}
	switch {
	case !k.metrics:
		l.srv = s.newServer()
	case s.newMetricsServer != nil:
		l.srv = s.newMetricsServer()
	default:
		l.srv = &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: readHeaderTimeout}
	}
	// The metrics scraper is the admin's, on an address of the admin's
	// choosing: it sends no PROXY header, and is not counted against
	// the clients' caps, so a flood of clients does not blind it.
	if s.proxyProto != nil && !k.metrics {
		ln = s.proxyProto(ln)
	}
	if s.limit != nil && !k.metrics {
		// The caps come before TLS: a refused connection costs no
		// handshake.
		ln = s.limit(ln)
	}
	if tlsOn {
		ln = tls.NewListener(ln, s.tlsConfig)
	}
	nl := &notifyListener{Listener: ln, closed: l.closed}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := l.srv.Serve(nl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			select {
			case s.failed <- fmt.Errorf("serve %s: %w", addr, err):
			default:
			}
		}
	}()
	return l
}

// apply makes the proxy serve exactly set's sockets, and takes set's
// files (it closes them). A socket it already serves is kept as it is;
// a new one is served; one not in set stops accepting before apply
// returns, and its connections finish within the grace period. Nothing
// changes if any new socket cannot be used.
func (s *listenerSet) apply(set proxymsg.ListenerSet) error {
	defer closeFiles(set.Files)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return errors.New("the proxy is stopping")
	}
	// A socket is kept when it is served as the same kind; one whose
	// kind changed is served anew, and its old server finishes its
	// connections as a removed listener's.
	type kind struct {
		id socketID
		k  lnKind
	}
	have := make(map[kind]*servedListener, len(s.cur))
	for _, l := range s.cur {
		if l.id != (socketID{}) {
			have[kind{l.id, lnKind{tls: l.tls, metrics: l.metrics}}] = l
		}
	}
	var (
		next  []*servedListener
		added []fresh
		keep  = map[*servedListener]bool{}
	)
	for i, f := range set.Files {
		id, err := fileID(f)
		if err != nil {
			closeFresh(added)
			return fmt.Errorf("listener %s: %w", set.Addrs[i], err)
		}
		k := lnKind{tls: set.IsTLS(i) && !set.IsMetrics(i), metrics: set.IsMetrics(i)}
		if l := have[kind{id, k}]; l != nil {
			keep[l] = true
			next = append(next, l)
			continue
		}
		ln, err := net.FileListener(f)
		if err != nil {
			closeFresh(added)
			return fmt.Errorf("listener %s: %w", set.Addrs[i], err)
		}
		added = append(added, fresh{ln, set.Addrs[i], id, k})
		next = append(next, nil) // filled in below, once nothing can fail
	}
	i := 0
	for j := range next {
		if next[j] == nil {
			a := added[i]
			i++
			next[j] = s.serveLocked(a.ln, a.addr, a.id, a.kind)
			s.log.Info("listening", "listener", a.addr, "tls", a.kind.tls, "metrics", a.kind.metrics)
		}
	}
	var removed []*servedListener
	for _, l := range s.cur {
		if !keep[l] {
			removed = append(removed, l)
		}
	}
	s.cur = next
	s.portLocked()
	for _, l := range removed {
		s.log.Info("no longer listening; finishing its connections", "listener", l.addr)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), s.grace)
			defer cancel()
			s.stop(ctx, l)
			s.log.Info("a removed listener's connections are finished", "listener", l.addr)
		}()
	}
	for _, l := range removed {
		<-l.closed
	}
	return nil
}

// stop shuts l's server down: at once for its listener and idle
// connections, and for busy ones as their requests finish or ctx ends.
func (s *listenerSet) stop(ctx context.Context, l *servedListener) {
	if err := l.srv.Shutdown(ctx); err != nil && ctx.Err() != nil {
		s.log.Warn("requests still in flight at the end of the grace period", "listener", l.addr, "error", err)
		l.srv.Close()
	}
}

// shutdown stops every listener, lets requests in flight finish until
// ctx ends, and returns once every connection is closed.
func (s *listenerSet) shutdown(ctx context.Context) {
	s.mu.Lock()
	s.stopping = true
	cur := s.cur
	s.cur = nil
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range cur {
		wg.Add(1)
		go func() { defer wg.Done(); s.stop(ctx, l) }()
	}
	wg.Wait()
	s.wg.Wait()
}

// addrs are the addresses listened on now, in the master's order.
func (s *listenerSet) addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.cur))
	for i, l := range s.cur {
		out[i] = l.addr
	}
	return out
}

// applyListenerSets applies each set the master sends on the files
// socket and answers it, until the master closes its end.
func applyListenerSets(fc *proxymsg.FilesConn, lns *listenerSet, log hclog.Logger) {
	for {
		set, err := fc.ReceiveListeners()
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// The master waits for an ack it will not get, and says so.
			log.Error("bad listener set from master", "error", err)
			continue
		}
		ack := proxymsg.ListenerAck{Serial: set.Serial}
		if err := lns.apply(set); err != nil {
			log.Error("cannot change listeners; serving the ones before", "listeners", set.Addrs, "error", err)
			ack.Error = err.Error()
		}
		if err := fc.SendAck(ack); err != nil {
			log.Error("answer listener set", "error", err)
		}
	}
}

// notifyListener closes closed when the listener is closed, which
// http.Server does as the first step of Shutdown, and Serve on its way out.
type notifyListener struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (l *notifyListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { close(l.closed) })
	return err
}

func listenerID(ln net.Listener) (socketID, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return socketID{}, fmt.Errorf("%T has no descriptor", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return socketID{}, err
	}
	var id socketID
	var serr error
	if err := rc.Control(func(fd uintptr) { id, serr = fdID(int(fd)) }); err != nil {
		return socketID{}, err
	}
	return id, serr
}

// fileID is the identity of a received socket. It also puts the socket
// back into non-blocking mode: that flag is shared by every duplicate, a
// listener this proxy serves among them, whose accept must not block a
// thread (and hold the listener open when it is closed) because a sender
// cleared it.
func fileID(f *os.File) (socketID, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return socketID{}, err
	}
	var id socketID
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if id, serr = fdID(int(fd)); serr == nil {
			serr = unix.SetNonblock(int(fd), true)
		}
	}); err != nil {
		return socketID{}, err
	}
	return id, serr
}

func fdID(fd int) (socketID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return socketID{}, fmt.Errorf("fstat: %w", err)
	}
	return socketID{dev: st.Dev, ino: st.Ino}, nil
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
