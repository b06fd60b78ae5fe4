// Package acme obtains and renews TLS certificates from an ACME CA (Let's
// Encrypt by default, RFC 8555) for the names the proxy is told to manage,
// and answers the CA's HTTP-01 and TLS-ALPN-01 challenges through the
// proxy's own listeners.
//
// It owns: which names may be asked of the CA (CheckName and the admin's
// Allow policy, checked again at the moment of every order), the ACME
// account, certificate storage under one directory, renewal, and the answers
// to challenges. It does not own sockets, TLS configuration, the choice
// between an ACME certificate and an admin's [[tls]] certificate, or where
// the names come from: the proxy listens, asks GetCertificate first and
// falls back to its own certificates on nil; the master decides the names
// (the domains apps validly claim) and sends them down.
//
// Certificate management is github.com/caddyserver/certmagic (cache,
// storage with locks, renewal at 1/3 of the lifetime left, retries with
// backoff, OCSP stapling); the ACME protocol is github.com/mholt/acmez, the
// client certmagic itself uses. This package adds the solvers that never
// bind a port, the name policy, status, and logging through hclog. See
// docs/acme.md for the why.
package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/hashicorp/go-hclog"
	"github.com/mholt/acmez/v3"
	acmeproto "github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap/exp/zapslog"
)

// LetsEncrypt is the default CA: Let's Encrypt's production directory.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// LetsEncryptStaging is Let's Encrypt's staging directory, for trials: its
// certificates are not trusted by browsers, its rate limits are far higher.
const LetsEncryptStaging = "https://acme-staging-v02.api.letsencrypt.org/directory"

// ALPNProto is the ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
const ALPNProto = acmez.ACMETLS1Protocol

const challengePath = "/.well-known/acme-challenge/"

// Config is what New needs. Dir is required; the rest has defaults.
type Config struct {
	// Email is the ACME account's contact. Empty registers an account
	// without one (the CA can then not reach the admin).
	Email string
	// CA is the ACME directory URL; empty means LetsEncrypt.
	CA string
	// CARoots is the trust for the CA's own HTTPS endpoint; nil means the
	// system roots. Tests set it to a test CA's root.
	CARoots *x509.CertPool
	// Dir is the storage directory (account key, certificates, locks). It
	// is created 0700 if missing; the proxy's user must own it.
	Dir string
	// Allow is the admin's policy: a name it refuses is never asked of the
	// CA. It is called when names are set and again before every order,
	// so it must be safe for concurrent use. Nil allows every name that
	// passes CheckName.
	Allow func(name string) error
	// Logger receives the package's and the libraries' logs; nil discards.
	Logger hclog.Logger
	// DisableHTTP01 and DisableTLSALPN01 turn one challenge type off, for
	// a server whose port 80 (respectively 443) the CA cannot reach. At
	// least one must stay on.
	DisableHTTP01    bool
	DisableTLSALPN01 bool

	// Test knobs: certmagic's maintenance interval (default 10 minutes)
	// and renewal window ratio (default 1/3 of the lifetime left).
	renewCheck  time.Duration
	renewWindow float64
}

// Manager manages certificates for a set of names. Its methods are safe for
// concurrent use; GetCertificate and HTTPChallenge never wait on the CA.
type Manager struct {
	cfg   Config
	log   hclog.Logger
	magic *certmagic.Config
	cache *certmagic.Cache
	chal  *challenges

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	// wanted is the set of managed names, swapped whole by SetNames and
	// read without a lock on every handshake and before every order.
	wanted atomic.Pointer[map[string]struct{}]

	mu      sync.Mutex
	managed map[string]context.CancelFunc // name -> stops its obtain job
	refused map[string]error              // names SetNames was given and refused
	lastErr map[string]failure            // last failure per name, cleared on success
	closed  bool
}

type failure struct {
	err error
	at  time.Time
}

// NameStatus is one name's state, for logs, `pyctl status` and metrics.
type NameStatus struct {
	Name string
	// Managed is false for a name SetNames was given but refused; LastError
	// then says why, and the CA was never asked.
	Managed bool
	// Obtained: a certificate is in memory and being served; NotAfter is
	// its expiry.
	Obtained bool
	NotAfter time.Time
	// LastError is the last failure to obtain or renew (nil after a
	// success), at LastErrorAt.
	LastError   error
	LastErrorAt time.Time
}

