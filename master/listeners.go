package master

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/proxymsg"
)

// ackTimeout bounds how long the master waits for the proxy to say it
// serves a new listener set: it only has to open and close sockets. A
// variable for tests.
var ackTimeout = 10 * time.Second

// listenerSet is the master's listening sockets, which it binds (as
// root, so ports under 1024 work) and the proxy serves. It is the truth a
// restarted proxy starts from, and a change is handed to the running
// proxy before it counts as done.
type listenerSet struct {
	mu     sync.Mutex
	lns    []boundListener     // guarded by mu; in the config's order
	proxy  *proxymsg.FilesConn // guarded by mu; the running proxy's files socket, nil when none
	serial uint64              // guarded by mu; of the last set sent
}

// boundListener is one listening socket and the address it was asked for.
type boundListener struct {
	addr    string // as configured
	ln      *net.TCPListener
	tls     bool // a tls_listen socket: the proxy terminates TLS on it
	metrics bool // the metrics_listen socket: the proxy serves /metrics on it
}

// listenAddr is one address the proxy is to listen on, and its kind.
type listenAddr struct {
	addr    string
	tls     bool
	metrics bool
}

// listenAddrs are the [proxy] listen addresses, then the tls_listen ones.
func listenAddrs(plain, tls []string) []listenAddr {
	out := make([]listenAddr, 0, len(plain)+len(tls))
	for _, a := range plain {
		out = append(out, listenAddr{addr: a})
	}
	for _, a := range tls {
		out = append(out, listenAddr{addr: a, tls: true})
	}
	return out
}

// String is the address as logs and reload-config name it: a TLS one
// with "https://" before it.
func (l listenAddr) String() string {
	if l.metrics {
		return "http://" + l.addr + "/metrics"
	}
	if l.tls {
		return "https://" + l.addr
	}
	return l.addr
}

// setListen makes the proxy listen on exactly addrs: a socket already
// bound for an address (the same string, or the same IP and port spelt
// another way) is kept as it is, connections and all; the new ones are
// bound and handed to the running proxy, which serves them at once;
// removed ones stop accepting before setListen returns and their
// connections finish in the proxy. added and removed name what changed,
// as configured.
//
// It is all or nothing, and an error means nothing changed: every new
// address is bound before anything changes, so one that cannot be (in
// use, not a local address) returns its error and the proxy goes on as
// before; so does a proxy that refuses the new set. If the proxy cannot
// be reached (it is dead or restarting), the change holds: the next
// proxy starts with it. If it does not answer within ackTimeout, the
// change holds too (it may yet apply it; a restarted one does), and the
// daemon's log says so.
//
// A socket whose address moves between listen and tls_listen is kept,
// and the proxy serves it as its new kind from then on (its open
// connections finish as they began). TLS addresses are named with
// "https://" in added and removed.
func (m *Master) setListen(plain, tls []string) (added, removed []string, err error) {
	addrs := listenAddrs(plain, tls)
	if m.cfg.MetricsListen != "" {
		// Fixed for the daemon's life (master/metrics.go): the proxy
		// counts requests only when it has a metrics listener.
		addrs = append(addrs, listenAddr{addr: m.cfg.MetricsListen, metrics: true})
	}
	return m.lns.setKinds(addrs, m.log)
}

// set is setKinds for plain HTTP addresses only.
func (s *listenerSet) set(addrs []string, log hclog.Logger) (added, removed []string, err error) {
	return s.setKinds(listenAddrs(addrs, nil), log)
}

func (s *listenerSet) setKinds(addrs []listenAddr, log hclog.Logger) (added, removed []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make([]boundListener, 0, len(addrs))
	kept := make(map[*net.TCPListener]bool, len(s.lns))
	var fresh []*net.TCPListener
	for _, a := range addrs {
		if _, ok := findListener(next, a.addr); ok {
			continue // named twice: one socket
		}
		if l, ok := findListener(s.lns, a.addr); ok {
			kept[l.ln] = true
			next = append(next, boundListener{a.addr, l.ln, a.tls, a.metrics})
			if l.tls != a.tls || l.metrics != a.metrics {
				// The same socket, served as the other kind: new to the
				// proxy as that kind, gone as the old one.
				added = append(added, a.String())
				removed = append(removed, listenAddr{l.addr, l.tls, l.metrics}.String())
			}
			continue
		}
		ln, err := net.Listen("tcp", a.addr)
		if err != nil {
			closeTCP(fresh)
			return nil, nil, fmt.Errorf("listen on %s: %w", a.addr, err)
		}
		fresh = append(fresh, ln.(*net.TCPListener))
		next = append(next, boundListener{a.addr, ln.(*net.TCPListener), a.tls, a.metrics})
		added = append(added, a.String())
	}
	var gone []*net.TCPListener
	for _, l := range s.lns {
		if !kept[l.ln] {
			gone = append(gone, l.ln)
			removed = append(removed, listenAddr{l.addr, l.tls, l.metrics}.String())
		}
	}
	old := s.lns
	s.lns = next
	if len(added) == 0 && len(removed) == 0 {
		return nil, nil, nil // at most renamed or reordered: the proxy has these sockets
	}
	if s.proxy != nil {
		if undo, err := s.handOverLocked(log); undo {
			s.lns = old
			closeTCP(fresh)
			return nil, nil, err
		} else if err != nil {
			// The proxy is alive but did not say; it may yet apply the
			// set, and a restarted one does. The change holds.
			log.Error("listeners changed, but the proxy did not confirm it serves them", "added", added, "removed", removed, "error", err)
		} else {
			log.Info("listeners changed", "added", added, "removed", removed)
		}
	}
	// The proxy holds its own duplicates of the removed sockets and
	// closes them itself; the master's copies would keep them accepting.
	closeTCP(gone)
	return added, removed, nil
}

