package proxy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/acme"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/proxymsg"
)

// Certs holds the certificates the TLS listeners serve, picked by SNI. The
// master reads the admin's [[tls]] files as root and sends their PEM
// down the channel (the proxy's user must never be able to read a private
// key on disk); Load swaps the whole set at once, so a handshake sees the
// old set or the new one, never a mix, and a set with a broken pair is
// refused whole while the running one stays.
//
// The zero value holds no certificate: every handshake fails.
type Certs struct {
	set atomic.Pointer[certSet]
	// extra, when set, serves the names no [[tls]] pair covers (and the
	// ACME TLS-ALPN-01 challenge); set before serving, see SetExtra.
	extra CertSource
}

// CertSource is another source of certificates, consulted for a name no
// [[tls]] pair covers before the fallback: the ACME client's
// certificates (package acme's Manager has this method). It returns an
// error, or a nil certificate, for a name it has nothing for; the
// handshake then gets the fallback as without it.
type CertSource interface {
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
}

// ALPNChallenge is the ALPN protocol of the ACME TLS-ALPN-01 challenge
// (RFC 8737): a validator offering it gets the challenge certificate
// from the extra source, never a [[tls]] one.
const ALPNChallenge = "acme-tls/1"

// SetExtra makes src the source of certificates for names no [[tls]]
// pair covers, and of TLS-ALPN-01 challenge answers. Call it before
// serving (before TLSConfig); nil, the default, means none.
func (c *Certs) SetExtra(src CertSource) { c.extra = src }

// certSet is one immutable generation of certificates.
type certSet struct {
	exact    map[string]*tls.Certificate // lower-case DNS name → cert
	wildcard map[string]*tls.Certificate // "example.com" for a "*.example.com" SAN
	// fallback answers a client that sent no SNI or a name no certificate
	// covers: the first [[tls]] pair, so that `curl https://IP/` gets a
	// certificate error a human can read rather than a bare handshake
	// failure.
	fallback *tls.Certificate
	expiry   map[string]time.Time // by certificate file, for logs and metrics
}

// Load parses every pair and, if all are valid, makes them the served
// set. An error names the file of the first bad pair and leaves the
// served set as it was.
func (c *Certs) Load(pairs []proxymsg.CertPair) error {
	next := &certSet{exact: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}, expiry: map[string]time.Time{}}
	for _, p := range pairs {
		cert, err := config.ParseCertPair(p.CertFile, p.KeyFile, p.CertPEM, p.KeyPEM)
		if err != nil {
			return err
		}
		leaf := cert.Leaf
		for _, n := range config.CertNames(leaf) {
			if base, ok := strings.CutPrefix(n, "*."); ok {
				if _, dup := next.wildcard[base]; !dup {
					next.wildcard[base] = cert
				}
				continue
			}
			// The first pair that names a host serves it, as the admin
			// listed them.
			if _, dup := next.exact[n]; !dup {
				next.exact[n] = cert
			}
		}
		for _, ip := range leaf.IPAddresses {
			if _, dup := next.exact[ip.String()]; !dup {
				next.exact[ip.String()] = cert
			}
		}
		if next.fallback == nil {
			next.fallback = cert
		}
		next.expiry[p.CertFile] = leaf.NotAfter
	}
	c.set.Store(next)
	return nil
}

// Expiry is when each served certificate (by file) expires.
func (c *Certs) Expiry() map[string]time.Time {
	s := c.set.Load()
	if s == nil {
		return nil
	}
	return s.expiry
}

// errNoCertificate fails a handshake when no certificate is loaded.
var errNoCertificate = errors.New("no TLS certificate is loaded")