// New makes a Manager with no names. It does not contact the CA.
func New(cfg Config) (*Manager, error) {
	if cfg.Dir == "" {
		return nil, errors.New("acme: storage directory required")
	}
	if cfg.DisableHTTP01 && cfg.DisableTLSALPN01 {
		return nil, errors.New("acme: at least one of HTTP-01 and TLS-ALPN-01 must be enabled")
	}
	if cfg.CA == "" {
		cfg.CA = LetsEncrypt
	}
	if !strings.HasPrefix(cfg.CA, "https://") {
		return nil, fmt.Errorf("acme: CA directory %q must be an https:// URL", cfg.CA)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	m := &Manager{
		cfg:     cfg,
		log:     log,
		chal:    newChallenges(),
		managed: map[string]context.CancelFunc{},
		refused: map[string]error{},
		lastErr: map[string]failure{},
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	empty := map[string]struct{}{}
	m.wanted.Store(&empty)

	zl := newZap(log.Named("certmagic"), 0)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: cfg.CARoots, MinVersion: tls.VersionTLS12}
	solvers := map[string]acmez.Solver{}
	if !cfg.DisableHTTP01 {
		solvers[acmeproto.ChallengeTypeHTTP01] = http01{m.chal}
	}
	if !cfg.DisableTLSALPN01 {
		solvers[acmeproto.ChallengeTypeTLSALPN01] = tlsALPN01{m.chal}
	}
	storage := &certmagic.FileStorage{Path: cfg.Dir}
	iss := &issuer{
		directory: cfg.CA,
		email:     cfg.Email,
		http:      &http.Client{Transport: transport, Timeout: 2 * time.Minute},
		storage:   storage,
		solvers:   solvers,
		gate:      m.gate,
		log:       slog.New(zapslog.NewHandler(hclogCore{log: log.Named("acmez"), shift: 1})),
	}

	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) {
			return m.magic, nil
		},
		RenewCheckInterval: cfg.renewCheck,
		Logger:             zl,
	})
	m.magic = certmagic.New(m.cache, certmagic.Config{
		RenewalWindowRatio: cfg.renewWindow,
		Storage:            storage,
		Issuers:            []certmagic.Issuer{iss},
		Logger:             zl,
		// Our issuer does not speak ACME Renewal Information; renewal is
		// decided by the lifetime ratio alone.
		DisableARI:     true,
		OnEvent:        m.onEvent,
		ShouldEmitFunc: func(event string) bool { return slices.Contains(watchedEvents, event) },
	})
	return m, nil
}

var watchedEvents = []string{"cert_obtaining", "cert_obtained", "cert_failed", "cached_managed_cert"}

// SetNames makes names the managed set: added names are loaded from storage
// or obtained in the background, removed ones stop being served and renewed.
// Names are normalized (NormalizeName); a name failing CheckName or
// Config.Allow is refused, logged, and reported by Status. It returns at
// once: nothing here waits on the CA or on storage. Calling it again with
// the same names changes nothing.
func (m *Manager) SetNames(names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	want := map[string]struct{}{}
	refused := map[string]error{}
	for _, n := range names {
		n = NormalizeName(n)
		if _, dup := want[n]; dup {
			continue
		}
		if err := m.policy(n); err != nil {
			if _, known := m.refused[n]; !known {
				m.log.Warn("refusing to manage a certificate", "name", n, "error", err)
			}
			refused[n] = err
			continue
		}
		want[n] = struct{}{}
	}
	m.refused = refused
	// Publish the new set before starting or stopping anything, so the
	// gate already refuses a removed name when its jobs look.
	m.wanted.Store(&want)

	var gone []certmagic.SubjectIssuer
	for n, stop := range m.managed {
		if _, keep := want[n]; keep {
			continue
		}
		stop()
		delete(m.managed, n)
		delete(m.lastErr, n)
		gone = append(gone, certmagic.SubjectIssuer{Subject: n})
		m.log.Info("no longer managing a certificate", "name", n)
	}
	if len(gone) > 0 {
		m.cache.RemoveManaged(gone)
	}
	for n := range want {
		if _, have := m.managed[n]; have {
			continue
		}
		ctx, stop := context.WithCancel(m.ctx)
		m.managed[n] = stop
		// ManageAsync loads from storage or obtains in goroutines of
		// its own; its errors (other than those of the obtain job,
		// which come as events) are logged by certmagic.
		if err := m.magic.ManageAsync(ctx, []string{n}); err != nil {
			m.log.Error("managing a certificate", "name", n, "error", err)
		}
		m.log.Info("managing a certificate", "name", n)
	}
}

// policy is the static decision for a name: the package's floor, then the
// admin's policy.
func (m *Manager) policy(name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if m.cfg.Allow != nil {
		if err := m.cfg.Allow(name); err != nil {
			return fmt.Errorf("%q refused by policy: %w", name, err)
		}
	}
	return nil
}

// gate is asked before any order reaches the CA: the name must be managed
// right now and still pass the policy.
func (m *Manager) gate(name string) error {
	name = NormalizeName(name)
	if !m.isWanted(name) {
		return fmt.Errorf("acme: %q is not a managed name", name)
	}
	return m.policy(name)
}

func (m *Manager) isWanted(name string) bool {
	_, ok := (*m.wanted.Load())[name]
	return ok
}

