package acme

import (
	"context"
	"crypto/tls"
	"sync"

	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"
)

// challenges holds the answers to the challenges under way, in memory, where
// the proxy's own listeners find them: HTTPChallenge on the plain-HTTP
// listener, GetCertificate on the TLS listener. The solvers never open a
// socket (certmagic's own solvers try to bind ports 80 and 443 and, failing,
// assume something else listens there; in pyhost the master binds the sockets
// and the proxy is unprivileged, so that guess is the wrong model).
type challenges struct {
	mu   sync.Mutex
	http map[string]httpAnswer       // by token
	alpn map[string]*tls.Certificate // by name
}

type httpAnswer struct {
	name    string // the identifier the token was issued for
	keyAuth string
}

func newChallenges() *challenges {
	return &challenges{http: map[string]httpAnswer{}, alpn: map[string]*tls.Certificate{}}
}

// httpKeyAuth returns the key authorization for token, if a challenge for
// that token and host is under way. The host must match: a token is only an
// answer on the name it was issued for.
func (c *challenges) httpKeyAuth(host, token string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.http[token]
	if !ok || a.name != host {
		return "", false
	}
	return a.keyAuth, true
}

func (c *challenges) alpnCert(name string) *tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.alpn[name]
}

// http01 solves HTTP-01 by putting the answer where HTTPChallenge finds it.
type http01 struct{ c *challenges }

func (s http01) Present(_ context.Context, ch acme.Challenge) error {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.c.http[ch.Token] = httpAnswer{name: NormalizeName(ch.Identifier.Value), keyAuth: ch.KeyAuthorization}
	return nil
}

func (s http01) CleanUp(_ context.Context, ch acme.Challenge) error {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	delete(s.c.http, ch.Token)
	return nil
}

// tlsALPN01 solves TLS-ALPN-01 (RFC 8737) by making the challenge certificate
// that GetCertificate serves to a hello offering only "acme-tls/1".
type tlsALPN01 struct{ c *challenges }

func (s tlsALPN01) Present(_ context.Context, ch acme.Challenge) error {
	cert, err := acmez.TLSALPN01ChallengeCert(ch)
	if err != nil {
		return err
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.c.alpn[NormalizeName(ch.Identifier.Value)] = cert
	return nil
}

func (s tlsALPN01) CleanUp(_ context.Context, ch acme.Challenge) error {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	delete(s.c.alpn, NormalizeName(ch.Identifier.Value))
	return nil
}