// GetCertificate is tls.Config.GetCertificate: the exact name first, then
// a wildcard one level up (a certificate's "*.example.com" covers
// "a.example.com", not "a.b.example.com", as RFC 6125 says), then the
// fallback.
func (c *Certs) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c.extra != nil && slices.Contains(hello.SupportedProtos, ALPNChallenge) {
		// Only an ACME validator offers it, and wants the challenge's
		// certificate, whatever [[tls]] holds for the name.
		return c.extra.GetCertificate(hello)
	}
	s := c.set.Load()
	if s == nil {
		s = &certSet{}
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		// https://IP/: a certificate for that address, if there is one.
		if hello.Conn != nil {
			if host, _, err := net.SplitHostPort(hello.Conn.LocalAddr().String()); err == nil {
				if cert, ok := s.exact[host]; ok {
					return cert, nil
				}
			}
		}
		return s.orFallback()
	}
	if cert, ok := s.exact[name]; ok {
		return cert, nil
	}
	if _, parent, ok := strings.Cut(name, "."); ok {
		if cert, ok := s.wildcard[parent]; ok {
			return cert, nil
		}
	}
	if c.extra != nil {
		if cert, err := c.extra.GetCertificate(hello); err == nil && cert != nil {
			return cert, nil
		}
	}
	return s.orFallback()
}

// orFallback is the certificate for a name nothing covers.
func (s *certSet) orFallback() (*tls.Certificate, error) {
	if s.fallback == nil {
		return nil, errNoCertificate
	}
	return s.fallback, nil
}

// tls12Suites are the TLS 1.2 cipher suites served: forward secrecy and
// AEAD only. HTTP/2 requires TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 (RFC
// 9113 §9.2.2), and Go's http2 checks for it.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// TLSConfig is the server configuration of the TLS listeners: TLS 1.2 and
// up, HTTP/2 then HTTP/1.1 by ALPN. For TLS 1.2 only the ECDHE AEAD
// suites (Mozilla's "intermediate" set without DHE): Go's defaults still
// offer ECDHE with CBC and SHA-1 (testssl.sh flagged them); TLS 1.3's
// suites are all AEAD and not configurable. Session tickets stay on:
// crypto/tls rotates their keys itself (a new key every day, each valid
// a week) when SetSessionTicketKeys is never called, which is the
// rotation the issue asks for without a key on disk.
func (c *Certs) TLSConfig() *tls.Config {
	protos := []string{"h2", "http/1.1"}
	if c.extra != nil {
		protos = append(protos, ALPNChallenge)
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   tls12Suites,
		GetCertificate: c.GetCertificate,
		NextProtos:     protos,
	}
}

// acmeFront is the proxy's end of automatic certificates ([proxy] acme):
// the one CertSource and ChallengeHandler the listeners are given, in
// front of the acme.Manager of the settings in force, which a config
// reload may replace (a new account or CA) or remove. With no manager it
// has no certificate and answers no challenge.
//
// Precedence, decided by Certs: a [[tls]] pair that covers a name is
// served for it, an ACME certificate only for names no pair covers. The
// admin's own certificate is the deliberate choice (an EV certificate,
// a wildcard from DNS-01, a CA of their own); ACME fills the rest.
type acmeFront struct {
	log hclog.Logger
	m   atomic.Pointer[acme.Manager]
	// patterns are every [users.*] domains pattern: the Manager's Allow,
	// asked when names are set and before every order, so a name none of
	// them allows never reaches the CA whatever a table says.
	patterns atomic.Pointer[[]string]

	mu    sync.Mutex
	cur   *proxymsg.ACME // guarded by mu: the settings m was made with
	names []string       // guarded by mu: the names last set, sorted
}

func newACMEFront(log hclog.Logger) *acmeFront {
	a := &acmeFront{log: log}
	a.patterns.Store(&[]string{})
	return a
}

// GetCertificate is the managed certificate for the SNI name, if any
// (CertSource).
func (a *acmeFront) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if m := a.m.Load(); m != nil {
		return m.GetCertificate(hello)
	}
	if slices.Contains(hello.SupportedProtos, ALPNChallenge) {
		return nil, errors.New("acme: automatic certificates are off")
	}
	return nil, nil
}

