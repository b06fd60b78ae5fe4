package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pemPair makes a self-signed certificate for names, valid from
// notBefore to notAfter, and its key, as PEM.
func pemPair(t testing.TB, notBefore, notAfter time.Time, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestReadCertPair(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "a.pem"), filepath.Join(dir, "a.key")
	os.WriteFile(cert, []byte("CERT"), 0o644)
	os.WriteFile(key, []byte("KEY"), 0o600)
	// certbot's layout: live/ links into archive/.
	os.Mkdir(filepath.Join(dir, "live"), 0o755)
	os.Symlink(cert, filepath.Join(dir, "live", "fullchain.pem"))
	c, k, err := ReadCertPair(TLSCert{Cert: filepath.Join(dir, "live", "fullchain.pem"), Key: key})
	if err != nil || string(c) != "CERT" || string(k) != "KEY" {
		t.Fatalf("ReadCertPair: %q %q %v", c, k, err)
	}
	if _, _, err := ReadCertPair(TLSCert{Cert: cert, Key: filepath.Join(dir, "missing.key")}); err == nil || !strings.Contains(err.Error(), "missing.key") {
		t.Errorf("a missing key: %v", err)
	}
	big := filepath.Join(dir, "big.pem")
	os.WriteFile(big, make([]byte, maxPEM+1), 0o644)
	if _, _, err := ReadCertPair(TLSCert{Cert: big, Key: key}); err == nil || !strings.Contains(err.Error(), "is over") {
		t.Errorf("a file over 1 MiB: %v", err)
	}
	// A FIFO must not hang the master.
	fifo := filepath.Join(dir, "fifo.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip(err)
	}
	if _, _, err := ReadCertPair(TLSCert{Cert: fifo, Key: key}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a FIFO: %v", err)
	}
}

func TestParseCertPair(t *testing.T) {
	now := time.Now()
	certA, keyA := pemPair(t, now.Add(-time.Hour), now.Add(time.Hour), "a.test", "*.a.test")
	_, keyB := pemPair(t, now.Add(-time.Hour), now.Add(time.Hour), "b.test")
	cert, err := ParseCertPair("/a.pem", "/a.key", certA, keyA)
	if err != nil || cert.Leaf == nil || cert.Leaf.Subject.CommonName != "a.test" {
		t.Fatalf("a good pair: %v", err)
	}
	for _, c := range []struct {
		name      string
		cert, key []byte
		want      string
	}{
		{"mismatched", certA, keyB, "/b.key is not the key of /a.pem"},
		{"bad cert", []byte("garbage"), keyA, "/a.pem: "},
		{"bad key", certA, []byte("garbage"), "/b.key: "},
		{"key for cert", keyA, keyA, "/a.pem"},
	} {
		_, err := ParseCertPair("/a.pem", "/b.key", c.cert, c.key)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "[[tls]] ") {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func TestCertCovers(t *testing.T) {
	names := []string{"a.test", "*.b.test"}
	for d, want := range map[string]bool{
		"a.test":        true,
		"A.Test":        true,
		"www.a.test":    false,
		"b.test":        false, // *.b.test does not cover b.test itself
		"shop.b.test":   true,
		"x.shop.b.test": false, // one label only (RFC 6125)
		"*.b.test":      true,
		"*.a.test":      false, // a wildcard domain needs the wildcard
	} {
		if got := CertCovers(names, d); got != want {
			t.Errorf("CertCovers(%v, %q) = %v, want %v", names, d, got, want)
		}
	}
}

func TestCertExpiry(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	leaf := func(from, to time.Time) *x509.Certificate { return &x509.Certificate{NotBefore: from, NotAfter: to} }
	day := 24 * time.Hour
	for _, c := range []struct {
		name             string
		leaf             *x509.Certificate
		problem, warning string
	}{
		{"fine", leaf(now.Add(-day), now.Add(60*day)), "", ""},
		{"soon", leaf(now.Add(-day), now.Add(3*day)), "", "expires on 2026-03-04, in 72h0m0s"},
		{"expired", leaf(now.Add(-90*day), now.Add(-day)), "expired on 2026-02-28", ""},
		{"future", leaf(now.Add(day), now.Add(90*day)), "is not valid before 2026-03-02 12:00:00", ""},
	} {
		p, w := CertExpiry(c.leaf, now, 7*day)
		if p != c.problem || w != c.warning {
			t.Errorf("%s: %q %q, want %q %q", c.name, p, w, c.problem, c.warning)
		}
	}
}
