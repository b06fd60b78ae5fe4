package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/proxymsg"
)

// protoHandler answers with the protocol and scheme the request came in
// by.
var protoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "%s tls=%v", r.Proto, r.TLS != nil)
})

// tlsClient trusts pair and speaks HTTP/2 when h2 is set, else HTTP/1.1.
func tlsClient(pair proxymsg.CertPair, h2 bool) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pair.CertPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "alice.test"}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func fetch(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A TLS listener speaks HTTP/2 to a client that offers it and HTTP/1.1
// to one that does not; a socket whose kind changes is served anew as
// the new kind.
func TestTLSListener(t *testing.T) {
	var certs Certs
	pair := testPair(t, "/a.pem", "alice.test")
	if err := certs.Load([]proxymsg.CertPair{pair}); err != nil {
		t.Fatal(err)
	}
	s := newListenerSet(hclog.NewNullLogger(), 5*time.Second, func() *http.Server { return newServer(protoHandler, DefaultLimits, hclog.NewNullLogger()) })
	s.tlsConfig = certs.TLSConfig()
	t.Cleanup(func() { s.shutdown(t.Context()) })
	addr, dup, ln := testListener(t)
	s.add(ln, addr, true)
	if got := fetch(t, tlsClient(pair, true), "https://"+addr+"/"); got != "HTTP/2.0 tls=true" {
		t.Errorf("HTTP/2 client: %q", got)
	}
	if got := fetch(t, tlsClient(pair, false), "https://"+addr+"/"); got != "HTTP/1.1 tls=true" {
		t.Errorf("HTTP/1.1 client: %q", got)
	}
	// R9's header limit over HTTP/2 too: the server advertises it
	// (SETTINGS_MAX_HEADER_LIST_SIZE), so Go's client refuses to send
	// more once it has the server's settings; one that sends it anyway
	// gets 431, or, sent before the settings arrived, a GOAWAY.
	req, _ := http.NewRequest("GET", "https://"+addr+"/", nil)
	req.Header.Set("X-Big", strings.Repeat("x", maxHeaderBytes+1024))
	if resp, err := tlsClient(pair, true).Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("a header list over maxHeaderBytes over HTTP/2: %d", resp.StatusCode)
		}
	} else if !strings.Contains(err.Error(), "larger than peer's advertised limit") && !strings.Contains(err.Error(), "GOAWAY") {
		t.Errorf("a header list over maxHeaderBytes over HTTP/2: %v", err)
	}
	if p := s.httpsPort(); p != ln.Addr().(*net.TCPAddr).Port {
		t.Errorf("httpsPort %d, want the TLS listener's", p)
	}

	// The same socket as plain HTTP.
	if err := s.apply(proxymsg.ListenerSet{Serial: 1, Addrs: []string{addr}, TLS: []bool{false}, Files: []*os.File{dup()}}); err != nil {
		t.Fatal(err)
	}
	ln.Close()
	plain := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	if got := fetch(t, plain, "http://"+addr+"/"); got != "HTTP/1.1 tls=false" {
		t.Errorf("after the change to plain: %q", got)
	}
	if p := s.httpsPort(); p != 0 {
		t.Errorf("httpsPort %d with no TLS listener", p)
	}
}