// HTTPChallenge answers an HTTP-01 challenge under way (ChallengeHandler).
func (a *acmeFront) HTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	m := a.m.Load()
	return m != nil && m.HTTPChallenge(w, r)
}

// allow is the Manager's policy: a name some [users] pattern allows.
func (a *acmeFront) allow(name string) error {
	if !config.DomainAllowed(*a.patterns.Load(), name) {
		return errors.New("no [users] domains pattern of the admin file allows it")
	}
	return nil
}

// configure applies ACME settings: nil turns automatic certificates off;
// the same account and CA keep the running manager (only the patterns
// change); anything else makes a new manager, given the current names,
// before the old one is closed (their storage is shared, with locks).
func (a *acmeFront) configure(s *proxymsg.ACME) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s != nil {
		pats := slices.Clone(s.Patterns)
		a.patterns.Store(&pats)
	}
	if s != nil && a.cur != nil && sameManager(*s, *a.cur) {
		a.cur = s
		// A pattern taken away stops the names it allowed.
		if m := a.m.Load(); m != nil {
			m.SetNames(a.names)
		}
		return nil
	}
	var next *acme.Manager
	if s != nil {
		cfg := acme.Config{
			Email:            s.Email,
			CA:               s.CA,
			Dir:              s.Dir,
			Allow:            a.allow,
			Logger:           a.log,
			DisableHTTP01:    s.DisableHTTP01,
			DisableTLSALPN01: s.DisableTLSALPN01,
		}
		if len(s.CARootPEM) > 0 {
			cfg.CARoots = x509.NewCertPool()
			if !cfg.CARoots.AppendCertsFromPEM(s.CARootPEM) {
				return errors.New("acme: the CA root holds no PEM certificate")
			}
		}
		var err error
		if next, err = acme.New(cfg); err != nil {
			return err
		}
		next.SetNames(a.names)
		a.log.Info("automatic certificates on", "ca", s.CA, "email", s.Email, "dir", s.Dir, "http-01", !s.DisableHTTP01, "tls-alpn-01", !s.DisableTLSALPN01)
	} else if a.cur != nil {
		a.log.Info("automatic certificates off")
	}
	a.cur = s
	if old := a.m.Swap(next); old != nil {
		old.Close()
	}
	return nil
}

// sameManager reports whether settings b may keep the manager made for
// a: everything but the patterns is the same.
func sameManager(a, b proxymsg.ACME) bool {
	a.Patterns, b.Patterns = nil, nil
	return a.Email == b.Email && a.CA == b.CA && bytes.Equal(a.CARootPEM, b.CARootPEM) && a.Dir == b.Dir &&
		a.DisableHTTP01 == b.DisableHTTP01 && a.DisableTLSALPN01 == b.DisableTLSALPN01
}

// setTable makes the domains of t's apps the managed names, when they
// changed.
func (a *acmeFront) setTable(t proxymsg.Table) {
	names := tableNames(t)
	a.mu.Lock()
	defer a.mu.Unlock()
	if slices.Equal(names, a.names) {
		return
	}
	a.names = names
	if m := a.m.Load(); m != nil {
		m.SetNames(names)
	}
}

// close stops the manager, if any (the proxy is exiting).
func (a *acmeFront) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.m.Swap(nil); old != nil {
		old.Close()
	}
}

// tableNames are the names to certify: every domain of every app in the
// routing table, once, sorted. The table holds exactly the apps the
// master admitted (running, starting, idle, stopped or failing), each
// with the domains it validly claimed; wildcard claims are among them,
// and the Manager skips them (only DNS-01 could prove one).
func tableNames(t proxymsg.Table) []string {
	var out []string
	for _, app := range t.Apps {
		for _, d := range app.Domains {
			out = append(out, strings.ToLower(strings.TrimSuffix(d, ".")))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