// handOverLocked sends the current set to the running proxy and waits
// for its answer. undo says the proxy certainly serves the set before
// (it refused this one, or never got it), so the change must be undone;
// an error without undo, that its answer is missing. A proxy that went
// away is no error: its successor starts with the current set.
func (s *listenerSet) handOverLocked(log hclog.Logger) (undo bool, err error) {
	files, addrs, tls, metrics, err := s.dupLocked()
	if err != nil {
		return true, err
	}
	defer closeAll(files)
	s.serial++
	serial := s.serial
	if err := s.proxy.SendListeners(proxymsg.ListenerSet{Serial: serial, Addrs: addrs, TLS: tls, Metrics: metrics, Files: files}); err != nil {
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed) {
			log.Warn("the proxy went away; the next one starts with the new listeners", "error", err)
			return false, nil
		}
		return true, fmt.Errorf("hand the new listeners to the proxy: %w", err)
	}
	s.proxy.SetReadDeadline(time.Now().Add(ackTimeout))
	defer s.proxy.SetReadDeadline(time.Time{})
	for {
		ack, err := s.proxy.ReceiveAck()
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed):
			log.Warn("the proxy went away before taking the new listeners; the next one starts with them")
			return false, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			return false, fmt.Errorf("no answer within %s", ackTimeout)
		case err != nil:
			return false, fmt.Errorf("its answer: %w", err)
		case ack.Serial != serial:
			continue // the late answer to a set that timed out
		case ack.Error != "":
			return true, fmt.Errorf("the proxy could not take the new listeners: %s", ack.Error)
		}
		return false, nil
	}
}

// dupLocked returns duplicates of the current sockets, for a proxy,
// their addresses, which are TLS ones and which the metrics one.
func (s *listenerSet) dupLocked() ([]*os.File, []string, []bool, []bool, error) {
	files := make([]*os.File, 0, len(s.lns))
	addrs := make([]string, 0, len(s.lns))
	tls := make([]bool, 0, len(s.lns))
	metrics := make([]bool, 0, len(s.lns))
	for _, l := range s.lns {
		f, err := l.ln.File()
		if err != nil {
			closeAll(files)
			return nil, nil, nil, nil, fmt.Errorf("listener descriptor: %w", err)
		}
		files = append(files, f)
		addrs = append(addrs, l.addr)
		tls = append(tls, l.tls)
		metrics = append(metrics, l.metrics)
	}
	return files, addrs, tls, metrics, nil
}

// startProxy calls start with duplicates of the current sockets (closed
// after it returns), their addresses and kinds (TLS, metrics), and if it succeeds sends
// every later change to fc, until detach is called. No change can fall
// between the two: a proxy starts with a set and hears of every change
// after it.
func (s *listenerSet) startProxy(fc *proxymsg.FilesConn, start func(files []*os.File, addrs []string, tls, metrics []bool) error) (detach func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	files, addrs, tls, metrics, err := s.dupLocked()
	if err != nil {
		return nil, err
	}
	err = start(files, addrs, tls, metrics)
	closeAll(files)
	if err != nil {
		return nil, err
	}
	s.proxy = fc
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.proxy == fc {
			s.proxy = nil
		}
	}, nil
}

// addrs are the bound addresses, for Config.Ready.
func (s *listenerSet) addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]net.Addr, len(s.lns))
	for i, l := range s.lns {
		out[i] = l.ln.Addr()
	}
	return out
}

// closeAll closes every socket; the set is empty after.
func (s *listenerSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lns {
		l.ln.Close()
	}
	s.lns = nil
}

// findListener finds the socket bound for addr: by the same string, or
// by the same IP and port ("0.0.0.0:80", ":80" and "[::]:80" are one
// socket, which Go binds dual-stack). An address with port 0 matches only
// itself: each bind of it gets another port.
func findListener(lns []boundListener, addr string) (boundListener, bool) {
	for _, l := range lns {
		if l.addr == addr {
			return l, true
		}
	}
	want, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil || want.Port == 0 {
		return boundListener{}, false
	}
	for _, l := range lns {
		have := l.ln.Addr().(*net.TCPAddr)
		if have.Port != want.Port {
			continue
		}
		if have.IP.Equal(want.IP) || (have.IP.IsUnspecified() && (want.IP == nil || want.IP.IsUnspecified())) {
			return l, true
		}
	}
	return boundListener{}, false
}

func closeTCP(lns []*net.TCPListener) {
	for _, ln := range lns {
		ln.Close()
	}
}
