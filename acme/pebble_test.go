package acme

// The harness: package acmetest's real ACME server (pebble) on loopback,
// its DNS server answering 127.0.0.1 for every name and its counting
// HTTPS shim in front of pebble, plus a "front" standing in for the
// proxy's listeners: a plain-HTTP one calling HTTPChallenge and a TLS one
// calling GetCertificate with NextProtos.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pyhost/pyhost/acme/acmetest"
)

// front stands in for the proxy's listeners, both on 127.0.0.1; pebble's
// httpPort and tlsPort point at them.
type front struct {
	m        atomic.Pointer[Manager]
	httpPort int
	tlsAddr  string

	mu         sync.Mutex
	httpServed map[string]int // HTTP-01 answers served, by host
	alpnHellos map[string]int // acme-tls/1 hellos, by SNI
}

func startFront(t *testing.T) *front {
	t.Helper()
	f := &front{httpServed: map[string]int{}, alpnHellos: map[string]int{}}
	quiet := log.New(io.Discard, "", 0)

	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.httpPort = hl.Addr().(*net.TCPAddr).Port
	hs := &http.Server{ErrorLog: quiet, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := f.m.Load(); m != nil && m.HTTPChallenge(w, r) {
			host, _, _ := net.SplitHostPort(r.Host)
			f.mu.Lock()
			f.httpServed[NormalizeName(host)]++
			f.mu.Unlock()
			return
		}
		http.NotFound(w, r)
	})}
	go hs.Serve(hl)

	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.tlsAddr = tl.Addr().String()
	// As the proxy will: the Manager's NextProtos before http/1.1, its
	// GetCertificate first, and a fallback (here: none) on nil.
	cfg := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		m := f.m.Load()
		if m == nil {
			return nil, errors.New("no manager")
		}
		return &tls.Config{
			NextProtos: append(m.NextProtos(), "http/1.1"),
			GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
				if len(h.SupportedProtos) == 1 && h.SupportedProtos[0] == ALPNProto {
					f.mu.Lock()
					f.alpnHellos[NormalizeName(h.ServerName)]++
					f.mu.Unlock()
				}
				c, err := m.GetCertificate(h)
				if c == nil && err == nil {
					err = fmt.Errorf("no certificate for %q (the proxy would fall back here)", h.ServerName)
				}
				return c, err
			},
		}, nil
	}}
	ts := &http.Server{ErrorLog: quiet, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	})}
	go ts.Serve(tls.NewListener(tl, cfg))
	t.Cleanup(func() {
		hs.Close()
		ts.Close()
	})
	return f
}

func (f *front) tlsPort() int {
	_, p, _ := net.SplitHostPort(f.tlsAddr)
	n, _ := strconv.Atoi(p)
	return n
}

func (f *front) served(name string) (http01, alpn int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.httpServed[name], f.alpnHellos[name]
}

// handshake connects to the front's TLS listener as a browser would (SNI
// name, h2/http1.1, verifying against roots) and returns the chain served.
func (f *front) handshake(name string, roots *x509.CertPool) ([]*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", f.tlsAddr, &tls.Config{
		ServerName: name,
		RootCAs:    roots,
		NextProtos: []string{"h2", "http/1.1"},
	})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates, nil
}

// env is one test's whole setup.
type env struct {
	pki    *acmetest.PKI
	dns    *acmetest.DNS
	front  *front
	pebble *acmetest.Pebble
	shim   *acmetest.Shim
}

func newEnv(t *testing.T, validity int) *env {
	t.Helper()
	e := &env{pki: acmetest.NewPKI(t), dns: acmetest.StartDNS(t), front: startFront(t)}
	e.pebble = acmetest.StartPebble(t, e.pki, e.dns, e.front.httpPort, e.front.tlsPort(), validity)
	e.shim = acmetest.StartShim(t, e.pki, e.pebble)
	return e
}

// manager makes a Manager talking to the CA through the shim, installs it
// in the front and closes it at the end of the test.
func (e *env) manager(t *testing.T, dir string, edit func(*Config)) *Manager {
	t.Helper()
	cfg := Config{
		Email:   "admin@pyhost.example.com",
		CA:      e.shim.Directory(),
		CARoots: e.pki.Pool,
		Dir:     dir,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:   "acme",
			Level:  hclog.Debug,
			Output: testWriter{t},
		}),
	}
	if edit != nil {
		edit(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.front.m.Store(m)
	t.Cleanup(m.Close)
	return m
}

// testWriter sends log lines to t.Log, so they show only for failing or -v
// runs, and stops once the test is over (background goroutines may log
// late).
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	defer func() { recover() }() // t.Log after the test ended panics
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// eventually polls cond every 20 ms until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", within, what)
		case <-tick.C:
		}
	}
}

func status(m *Manager, name string) (NameStatus, bool) {
	for _, s := range m.Status() {
		if s.Name == name {
			return s, true
		}
	}
	return NameStatus{}, false
}
