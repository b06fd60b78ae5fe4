package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pyhost/pyhost/proxymsg"
)

// testPair makes a self-signed certificate for names (DNS names or IP
// addresses) and returns it as the master would send it.
func testPair(t testing.TB, file string, names ...string) proxymsg.CertPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return proxymsg.CertPair{
		CertFile: file, KeyFile: strings.TrimSuffix(file, ".pem") + ".key",
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}
}

func servedName(t *testing.T, c *Certs, sni string) string {
	t.Helper()
	cert, err := c.GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
	if err != nil {
		t.Fatalf("SNI %q: %v", sni, err)
	}
	return cert.Leaf.Subject.CommonName
}

func TestCertsPickBySNI(t *testing.T) {
	var c Certs
	if _, err := c.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.test"}); err == nil {
		t.Fatal("an empty store served a certificate")
	}
	err := c.Load([]proxymsg.CertPair{
		testPair(t, "/etc/pyhost/tls/alice.pem", "alice.test", "www.alice.test"),
		testPair(t, "/etc/pyhost/tls/bob.pem", "bob.test", "*.bob.test"),
		testPair(t, "/etc/pyhost/tls/ip.pem", "127.0.0.1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	for sni, want := range map[string]string{
		"alice.test":     "alice.test",
		"WWW.Alice.Test": "alice.test",
		"alice.test.":    "alice.test",
		"bob.test":       "bob.test",
		"shop.bob.test":  "bob.test",
		// RFC 6125: a wildcard covers one label only.
		"a.shop.bob.test": "alice.test",
		"nobody.test":     "alice.test", // the first pair is the fallback
		"":                "alice.test",
	} {
		if got := servedName(t, &c, sni); got != want {
			t.Errorf("SNI %q served %s, want %s", sni, got, want)
		}
	}
}

func TestCertsBrokenPairKeepsTheRunningSet(t *testing.T) {
	var c Certs
	good := testPair(t, "/etc/pyhost/tls/alice.pem", "alice.test")
	if err := c.Load([]proxymsg.CertPair{good}); err != nil {
		t.Fatal(err)
	}
	other := testPair(t, "/etc/pyhost/tls/bob.pem", "bob.test")
	mismatched := other
	mismatched.KeyPEM = good.KeyPEM // bob's certificate with alice's key
	err := c.Load([]proxymsg.CertPair{other, mismatched})
	if err == nil || !strings.Contains(err.Error(), "/etc/pyhost/tls/bob.pem") {
		t.Fatalf("a key that does not match its certificate: %v", err)
	}
	if got := servedName(t, &c, "bob.test"); got != "alice.test" {
		t.Errorf("after a refused load, bob.test is served %s; the running set must stay", got)
	}
	garbage := proxymsg.CertPair{CertFile: "/x.pem", KeyFile: "/x.key", CertPEM: []byte("not pem"), KeyPEM: []byte("x")}
	if err := c.Load([]proxymsg.CertPair{garbage}); err == nil || !strings.Contains(err.Error(), "/x.pem") {
		t.Errorf("garbage: %v", err)
	}
}

// A real handshake through TLSConfig: TLS 1.1 is refused, h2 is offered.
func TestCertsHandshake(t *testing.T) {
	var c Certs
	pair := testPair(t, "/a.pem", "alice.test")
	if err := c.Load([]proxymsg.CertPair{pair}); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", c.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				conn.(*tls.Conn).Handshake()
				conn.Close()
			}()
		}
	}()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pair.CertPEM)
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "alice.test", RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Errorf("ALPN chose %q, want h2", p)
	}
	conn.Close()
	if conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "alice.test", RootCAs: pool, MaxVersion: tls.VersionTLS11}); err == nil {
		conn.Close()
		t.Error("a TLS 1.1 client was accepted")
	}
	// TLS 1.2 with CBC (and SHA-1) only: refused; AEAD only is served.
	cbc := &tls.Config{ServerName: "alice.test", RootCAs: pool, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}}
	if conn, err := tls.Dial("tcp", ln.Addr().String(), cbc); err == nil {
		conn.Close()
		t.Error("a TLS 1.2 client offering only CBC suites was accepted")
	}
	aead := &tls.Config{ServerName: "alice.test", RootCAs: pool, MaxVersion: tls.VersionTLS12}
	if conn, err := tls.Dial("tcp", ln.Addr().String(), aead); err != nil {
		t.Errorf("TLS 1.2: %v", err)
	} else {
		if st := conn.ConnectionState(); st.Version != tls.VersionTLS12 || !slices.Contains(tls12Suites, st.CipherSuite) {
			t.Errorf("TLS 1.2 negotiated %x, suite %s", st.Version, tls.CipherSuiteName(st.CipherSuite))
		}
		conn.Close()
	}
}

// extraSource serves the names it holds.
type extraSource map[string]*tls.Certificate

func (e extraSource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c, ok := e[hello.ServerName]; ok {
		return c, nil
	}
	return nil, errNoCertificate
}

// The ACME seam: an extra source serves names no [[tls]] pair covers,
// and every TLS-ALPN-01 challenge; [[tls]] pairs win for their names,
// and the fallback still answers what neither covers.
func TestCertsExtraSource(t *testing.T) {
	var c Certs
	if err := c.Load([]proxymsg.CertPair{testPair(t, "/a.pem", "alice.test")}); err != nil {
		t.Fatal(err)
	}
	load := func(p proxymsg.CertPair) *tls.Certificate {
		cert, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cert.Leaf, _ = x509.ParseCertificate(cert.Certificate[0])
		return &cert
	}
	acme := load(testPair(t, "/acme.pem", "auto.test"))
	challenge := load(testPair(t, "/challenge.pem", "challenge"))
	c.SetExtra(extraSource{"auto.test": acme, "alice.test": challenge})
	for sni, want := range map[string]string{"alice.test": "alice.test", "auto.test": "auto.test", "nobody.test": "alice.test"} {
		if got := servedName(t, &c, sni); got != want {
			t.Errorf("SNI %q served %s, want %s", sni, got, want)
		}
	}
	cert, err := c.GetCertificate(&tls.ClientHelloInfo{ServerName: "alice.test", SupportedProtos: []string{ALPNChallenge}})
	if err != nil || cert != challenge {
		t.Errorf("acme-tls/1 for alice.test: %v, want the extra source's challenge certificate", err)
	}
	if protos := c.TLSConfig().NextProtos; len(protos) != 3 || protos[2] != ALPNChallenge {
		t.Errorf("NextProtos %v", protos)
	}
	var none Certs
	if protos := none.TLSConfig().NextProtos; len(protos) != 2 {
		t.Errorf("without an extra source, NextProtos %v", protos)
	}
}
