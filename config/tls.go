package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
)

// maxPEM bounds one certificate or key file: a chain of a few
// certificates is a few KiB; a path pointing at something else is not
// read whole.
const maxPEM = 1 << 20

// ReadCertPair reads the two files of a [[tls]] table. The daemon calls
// it as root and hands the PEM to the proxy, so private keys can stay
// readable by root alone. Symlinks are followed: certbot's
// /etc/letsencrypt/live/NAME/*.pem are links into its archive, and these
// paths are the admin's own. A FIFO or device is refused without being
// opened for long (non-blocking), and a file over 1 MiB is no PEM file.
func ReadCertPair(c TLSCert) (certPEM, keyPEM []byte, err error) {
	if certPEM, err = readPEM(c.Cert); err != nil {
		return nil, nil, err
	}
	if keyPEM, err = readPEM(c.Key); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

func readPEM(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("[[tls]] %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("[[tls]] %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("[[tls]] %s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPEM+1))
	if err != nil {
		return nil, fmt.Errorf("[[tls]] %s: %w", path, err)
	}
	if len(b) > maxPEM {
		return nil, fmt.Errorf("[[tls]] %s is over %d bytes; is it a PEM file?", path, maxPEM)
	}
	return b, nil
}

// ParseCertPair checks a certificate chain and its key as crypto/tls
// will serve them: both parse, the key is the certificate's, and the
// certificate names a DNS name or an IP address. The result has Leaf
// set. An error names the file at fault. The daemon, pyhostd check and
// the proxy all judge a pair by this one function.
func ParseCertPair(certFile, keyFile string, certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("[[tls]] %s", pairProblem(certFile, keyFile, err))
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("[[tls]] %s: %w", certFile, err)
	}
	cert.Leaf = leaf
	if len(CertNames(leaf)) == 0 && len(leaf.IPAddresses) == 0 {
		return nil, fmt.Errorf("[[tls]] %s: the certificate names no DNS name or IP address", certFile)
	}
	return &cert, nil
}

// pairProblem says which file crypto/tls's complaint is about: its
// messages name the PEM block ("failed to find any PEM data in key
// input"), not the file.
func pairProblem(certFile, keyFile string, err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "private key does not match public key"):
		return fmt.Sprintf("%s is not the key of %s (%v)", keyFile, certFile, err)
	case strings.Contains(msg, "in certificate input"):
		return fmt.Sprintf("%s: %v", certFile, err)
	case strings.Contains(msg, "in key input"), strings.Contains(msg, "private key"):
		return fmt.Sprintf("%s: %v", keyFile, err)
	}
	return fmt.Sprintf("%s with %s: %v", certFile, keyFile, err)
}

// CertNames are the DNS names a certificate serves, lower-case: its
// subject alternative names, or its common name when it has none (old
// self-signed certificates).
func CertNames(leaf *x509.Certificate) []string {
	names := leaf.DNSNames
	if len(names) == 0 && leaf.Subject.CommonName != "" && len(leaf.IPAddresses) == 0 {
		names = []string{leaf.Subject.CommonName}
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.ToLower(strings.TrimSuffix(n, "."))
	}
	return out
}

// CertCovers reports whether a certificate naming names serves the
// domain pattern d (an app's domain: "blog.example.com" or
// "*.example.com"). A host is covered by its own name or by a wildcard
// one level up (RFC 6125: "*.example.com" covers "a.example.com", not
// "a.b.example.com" or "example.com"); a wildcard domain only by the
// same wildcard, since it stands for every name under it.
func CertCovers(names []string, d string) bool {
	d = strings.ToLower(d)
	for _, n := range names {
		if n == d {
			return true
		}
		if base, ok := strings.CutPrefix(n, "*."); ok && !strings.HasPrefix(d, "*.") {
			if _, parent, ok := strings.Cut(d, "."); ok && parent == base {
				return true
			}
		}
	}
	return false
}

