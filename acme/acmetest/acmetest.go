// Package acmetest runs a real ACME server for tests: pebble, built from
// the module's tool dependency, on loopback, behind a counting HTTPS shim
// that records every name ordered, with a DNS server answering 127.0.0.1
// for every name (pebble's validation authority resolves through it).
// Package acme's own tests and the integration tests of the daemon use it;
// the CA's validation goes to the httpPort and tlsPort given to
// StartPebble, which are the listeners under test.
package acmetest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// PebblePath builds pebble from the module's `tool` dependency (go.mod)
// into a temporary directory of t's, so a fresh machine needs only the Go
// toolchain and the module proxy (the build cache makes it quick after the
// first time). The test is skipped, saying why, if it cannot be built.
func PebblePath(t testing.TB) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("pebble cannot be built: %v", err)
	}
	out := filepath.Join(t.TempDir(), "pebble")
	cmd := exec.Command(goBin, "build", "-o", out, "github.com/letsencrypt/pebble/v2/cmd/pebble")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("pebble cannot be built (go build github.com/letsencrypt/pebble/v2/cmd/pebble): %v: %s", err, b)
	}
	return out
}

// PKI is a throwaway CA and a server certificate for 127.0.0.1, used by
// pebble's own HTTPS endpoints and by the shim.
type PKI struct {
	Pool *x509.CertPool
	leaf tls.Certificate
	// RootPEM is the root, for a ca_root file: the trust for pebble's
	// and the shim's own HTTPS.
	RootPEM  []byte
	certFile string
	keyFile  string
}

func NewPKI(t testing.TB) *PKI {
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
	p := &PKI{Pool: x509.NewCertPool(), certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	p.Pool.AddCert(root)
	p.RootPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER})
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

func (p *PKI) Client() *http.Client {
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool}},
		Timeout:   10 * time.Second,
	}
}

// DNS answers A 127.0.0.1 (and no AAAA) for every name, and remembers
// which names were asked: pebble resolves a name only to validate it.
type DNS struct {
	Addr  string
	mu    sync.Mutex
	asked map[string]int
}

func StartDNS(t testing.TB) *DNS {
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
		d := &DNS{Addr: pc.LocalAddr().String(), asked: map[string]int{}}
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

func (d *DNS) serve(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	for _, q := range r.Question {
		d.mu.Lock()
		d.asked[normalize(q.Name)]++
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

func (d *DNS) Count(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.asked[name]
}

// pebble is one pebble process on loopback.
type Pebble struct {
	DirURL  string // pebble's own directory URL
	mgmtURL string
	cmd     *exec.Cmd
	done    chan struct{}
	Out     *syncBuffer
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

func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartPebble runs pebble validating on f's ports through d, issuing
// certificates valid for validity seconds. Its own two ports are picked
// free just before start; if another process takes one first, pebble exits
// and is started again on new ones (three tries).
func StartPebble(t testing.TB, pki *PKI, d *DNS, httpPort, tlsPort, validity int) *Pebble {
	t.Helper()
	bin := PebblePath(t)
	var lastErr error
	for try := 0; try < 3; try++ {
		p, err := tryPebble(t, bin, pki, d, httpPort, tlsPort, validity)
		if err == nil {
			return p
		}
		lastErr = err
	}
	t.Fatalf("pebble did not start: %v", lastErr)
	return nil
}

func tryPebble(t testing.TB, bin string, pki *PKI, d *DNS, httpPort, tlsPort, validity int) (*Pebble, error) {
	listen := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	mgmt := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":           listen,
		"managementListenAddress": mgmt,
		"certificate":             pki.certFile,
		"privateKey":              pki.keyFile,
		"httpPort":                httpPort,
		"tlsPort":                 tlsPort,
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
	p := &Pebble{
		DirURL:  "https://" + listen + "/dir",
		mgmtURL: "https://" + mgmt,
		done:    make(chan struct{}),
		Out:     &syncBuffer{},
		client:  pki.Client(),
	}
	p.cmd = exec.Command(bin, "-config", confFile, "-dnsserver", d.Addr)
	p.cmd.Env = append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",      // validate at once, not after a random pause
		"PEBBLE_WFE_NONCEREJECT=0", // no injected badNonce errors
		"PEBBLE_AUTHZREUSE=0",      // every order is validated again
	)
	p.cmd.Stdout, p.cmd.Stderr = p.Out, p.Out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := p.client.Get(p.DirURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("pebble exited: %s", p.Out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("pebble not ready in 30s: %s", p.Out.String())
		}
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("pebble output:\n%s", p.Out.String())
		}
	})
	return p, nil
}

func (p *Pebble) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Kill()
	<-p.done
}

// root returns pebble's issuing root, from its management interface.
func (p *Pebble) Root(t testing.TB) *x509.CertPool {
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
type Shim struct {
	srv      *httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	ordered  map[string]int // identifier -> newOrder requests naming it
}

func StartShim(t testing.TB, pki *PKI, p *Pebble) *Shim {
	t.Helper()
	target, _ := url.Parse(p.DirURL)
	target.Path = ""
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport: pki.Client().Transport,
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	s := &Shim{ordered: map[string]int{}}
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
func (s *Shim) recordOrder(t testing.TB, body []byte) {
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
		s.ordered[normalize(id.Value)]++
	}
}

func (s *Shim) Orders(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ordered[name]
}

func (s *Shim) OrderedNames() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.ordered {
		out[k] = v
	}
	return out
}

func (s *Shim) Directory() string { return s.srv.URL + "/dir" }

// Requests is how many requests reached the CA through the shim.
func (s *Shim) Requests() int64 { return s.requests.Load() }

// normalize is acme.NormalizeName, written again so that package acme's
// own tests can use this harness without an import cycle.
func normalize(name string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
}
