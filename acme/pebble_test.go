package acme

// The harness: a real ACME server (pebble, built from the module's tool
// dependency) on loopback, a DNS server in the test answering 127.0.0.1 for
// every name (pebble's validation authority resolves through it), a counting
// HTTPS shim in front of pebble that records every name ever ordered, and a
// "front" standing in for the proxy's listeners: a plain-HTTP one calling
// HTTPChallenge and a TLS one calling GetCertificate with NextProtos.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/miekg/dns"
)

var pebbleBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pebbleBuild.dir != "" {
		os.RemoveAll(pebbleBuild.dir)
	}
	os.Exit(code)
}

// pebblePath builds pebble once per test binary from the module's `tool`
// dependency (go.mod), so a fresh machine needs only the Go toolchain and
// the module proxy. A test that needs it is skipped, saying why, if it
// cannot be built.
func pebblePath(t *testing.T) string {
	t.Helper()
	pebbleBuild.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			pebbleBuild.err = err
			return
		}
		dir, err := os.MkdirTemp("", "pyhost-pebble-")
		if err != nil {
			pebbleBuild.err = err
			return
		}
		pebbleBuild.dir = dir
		out := filepath.Join(dir, "pebble")
		cmd := exec.Command(goBin, "build", "-o", out, "github.com/letsencrypt/pebble/v2/cmd/pebble")
		if b, err := cmd.CombinedOutput(); err != nil {
			pebbleBuild.err = fmt.Errorf("%v: %s", err, b)
			return
		}
		pebbleBuild.path = out
	})
	if pebbleBuild.err != nil {
		t.Skipf("pebble cannot be built (go build github.com/letsencrypt/pebble/v2/cmd/pebble): %v", pebbleBuild.err)
	}
	return pebbleBuild.path
}

// testPKI is a throwaway CA and a server certificate for 127.0.0.1, used by
// pebble's own HTTPS endpoints and by the shim.
type testPKI struct {
	pool     *x509.CertPool
	leaf     tls.Certificate
	certFile string
	keyFile  string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rootTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pyhost acme test root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, &key.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &testPKI{pool: x509.NewCertPool(), certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	p.pool.AddCert(root)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(p.certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if p.leaf, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *testPKI) client() *http.Client {
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool}},
		Timeout:   10 * time.Second,
	}
}

// fakeDNS answers A 127.0.0.1 (and no AAAA) for every name, and remembers
// which names were asked: pebble resolves a name only to validate it.
type fakeDNS struct {
	addr  string
	mu    sync.Mutex
	asked map[string]int
}

func startDNS(t *testing.T) *fakeDNS {
	t.Helper()
	// Pebble asks over TCP; serve UDP on the same port as well, as a real
	// resolver would. The UDP port is taken first; if its number is taken
	// for TCP, try again.
	for try := 0; try < 10; try++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			continue
		}
		d := &fakeDNS{addr: pc.LocalAddr().String(), asked: map[string]int{}}
		for _, srv := range []*dns.Server{{PacketConn: pc}, {Listener: l}} {
			started := make(chan struct{})
			srv.Handler = dns.HandlerFunc(d.serve)
			srv.NotifyStartedFunc = func() { close(started) }
			go srv.ActivateAndServe()
			<-started
			t.Cleanup(func() { srv.Shutdown() })
		}
		return d
	}
	t.Fatal("no port free for DNS over both UDP and TCP")
	return nil
}

func (d *fakeDNS) serve(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	for _, q := range r.Question {
		d.mu.Lock()
		d.asked[NormalizeName(q.Name)]++
		d.mu.Unlock()
		if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET},
				A:   net.IPv4(127, 0, 0, 1).To4(),
			})
		}
	}
	w.WriteMsg(m)
}

func (d *fakeDNS) count(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.asked[name]
}

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

