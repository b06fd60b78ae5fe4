package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const obtainWithin = 30 * time.Second

// obtainOne sets one name, waits until a handshake for it is served a
// certificate that chains to pebble's root, and returns that certificate.
func obtainOne(t *testing.T, e *env, m *Manager, name string) *x509.Certificate {
	t.Helper()
	m.SetNames([]string{name})
	roots := e.pebble.Root(t)
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

// A name the policy refuses never reaches the CA, whichever path asks: not
// through SetNames, not through certmagic's own obtain path, not through the
// issuer directly. The shim sees every order the Manager sends and the DNS
// server every name pebble validates; the allowed name shows in both, so
// their silence about the refused names is not for lack of looking.
func TestRefusedNamesNeverReachCA(t *testing.T) {
	e := newEnv(t, 3600)
	allow := func(name string) error {
		if strings.HasSuffix(name, ".allowed.example.com") {
			return nil
		}
		return errors.New("not under *.allowed.example.com")
	}
	m := e.manager(t, t.TempDir(), func(c *Config) { c.Allow = allow })
	const ok = "app.allowed.example.com"
	byPolicy := "evil.example.com"
	ineligible := []string{"*.allowed.example.com", "localhost", "10.0.0.1", "shop.test"}
	m.SetNames(append([]string{ok, byPolicy}, ineligible...))

	for _, n := range append([]string{byPolicy}, ineligible...) {
		s, found := status(m, n)
		if !found || s.Managed || s.LastError == nil {
			t.Fatalf("status of refused %q = %+v (found %v)", n, s, found)
		}
	}
	for _, n := range ineligible {
		if s, _ := status(m, n); !errors.Is(s.LastError, ErrNotEligible) {
			t.Errorf("%q refused with %v, want ErrNotEligible", n, s.LastError)
		}
	}

	roots := e.pebble.Root(t)
	eventually(t, obtainWithin, ok+" served", func() bool {
		_, err := e.front.handshake(ok, roots)
		return err == nil
	})

	// certmagic's own entry point, as a renewal or a stray job would use it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.magic.ObtainCertSync(ctx, byPolicy); err == nil {
		t.Fatal("certmagic obtained a refused name")
	}
	// The issuer, the last step before an order.
	csr := testCSR(t, byPolicy)
	if _, err := m.magic.Issuers[0].Issue(ctx, csr); err == nil {
		t.Fatal("issuer issued for a refused name")
	}
	if _, err := e.front.handshake(byPolicy, roots); err == nil {
		t.Fatal("a certificate was served for a refused name")
	}

	m.Close() // nothing of the Manager's runs after this
	ordered := e.shim.OrderedNames()
	if len(ordered) != 1 || ordered[ok] != 1 {
		t.Fatalf("names ordered from the CA: %v; want only %s, once", ordered, ok)
	}
	if e.dns.Count(ok) == 0 {
		t.Fatalf("pebble never resolved %s: the DNS log is not being kept", ok)
	}
	for _, n := range append([]string{byPolicy}, ineligible...) {
		if c := e.dns.Count(NormalizeName(n)); c != 0 {
			t.Errorf("pebble resolved refused %q %d times", n, c)
		}
	}
}

func testCSR(t *testing.T, names ...string) *x509.CertificateRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// A new Manager on the same directory serves the stored certificate with the
// CA gone: pebble is stopped, and the shim counts no request at all.
func TestRestartServesStoredCertificateWithoutCA(t *testing.T) {
	e := newEnv(t, 3600)
	dir := t.TempDir()
	const name = "stored.pyhost.example.com"
	m1 := e.manager(t, dir, nil)
	first := obtainOne(t, e, m1, name)
	roots := e.pebble.Root(t)
	m1.Close()
	e.pebble.Stop()
	before := e.shim.Requests()

	m2 := e.manager(t, dir, nil)
	m2.SetNames([]string{name})
	var served *x509.Certificate
	eventually(t, 10*time.Second, name+" served after the restart", func() bool {
		chain, err := e.front.handshake(name, roots)
		if err != nil {
			return false
		}
		served = chain[0]
		return true
	})
	if served.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("served serial %x after restart, stored %x", served.SerialNumber, first.SerialNumber)
	}
	if s, _ := status(m2, name); !s.Obtained || s.LastError != nil {
		t.Fatalf("status after restart = %+v", s)
	}
	m2.Close()
	if n := e.shim.Requests() - before; n != 0 {
		t.Fatalf("%d requests to the CA after the restart", n)
	}
}

// Certificates live 7 s here (pebble's validity period), the maintenance
// loop looks every 250 ms, and the renewal window is certmagic's default
// (the last third of the lifetime). Both names renew; then one is removed,
// and while the other renews twice more the removed one gets no order and is
// no longer served.
func TestRenewalAndRemoval(t *testing.T) {
	e := newEnv(t, 8)
	m := e.manager(t, t.TempDir(), func(c *Config) { c.renewCheck = 250 * time.Millisecond })
	const keep, drop = "keep.pyhost.example.com", "drop.pyhost.example.com"
	roots := e.pebble.Root(t)
	m.SetNames([]string{keep, drop})

	notAfter := func(n string) time.Time {
		s, _ := status(m, n)
		return s.NotAfter
	}
	eventually(t, obtainWithin, "both names obtained", func() bool {
		return !notAfter(keep).IsZero() && !notAfter(drop).IsZero()
	})
	dropFirst := notAfter(drop)
	eventually(t, obtainWithin, drop+" renewed", func() bool { return notAfter(drop).After(dropFirst) })
	if e.shim.Orders(drop) < 2 {
		t.Fatalf("%s renewed with %d orders", drop, e.shim.Orders(drop))
	}

	m.SetNames([]string{keep})
	dropOrders := e.shim.Orders(drop)
	keepOrders := e.shim.Orders(keep)
	if _, found := status(m, drop); found {
		t.Fatalf("%s still in the status after removal", drop)
	}
	if _, err := e.front.handshake(drop, roots); err == nil {
		t.Fatalf("%s still served after removal", drop)
	}
	keepBefore := notAfter(keep)
	eventually(t, obtainWithin, keep+" renewed twice more", func() bool {
		return e.shim.Orders(keep) >= keepOrders+2 && notAfter(keep).After(keepBefore)
	})
	// The renewed certificate is the one served.
	var served *x509.Certificate
	eventually(t, 5*time.Second, keep+" served with its latest certificate", func() bool {
		chain, err := e.front.handshake(keep, roots)
		if err != nil {
			return false
		}
		served = chain[0]
		return served.NotAfter.Equal(notAfter(keep))
	})
	if got := e.shim.Orders(drop); got != dropOrders {
		t.Fatalf("%s ordered %d times after its removal", drop, got-dropOrders)
	}
}
