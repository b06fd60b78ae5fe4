package master

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pyhost/pyhost/config"
)

func TestReadCertPairs(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "a.pem"), filepath.Join(dir, "a.key")
	os.WriteFile(cert, []byte("CERT"), 0o644)
	os.WriteFile(key, []byte("KEY"), 0o600)
	// certbot's layout: live/ links into archive/.
	os.Mkdir(filepath.Join(dir, "live"), 0o755)
	os.Symlink(cert, filepath.Join(dir, "live", "fullchain.pem"))
	pairs, err := readCertPairs([]config.TLSCert{{Cert: filepath.Join(dir, "live", "fullchain.pem"), Key: key}})
	if err != nil || len(pairs) != 1 || string(pairs[0].CertPEM) != "CERT" || string(pairs[0].KeyPEM) != "KEY" {
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