// pebble is one pebble process on loopback.
type pebble struct {
	dirURL  string // pebble's own directory URL
	mgmtURL string
	cmd     *exec.Cmd
	done    chan struct{}
	out     *syncBuffer
	client  *http.Client
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startPebble runs pebble validating on f's ports through d, issuing
// certificates valid for validity seconds. Its own two ports are picked
// free just before start; if another process takes one first, pebble exits
// and is started again on new ones (three tries).
func startPebble(t *testing.T, pki *testPKI, d *fakeDNS, f *front, validity int) *pebble {
	t.Helper()
	bin := pebblePath(t)
	var lastErr error
	for try := 0; try < 3; try++ {
		p, err := tryPebble(t, bin, pki, d, f, validity)
		if err == nil {
			return p
		}
		lastErr = err
	}
	t.Fatalf("pebble did not start: %v", lastErr)
	return nil
}

func tryPebble(t *testing.T, bin string, pki *testPKI, d *fakeDNS, f *front, validity int) (*pebble, error) {
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	mgmt := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":           listen,
		"managementListenAddress": mgmt,
		"certificate":             pki.certFile,
		"privateKey":              pki.keyFile,
		"httpPort":                f.httpPort,
		"tlsPort":                 f.tlsPort(),
		"ocspResponderURL":        "",
		"keyAlgorithm":            "ecdsa",
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"profiles": map[string]any{
			"default": map[string]any{"description": "test", "validityPeriod": validity},
		},
	}}
	b, _ := json.Marshal(conf)
	confFile := filepath.Join(t.TempDir(), "pebble.json")
	if err := os.WriteFile(confFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p := &pebble{
		dirURL:  "https://" + listen + "/dir",
		mgmtURL: "https://" + mgmt,
		done:    make(chan struct{}),
		out:     &syncBuffer{},
		client:  pki.client(),
	}
	p.cmd = exec.Command(bin, "-config", confFile, "-dnsserver", d.addr)
	p.cmd.Env = append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",      // validate at once, not after a random pause
		"PEBBLE_WFE_NONCEREJECT=0", // no injected badNonce errors
		"PEBBLE_AUTHZREUSE=0",      // every order is validated again
	)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := p.client.Get(p.dirURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("pebble exited: %s", p.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("pebble not ready in 30s: %s", p.out.String())
		}
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("pebble output:\n%s", p.out.String())
		}
	})
	return p, nil
}

func (p *pebble) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Kill()
	<-p.done
}

// root returns pebble's issuing root, from its management interface.
func (p *pebble) root(t *testing.T) *x509.CertPool {
	t.Helper()
	resp, err := p.client.Get(p.mgmtURL + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble root: %v %s", err, resp.Status)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble root: no certificate in %q", b)
	}
	return pool
}

// shim is an HTTPS reverse proxy in front of pebble's ACME endpoint that
// sees every request the Manager makes to the CA. Pebble builds its URLs
// from the request's Host, which the shim keeps, so every later request
// (nonces, orders, challenges, finalize, download) comes through it too.
type shim struct {
	srv      *httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	ordered  map[string]int // identifier -> newOrder requests naming it
}

func startShim(t *testing.T, pki *testPKI, p *pebble) *shim {
	t.Helper()
	target, _ := url.Parse(p.dirURL)
	target.Path = ""
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport: pki.client().Transport,
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	s := &shim{ordered: map[string]int{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			s.recordOrder(t, body)
		}
		rp.ServeHTTP(w, r)
	}))
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.leaf}}
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

// recordOrder decodes a newOrder JWS (RFC 8555 §7.4) just enough to read
// its identifiers. A body it cannot read fails the test: an order it could
// not see would let "never ordered" pass vacuously.
func (s *shim) recordOrder(t *testing.T, body []byte) {
	var jws struct{ Payload string }
	var order struct {
		Identifiers []struct{ Type, Value string }
	}
	if err := json.Unmarshal(body, &jws); err != nil {
		t.Errorf("shim: newOrder body: %v", err)
		return
	}
	payload, err := base64.RawURLEncoding.DecodeString(jws.Payload)
	if err == nil {
		err = json.Unmarshal(payload, &order)
	}
	if err != nil || len(order.Identifiers) == 0 {
		t.Errorf("shim: newOrder payload %q: %v", payload, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range order.Identifiers {
		s.ordered[NormalizeName(id.Value)]++
	}
}

func (s *shim) orders(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ordered[name]
}

func (s *shim) orderedNames() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.ordered {
		out[k] = v
	}
	return out
}

func (s *shim) directory() string { return s.srv.URL + "/dir" }

// env is one test's whole setup.
type env struct {
	pki    *testPKI
	dns    *fakeDNS
	front  *front
	pebble *pebble
	shim   *shim
}

func newEnv(t *testing.T, validity int) *env {
	t.Helper()
	e := &env{pki: newTestPKI(t), dns: startDNS(t), front: startFront(t)}
	e.pebble = startPebble(t, e.pki, e.dns, e.front, validity)
	e.shim = startShim(t, e.pki, e.pebble)
	return e
}

// manager makes a Manager talking to the CA through the shim, installs it
// in the front and closes it at the end of the test.
func (e *env) manager(t *testing.T, dir string, edit func(*Config)) *Manager {
	t.Helper()
	cfg := Config{
		Email:   "admin@pyhost.example.com",
		CA:      e.shim.directory(),
		CARoots: e.pki.pool,
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
