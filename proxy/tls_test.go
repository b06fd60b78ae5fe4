package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/channel"
)

// protoHandler answers with the protocol and scheme the request came in
// by.
var protoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "%s tls=%v", r.Proto, r.TLS != nil)
})

// tlsClient trusts pair and speaks HTTP/2 when h2 is set, else HTTP/1.1.
func tlsClient(pair channel.CertPair, h2 bool) *http.Client {
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
	if err := certs.Load([]channel.CertPair{pair}); err != nil {
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
	if err := s.apply(channel.ListenerSet{Serial: 1, Addrs: []string{addr}, TLS: []bool{false}, Files: []*os.File{dup()}}); err != nil {
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
	if err := certs.Load([]channel.CertPair{pair}); err != nil {
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
