package acme

import (
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

const obtainWithin = 30 * time.Second

// obtainOne sets one name, waits until a handshake for it is served a
// certificate that chains to pebble's root, and returns that certificate.
func obtainOne(t *testing.T, e *env, m *Manager, name string) *x509.Certificate {
	t.Helper()
	m.SetNames([]string{name})
	roots := e.pebble.root(t)
	var leaf *x509.Certificate
	eventually(t, obtainWithin, name+" served with a certificate chaining to pebble's root", func() bool {
		chain, err := e.front.handshake(name, roots)
		if err != nil {
			return false
		}
		leaf = chain[0]
		return true
	})
	return leaf
}

func TestObtainHTTP01(t *testing.T) {
	e := newEnv(t, 3600)
	m := e.manager(t, t.TempDir(), func(c *Config) { c.DisableTLSALPN01 = true })
	const name = "http01.pyhost.example.com"
	leaf := obtainOne(t, e, m, name)
	if err := leaf.VerifyHostname(name); err != nil {
		t.Fatal(err)
	}
	http01, alpn := e.front.served(name)
	if http01 == 0 || alpn != 0 {
		t.Fatalf("challenges answered: http-01 %d, tls-alpn-01 %d; want only http-01", http01, alpn)
	}
	if got := m.NextProtos(); len(got) != 0 {
		t.Fatalf("NextProtos with TLS-ALPN-01 disabled = %q", got)
	}
	s, _ := status(m, name)
	if !s.Managed || !s.Obtained || !s.NotAfter.Equal(leaf.NotAfter) || s.LastError != nil {
		t.Fatalf("status = %+v, served NotAfter %v", s, leaf.NotAfter)
	}
}

func TestObtainTLSALPN01(t *testing.T) {
	e := newEnv(t, 3600)
	m := e.manager(t, t.TempDir(), func(c *Config) { c.DisableHTTP01 = true })
	const name = "alpn.pyhost.example.com"
	leaf := obtainOne(t, e, m, name)
	if err := leaf.VerifyHostname(name); err != nil {
		t.Fatal(err)
	}
	http01, alpn := e.front.served(name)
	if http01 != 0 || alpn == 0 {
		t.Fatalf("challenges answered: http-01 %d, tls-alpn-01 %d; want only tls-alpn-01", http01, alpn)
	}
	// With HTTP-01 off, even a request for a token is not answered.
	rec := httptest.NewRecorder()
	if m.HTTPChallenge(rec, httptest.NewRequest(http.MethodGet, "http://"+name+challengePath+"x", nil)) {
		t.Fatal("HTTPChallenge answered with HTTP-01 disabled")
	}
}