// CertExpiry judges a certificate's validity at now: a problem when it
// has expired or is not valid yet, a warning when it expires within
// soon; both "" when it is fine.
func CertExpiry(leaf *x509.Certificate, now time.Time, soon time.Duration) (problem, warning string) {
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Sprintf("expired on %s", leaf.NotAfter.UTC().Format(time.DateOnly)), ""
	case now.Before(leaf.NotBefore):
		return fmt.Sprintf("is not valid before %s", leaf.NotBefore.UTC().Format(time.DateTime)), ""
	case leaf.NotAfter.Sub(now) < soon:
		return "", fmt.Sprintf("expires on %s, in %s", leaf.NotAfter.UTC().Format(time.DateOnly), leaf.NotAfter.Sub(now).Round(time.Hour))
	}
	return "", ""
}

// DefaultACMECA is the CA [proxy] acme uses without ca: Let's Encrypt's
// production directory (package acme's LetsEncrypt; config does not
// import that package, which brings the ACME client with it).
const DefaultACMECA = "https://acme-v02.api.letsencrypt.org/directory"

// ACME challenge types, as [proxy] acme challenges names them.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// ACME is [proxy] acme: obtain and renew certificates from an ACME CA
// for the domains apps validly claim (T4, docs/acme.md).
type ACME struct {
	// Email is the account's contact; "" registers none.
	Email string
	// CA is the ACME directory URL, https://; DefaultACMECA unless set.
	CA string
	// CARoot is a PEM file of the root(s) to trust for the CA's own
	// HTTPS endpoint instead of the system's: for a private or test CA
	// (pebble). "" for the system roots. Read by the master, as root.
	CARoot string
	// Challenges are the challenge types offered, both unless set
	// (a testing and troubleshooting aid: a server whose port 80 or 443
	// the CA cannot reach).
	Challenges []string
}

// Offers reports whether challenge type ct is offered.
func (a ACME) Offers(ct string) bool {
	for _, c := range a.Challenges {
		if c == ct {
			return true
		}
	}
	return false
}

type rawACME struct {
	Email      value `toml:"email"`
	CA         value `toml:"ca"`
	CARoot     value `toml:"ca_root"`
	Challenges value `toml:"challenges"`
}

func (c *checker) acme(prim toml.Primitive, p keyPath) *ACME {
	a := &ACME{CA: DefaultACMECA, Challenges: []string{ChallengeHTTP01, ChallengeTLSALPN01}}
	var r rawACME
	if !c.table(prim, p, &r, `a table, like acme = { email = "hostmaster@example.com" }`) {
		return a
	}
	if s, ok := c.str(r.Email, p.key("email"), `an email address, like "hostmaster@example.com"`); ok {
		if s != "" && (!strings.Contains(s, "@") || strings.ContainsAny(s, " \t\r\n<>,;")) {
			c.add(p.key("email").String(), "%q is not an email address; write one like %q, or leave email out", s, "hostmaster@example.com")
		} else {
			a.Email = s
		}
	}
	if s, ok := c.str(r.CA, p.key("ca"), `an ACME directory URL, like "`+DefaultACMECA+`"`); ok {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			c.add(p.key("ca").String(), "must be the CA's ACME directory, an https:// URL like %q, got %q", DefaultACMECA, s)
		} else {
			a.CA = s
		}
	}
	if r.CARoot.set {
		a.CARoot = c.absPath(r.CARoot, p.key("ca_root"), "", "/etc/pyhost/acme-ca.pem")
	}
	if r.Challenges.set {
		var got []string
		n := c.each(r.Challenges, p.key("challenges"), "challenge types", "a challenge type", `["http-01", "tls-alpn-01"]`, func(s string, at keyPath) {
			switch {
			case s != ChallengeHTTP01 && s != ChallengeTLSALPN01:
				c.add(at.String(), "%q is not a challenge type pyhost does; use %q or %q", s, ChallengeHTTP01, ChallengeTLSALPN01)
			case slices.Contains(got, s):
				c.add(at.String(), "%q is listed twice", s)
			default:
				got = append(got, s)
			}
		})
		switch {
		case n == 0:
			c.add(p.key("challenges").String(), `needs at least one challenge type, like ["http-01"]`)
		case len(got) > 0:
			a.Challenges = got
		}
	}
	return a
}
