package master

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

	"github.com/pyhost/pyhost/config"
)

// pemPair makes a self-signed certificate for name and its key, as PEM.
func pemPair(t testing.TB, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestReadCertPairs(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "a.pem"), filepath.Join(dir, "a.key")
	certPEM, keyPEM := pemPair(t, "a.test")
	os.WriteFile(cert, certPEM, 0o644)
	os.WriteFile(key, keyPEM, 0o600)
	// certbot's layout: live/ links into archive/.
	os.Mkdir(filepath.Join(dir, "live"), 0o755)
	os.Symlink(cert, filepath.Join(dir, "live", "fullchain.pem"))
	pairs, err := readCertPairs([]config.TLSCert{{Cert: filepath.Join(dir, "live", "fullchain.pem"), Key: key}})
	if err != nil || len(pairs) != 1 || string(pairs[0].CertPEM) != string(certPEM) || string(pairs[0].KeyPEM) != string(keyPEM) {
		t.Fatalf("readCertPairs: %+v %v", pairs, err)
	}
	if _, err := readCertPairs([]config.TLSCert{{Cert: cert, Key: filepath.Join(dir, "missing.key")}}); err == nil || !strings.Contains(err.Error(), "missing.key") {
		t.Errorf("a missing key: %v", err)
	}
	// A FIFO must not hang the master.
	fifo := filepath.Join(dir, "fifo.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip(err)
	}
	if _, err := readCertPairs([]config.TLSCert{{Cert: fifo, Key: key}}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a FIFO: %v", err)
	}
}

// A pair whose key is another certificate's is refused with its files,
// before anything reaches the proxy.
func TestReadCertPairsChecksThePair(t *testing.T) {
	dir := t.TempDir()
	certA, _ := pemPair(t, "a.test")
	_, keyB := pemPair(t, "b.test")
	cert, key := filepath.Join(dir, "a.pem"), filepath.Join(dir, "b.key")
	os.WriteFile(cert, certA, 0o644)
	os.WriteFile(key, keyB, 0o600)
	pairs, err := readCertPairs([]config.TLSCert{{Cert: cert, Key: key}})
	if err == nil || pairs != nil || !strings.Contains(err.Error(), key+" is not the key of "+cert) {
		t.Errorf("a mismatched pair: %v %v", pairs, err)
	}
}
