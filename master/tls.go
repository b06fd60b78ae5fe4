package master

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/pyhost/pyhost/channel"
	"github.com/pyhost/pyhost/config"
)

// maxPEM bounds one certificate or key file: a chain of a few
// certificates is a few KiB; a path pointing at something else is not
// read whole.
const maxPEM = 1 << 20

// readCertPairs reads the admin's [[tls]] files, as the master (root): the
// proxy, which terminates TLS, gets the PEM down the channel and never a
// path, so private keys can stay readable by root alone (U7: the process
// that parses the network holds no key file access). Symlinks are
// followed: certbot's /etc/letsencrypt/live/NAME/*.pem are links into its
// archive, and these paths are the admin's own.
func readCertPairs(certs []config.TLSCert) ([]channel.CertPair, error) {
	out := make([]channel.CertPair, 0, len(certs))
	for _, c := range certs {
		cert, err := readPEM(c.Cert)
		if err != nil {
			return nil, err
		}
		key, err := readPEM(c.Key)
		if err != nil {
			return nil, err
		}
		out = append(out, channel.CertPair{CertFile: c.Cert, KeyFile: c.Key, CertPEM: cert, KeyPEM: key})
	}
	return out, nil
}

func readPEM(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("[[tls]]: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("[[tls]]: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("[[tls]]: %s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPEM+1))
	if err != nil {
		return nil, fmt.Errorf("[[tls]]: %s: %w", path, err)
	}
	if len(b) > maxPEM {
		return nil, fmt.Errorf("[[tls]]: %s is over %d bytes; is it a PEM file?", path, maxPEM)
	}
	return b, nil
}
