package integration

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyhost/pyhost/acme/acmetest"
)

// TestACMESystem: pyhostd run with [proxy] acme against a real ACME
// server (pebble, on loopback, validating on the daemon's own listen and
// tls_listen ports through a DNS server of the test's). Two users' apps
// claim names under their [users] patterns: both get certificates that
// chain to pebble's root, first through HTTP-01 alone, then (another CA
// and TLS-ALPN-01 alone, by reload-config) through TLS-ALPN-01. A wildcard claim and a name
// outside every pattern (its app file refused) never reach the CA. A
// restart with the CA stopped serves the stored certificates.
func TestACMESystem(t *testing.T) {
	t.Parallel()
	const ann, bob = "pyh-acme-ann", "pyh-acme-bob"
	const annHost, annWild, bobHost, outside = "ann.acme-it.example.com", "*.ann.acme-it.example.com", "bob.acme-it.example.org", "shop.elsewhere.example.net"
	users := fmt.Sprintf("[users.%s]\ndomains = [%q, %q]\n[users.%s]\ndomains = [%q]\n", ann, annHost, annWild, bob, bobHost)
	ua, ub := makeUser(t, ann), makeUser(t, bob)
	d := newSysd(t, users)
	deployNamed(t, ua, "site", "ann", fmt.Sprintf("%q, %q", annHost, annWild), "")
	deployNamed(t, ub, "site", "bob", fmt.Sprintf("%q", bobHost), "")
	deployNamed(t, ub, "shop", "bob-shop", fmt.Sprintf("%q", outside), "")

	pki, dns := acmetest.NewPKI(t), acmetest.StartDNS(t)
	caRoot := filepath.Join(d.base, "acme-ca.pem")
	writeFile(t, caRoot, string(pki.RootPEM))
	tlsAddr := freePort(t)
	httpPort, tlsPort := portOf(t, d.addr), portOf(t, tlsAddr)
	writeACMEAdmin := func(ca, challenge string) {
		t.Helper()
		keys := fmt.Sprintf("tls_listen = [%q]\nacme = { email = \"hostmaster@acme-it.example.com\", ca = %q, ca_root = %q, challenges = [%q] }\n", tlsAddr, ca, caRoot, challenge)
		conf := strings.Replace(d.adminConfig(users), "[proxy]\n", "[proxy]\n"+keys, 1)
		if err := os.WriteFile(d.admin, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// served is the chain the daemon serves for name, verified against
	// roots as a browser would (nil and the error when it does not).
	served := func(name string, roots *x509.CertPool) ([]*x509.Certificate, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tlsAddr, &tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates, nil
	}
	obtained := func(roots *x509.CertPool, names ...string) {
		t.Helper()
		for _, n := range names {
			eventually(t, 40*time.Second, "the proxy's log of managing "+n, func() bool {
				return strings.Contains(d.logs.String(), "name="+n)
			})
			eventually(t, 40*time.Second, "a certificate for "+n+" chaining to pebble's root", func() bool {
				chain, err := served(n, roots)
				return err == nil && len(chain) > 0 && chain[0].VerifyHostname(n) == nil
			})
		}
	}
	neverOrdered := func(s *acmetest.Shim) {
		t.Helper()
		for _, n := range []string{annWild, outside, "ann.acme-it.example.com.evil"} {
			if c := s.Orders(n); c != 0 {
				t.Errorf("%s was ordered %d times", n, c)
			}
		}
		if c := dns.Count(outside); c != 0 {
			t.Errorf("the CA looked up %s %d times", outside, c)
		}
		for n := range s.OrderedNames() {
			if n != annHost && n != bobHost {
				t.Errorf("ordered %s, not a claimed name", n)
			}
		}
	}

	// HTTP-01 alone: the CA fetches the answer from the plain listener.
	p1 := acmetest.StartPebble(t, pki, dns, httpPort, tlsPort, 3600)
	s1 := acmetest.StartShim(t, pki, p1)
	writeACMEAdmin(s1.Directory(), "http-01")
	d.start()
	root1 := p1.Root(t)
	obtained(root1, annHost, bobHost)
	for _, n := range []string{annHost, bobHost} {
		if !strings.Contains(d.logs.String(), "certificate obtained: name="+n) {
			t.Errorf("no \"certificate obtained\" logged for %s", n)
		}
	}
	if !strings.Contains(d.logs.String(), "answered an http-01 challenge") || strings.Contains(d.logs.String(), "answered a tls-alpn-01 challenge") {
		t.Errorf("the challenges answered were not HTTP-01 alone")
	}
	if !strings.Contains(d.logs.String(), outside) {
		t.Errorf("no refusal of bob's app claiming %s in the log", outside)
	}
	neverOrdered(s1)
	// DATA_DIR/acme is the proxy user's alone; data_dir, made 0700 by
	// run's instance lock, is opened to 0711 for that user to reach it.
	for dir, want := range map[string]os.FileMode{"lib/acme": 0o700, "lib": 0o711} {
		if fi, err := os.Stat(filepath.Join(d.base, dir)); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v; want mode %v", dir, err, want)
		}
	}

	// A restart with the CA gone serves the stored certificates.
	d.stop()
	p1.Stop()
	d.start()
	obtained(root1, annHost, bobHost)
	if strings.Contains(d.logs.String(), "certificate obtained") {
		t.Errorf("with the CA stopped, a certificate was obtained anew")
	}

	// TLS-ALPN-01 alone, from another CA, turned on by reload-config:
	// a new manager (its certificates are stored apart, by CA).
	p2 := acmetest.StartPebble(t, pki, dns, httpPort, tlsPort, 3600)
	s2 := acmetest.StartShim(t, pki, p2)
	writeACMEAdmin(s2.Directory(), "tls-alpn-01")
	if out, err := d.pyctl("", "reload-config"); err != nil {
		t.Fatalf("reload-config: %v\n%s", err, out)
	} else if !strings.Contains(out, "automatic certificates from "+s2.Directory()) {
		t.Errorf("reload-config said:\n%s", out)
	}
	obtained(p2.Root(t), annHost, bobHost)
	if !strings.Contains(d.logs.String(), "answered a tls-alpn-01 challenge") || strings.Contains(d.logs.String(), "answered an http-01 challenge") {
		t.Errorf("the challenges answered were not TLS-ALPN-01 alone")
	}
	neverOrdered(s2)
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}
