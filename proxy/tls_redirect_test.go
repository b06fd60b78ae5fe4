package proxy

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/proxymsg"
)

// fakeChallenge answers the one token it knows.
type fakeChallenge struct{ asked int }

func (f *fakeChallenge) HTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	f.asked++
	if r.URL.Path != acmeChallengePath+"known" {
		return false
	}
	w.Write([]byte("key-authorization"))
	return true
}

// httpsProxy routes secure.test to a stopped https_only app with HSTS
// (anything that reaches the app answers 503) and plain.test to one
// without either; the first TLS listener is on port.
func httpsProxy(port int) *Proxy {
	p := New(hclog.NewNullLogger(), nil)
	p.httpsPort = func() int { return port }
	p.Update(proxymsg.Table{Serial: 1, Apps: []proxymsg.App{
		{Key: "a/secure", Domains: []string{"secure.test"}, Prefix: "/", State: proxymsg.AppStopped, HTTPSOnly: true, HSTS: "max-age=300"},
		{Key: "b/plain", Domains: []string{"plain.test"}, Prefix: "/", State: proxymsg.AppStopped},
	}})
	return p
}

func serve(p *Proxy, method, target string, secure bool, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	if secure {
		r.TLS = &tls.ConnectionState{}
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	return w
}

func TestHTTPSOnlyRedirects(t *testing.T) {
	for _, c := range []struct {
		port          int
		target, where string
	}{
		{8443, "http://secure.test/a/b?x=1&y=%20", "https://secure.test:8443/a/b?x=1&y=%20"},
		{8443, "http://secure.test:8080/", "https://secure.test:8443/"},
		{443, "http://secure.test:80/p", "https://secure.test/p"},
		{0, "http://secure.test/p", "https://secure.test/p"},
	} {
		w := serve(httpsProxy(c.port), "POST", c.target, false)
		if w.Code != http.StatusPermanentRedirect || w.Header().Get("Location") != c.where {
			t.Errorf("%s with TLS on %d: %d %q, want 308 to %q", c.target, c.port, w.Code, w.Header().Get("Location"), c.where)
		}
		if w.Header().Get("Strict-Transport-Security") != "" {
			t.Errorf("%s: HSTS over plain HTTP", c.target)
		}
	}
	p := httpsProxy(8443)
	// ACME's challenge path is never redirected: it reaches the app.
	if w := serve(p, "GET", "http://secure.test"+acmeChallengePath+"tok", false); w.Code != http.StatusServiceUnavailable {
		t.Errorf("the challenge path: %d, want the app's answer (503: stopped)", w.Code)
	}
	// Over https: no redirect, and HSTS even on the app's error page.
	w := serve(p, "GET", "https://secure.test/", true)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Strict-Transport-Security") != "max-age=300" {
		t.Errorf("over https: %d, HSTS %q", w.Code, w.Header().Get("Strict-Transport-Security"))
	}
	// An app without either.
	if w := serve(p, "GET", "http://plain.test/", false); w.Code != http.StatusServiceUnavailable || w.Header().Get("Strict-Transport-Security") != "" {
		t.Errorf("plain.test: %d %v", w.Code, w.Header())
	}
	if w := serve(p, "GET", "https://plain.test/", true); w.Header().Get("Strict-Transport-Security") != "" {
		t.Errorf("plain.test over https: HSTS %q", w.Header().Get("Strict-Transport-Security"))
	}
}

// Behind a trusted proxy that terminated TLS (X-Forwarded-Proto https),
// the request counts as https: no redirect loop, and HSTS.
func TestHTTPSOnlyBehindTrustedProxy(t *testing.T) {
	p := httpsProxy(443)
	p.SetTrustedProxies([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")})
	w := serve(p, "GET", "http://secure.test/", false, "X-Forwarded-Proto", "https")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Strict-Transport-Security") != "max-age=300" {
		t.Errorf("from a trusted proxy: %d %v", w.Code, w.Header())
	}
	// httptest's peer (192.0.2.1) is trusted; another one is not.
	r := httptest.NewRequest("GET", "http://secure.test/", nil)
	r.RemoteAddr = "198.51.100.1:1234"
	r.Header.Set("X-Forwarded-Proto", "https")
	rw := httptest.NewRecorder()
	p.ServeHTTP(rw, r)
	if rw.Code != http.StatusPermanentRedirect {
		t.Errorf("X-Forwarded-Proto from an untrusted peer: %d, want 308", rw.Code)
	}
}

// The ACME seam: a challenge handler answers the challenges it knows,
// over plain HTTP only, before https_only and routing.
func TestChallengeHandler(t *testing.T) {
	p := httpsProxy(8443)
	ch := &fakeChallenge{}
	p.SetChallengeHandler(ch)
	if w := serve(p, "GET", "http://nobody.test"+acmeChallengePath+"known", false); w.Code != 200 || w.Body.String() != "key-authorization" {
		t.Errorf("a known token: %d %q", w.Code, w.Body)
	}
	if w := serve(p, "GET", "http://secure.test"+acmeChallengePath+"other", false); w.Code != http.StatusServiceUnavailable {
		t.Errorf("an unknown token goes to the app: %d", w.Code)
	}
	asked := ch.asked
	serve(p, "GET", "https://secure.test"+acmeChallengePath+"known", true)
	serve(p, "GET", "http://secure.test/other", false)
	if ch.asked != asked {
		t.Error("the challenge handler was asked over https or for another path")
	}
}