// 100 streams at once on one HTTP/2 connection are all served, while
// the handlers hold them open together.
func TestTLSListenerConcurrentStreams(t *testing.T) {
	var certs Certs
	pair := testPair(t, "/a.pem", "alice.test")
	if err := certs.Load([]proxymsg.CertPair{pair}); err != nil {
		t.Fatal(err)
	}
	const n = 100
	var arrived sync.WaitGroup
	arrived.Add(n)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	conns := map[string]bool{}
	var mu sync.Mutex
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		arrived.Done()
		select { // every stream is in flight at once before any answers
		case <-all:
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, r.Proto)
	})
	s := newListenerSet(hclog.NewNullLogger(), 5*time.Second, func() *http.Server { return newServer(h, DefaultLimits, hclog.NewNullLogger()) })
	s.tlsConfig = certs.TLSConfig()
	t.Cleanup(func() { s.shutdown(t.Context()) })
	addr, _, ln := testListener(t)
	s.add(ln, addr, true)
	c := tlsClient(pair, true)
	c.Transport.(*http.Transport).HTTP2 = &http.HTTP2Config{StrictMaxConcurrentRequests: true}
	errs := make(chan error, n)
	for range n {
		go func() {
			resp, err := c.Get("https://" + addr + "/")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != "HTTP/2.0" {
					err = fmt.Errorf("answered %q", b)
				}
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	select {
	case <-all:
	default:
		t.Error("the streams were not all in flight at once")
	}
	if len(conns) != 1 {
		t.Errorf("%d connections, want one: %v", len(conns), strings.Join(keys(conns), " "))
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// The names to certify are the domains of every app in the table, once,
// in the form compared everywhere (lower case, no trailing dot),
// wildcards included (the Manager skips them itself).
func TestACMETableNames(t *testing.T) {
	tbl := proxymsg.Table{Apps: []proxymsg.App{
		{Key: "alice/blog", State: proxymsg.AppRunning, Domains: []string{"Blog.Alice.example.com.", "*.alice.example.com"}},
		{Key: "bob/shop", State: proxymsg.AppIdle, Domains: []string{"shop.bob.example.org", "blog.alice.example.com"}},
		{Key: "bob/old", State: proxymsg.AppStopped, Domains: []string{"old.bob.example.org"}},
		{Key: "express", State: proxymsg.AppRunning},
	}}
	got := tableNames(tbl)
	want := []string{"*.alice.example.com", "blog.alice.example.com", "old.bob.example.org", "shop.bob.example.org"}
	if !slices.Equal(got, want) {
		t.Fatalf("tableNames = %q, want %q", got, want)
	}
	if got := tableNames(proxymsg.Table{}); len(got) != 0 {
		t.Fatalf("tableNames(empty) = %q", got)
	}
}

// The front's policy is the admin's patterns, as claims are judged: an
// exact name, or any depth under a "*." pattern, never the base itself.
func TestACMEFrontAllow(t *testing.T) {
	a := newACMEFront(hclog.NewNullLogger())
	if err := a.allow("blog.alice.example.com"); err == nil {
		t.Fatal("no patterns yet: a name was allowed")
	}
	pats := []string{"alice.example.com", "*.alice.example.com", "shop.bob.example.org"}
	a.patterns.Store(&pats)
	for name, ok := range map[string]bool{
		"alice.example.com":        true,
		"blog.alice.example.com":   true,
		"a.b.alice.example.com":    true,
		"shop.bob.example.org":     true,
		"bob.example.org":          false,
		"www.shop.bob.example.org": false,
		"evil.example.com":         false,
		"alice.example.com.evil":   false,
	} {
		if err := a.allow(name); (err == nil) != ok {
			t.Errorf("allow(%q) = %v, want allowed %v", name, err, ok)
		}
	}
}

// With no settings (ACME off, or before a reload turns it on) the front
// has no certificate, refuses a TLS-ALPN-01 hello and answers no
// challenge; settings that change only the patterns keep the manager,
// another CA makes a new one, nil closes it. No CA is contacted: no name
// is set.
func TestACMEFrontConfigure(t *testing.T) {
	a := newACMEFront(hclog.NewNullLogger())
	if c, err := a.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example.com", SupportedProtos: []string{"h2"}}); c != nil || err != nil {
		t.Fatalf("off: GetCertificate = %v, %v; want nil, nil (the [[tls]] fallback)", c, err)
	}
	if _, err := a.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example.com", SupportedProtos: []string{ALPNChallenge}}); err == nil {
		t.Fatal("off: a tls-alpn-01 hello got no error")
	}
	r := httptest.NewRequest("GET", "http://a.example.com/.well-known/acme-challenge/tok", nil)
	if a.HTTPChallenge(httptest.NewRecorder(), r) {
		t.Fatal("off: a challenge was answered")
	}

	dir := t.TempDir()
	s := &proxymsg.ACME{CA: "https://127.0.0.1:1/dir", Dir: dir, Patterns: []string{"*.example.com"}}
	if err := a.configure(s); err != nil {
		t.Fatal(err)
	}
	first := a.m.Load()
	if first == nil {
		t.Fatal("no manager after configure")
	}
	s2 := *s
	s2.Patterns = []string{"*.example.org"}
	if err := a.configure(&s2); err != nil {
		t.Fatal(err)
	}
	if a.m.Load() != first {
		t.Fatal("a change of patterns alone replaced the manager")
	}
	if a.allow("a.example.com") == nil || a.allow("a.example.org") != nil {
		t.Fatal("the new patterns are not in force")
	}
	s3 := s2
	s3.CA = "https://127.0.0.1:2/dir"
	if err := a.configure(&s3); err != nil {
		t.Fatal(err)
	}
	if a.m.Load() == first || a.m.Load() == nil {
		t.Fatal("another CA kept the manager")
	}
	if err := a.configure(&proxymsg.ACME{CA: "https://x/dir", Dir: dir, CARootPEM: []byte("junk")}); err == nil {
		t.Fatal("a CA root with no certificate was accepted")
	}
	if err := a.configure(nil); err != nil {
		t.Fatal(err)
	}
	if a.m.Load() != nil {
		t.Fatal("nil settings left a manager")
	}
	a.close()
}