func (m *Manager) onEvent(ctx context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtaining":
		// Returning an error here cancels the obtain or renewal before
		// certmagic even makes a key (the issuer checks again).
		name, _ := data["identifier"].(string)
		if err := m.gate(name); err != nil {
			return certmagic.ErrNoRetry{Err: err}
		}
		return nil
	case "cert_obtained":
		name, _ := data["identifier"].(string)
		renewal, _ := data["renewal"].(bool)
		m.mu.Lock()
		delete(m.lastErr, NormalizeName(name))
		m.mu.Unlock()
		m.log.Info("certificate obtained", "name", name, "renewal", renewal)
	case "cert_failed":
		name, _ := data["identifier"].(string)
		renewal, _ := data["renewal"].(bool)
		err, _ := data["error"].(error)
		if err == nil {
			err = errors.New("unknown error")
		}
		m.mu.Lock()
		if _, managed := m.managed[NormalizeName(name)]; managed {
			m.lastErr[NormalizeName(name)] = failure{err: err, at: time.Now()}
		}
		m.mu.Unlock()
		m.log.Error("certificate not obtained; will retry with backoff", "name", name, "renewal", renewal, "error", err)
	case "cached_managed_cert":
		// A job that finished after its name was removed may still put
		// the certificate in the cache; take it out again, or the
		// maintenance loop would keep it (and try to renew it).
		sans, _ := data["sans"].([]string)
		var stray []certmagic.SubjectIssuer
		for _, n := range sans {
			if !m.isWanted(NormalizeName(n)) {
				stray = append(stray, certmagic.SubjectIssuer{Subject: n})
			}
		}
		if len(stray) > 0 {
			go m.cache.RemoveManaged(stray)
		}
	}
	return nil
}

// GetCertificate is for tls.Config.GetCertificate on the proxy's TLS
// listeners. It answers TLS-ALPN-01 challenge hellos (ALPN offering only
// "acme-tls/1") with the challenge certificate, or an error if none is
// pending. For any other hello it returns the managed certificate for the
// SNI name, or (nil, nil) when the name is not managed, not obtained yet, or
// its certificate has expired: the caller then falls back to its own
// certificates. It never waits on the CA or on disk.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := NormalizeName(hello.ServerName)
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == ALPNProto {
		if !m.cfg.DisableTLSALPN01 && name != "" {
			if c := m.chal.alpnCert(name); c != nil {
				m.log.Debug("answered a tls-alpn-01 challenge", "name", name)
				return c, nil
			}
		}
		return nil, fmt.Errorf("acme: no tls-alpn-01 challenge pending for %q", name)
	}
	if name == "" || !m.isWanted(name) {
		return nil, nil
	}
	if c, ok := m.current(name); ok {
		return &c.Certificate, nil
	}
	return nil, nil
}

// current returns the managed certificate in memory for name with the
// latest expiry, if it has not expired.
func (m *Manager) current(name string) (certmagic.Certificate, bool) {
	var best certmagic.Certificate
	found := false
	for _, c := range m.cache.AllMatchingCertificates(name) {
		if c.Leaf == nil || !slices.Contains(c.Names, name) {
			continue
		}
		if !found || c.Leaf.NotAfter.After(best.Leaf.NotAfter) {
			best, found = c, true
		}
	}
	if !found || time.Now().After(best.Leaf.NotAfter) {
		return certmagic.Certificate{}, false
	}
	return best, true
}

// HTTPChallenge serves the HTTP-01 answer if r asks for a token under way
// for its Host, and reports whether it did. The proxy calls it first on its
// plain-HTTP listener (before any redirect to https) and handles r as usual
// when it returns false.
func (m *Manager) HTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	if m.cfg.DisableHTTP01 || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return false
	}
	token, ok := strings.CutPrefix(r.URL.Path, challengePath)
	if !ok || token == "" {
		return false
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	keyAuth, ok := m.chal.httpKeyAuth(NormalizeName(host), token)
	if !ok {
		return false
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte(keyAuth))
	m.log.Debug("answered an http-01 challenge", "name", host)
	return true
}

// NextProtos is what the TLS listener's NextProtos must contain for
// TLS-ALPN-01: {"acme-tls/1"}, or nothing when that challenge is disabled.
// It is negotiated only with the CA's validator; browsers never offer it.
func (m *Manager) NextProtos() []string {
	if m.cfg.DisableTLSALPN01 {
		return nil
	}
	return []string{ALPNProto}
}

// Status reports every name of the last SetNames, sorted by name.
func (m *Manager) Status() []NameStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]NameStatus, 0, len(m.managed)+len(m.refused))
	for n := range m.managed {
		s := NameStatus{Name: n, Managed: true}
		if c, ok := m.current(n); ok {
			s.Obtained, s.NotAfter = true, c.Leaf.NotAfter
		}
		if f, ok := m.lastErr[n]; ok {
			s.LastError, s.LastErrorAt = f.err, f.at
		}
		out = append(out, s)
	}
	for n, err := range m.refused {
		out = append(out, NameStatus{Name: n, LastError: err})
	}
	slices.SortFunc(out, func(a, b NameStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Close stops all background work: obtain jobs are canceled, the renewal
// loop ends. Certificates stay in storage for the next Manager. Idempotent.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	empty := map[string]struct{}{}
	m.wanted.Store(&empty)
	m.cancel()
	m.mu.Unlock()
	// Outside the lock: the maintenance loop may be delivering an event
	// that takes it.
	m.cache.Stop()
}
