package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"
)

// issuer is the certmagic.Issuer that asks the CA, through acmez (the ACME
// client certmagic itself is built on), with this package's solvers. It is
// also the last gate before the CA: every name of every order passes gate
// here, whichever path of certmagic's (first obtain, renewal, retry) asked.
type issuer struct {
	directory string
	email     string
	http      *http.Client
	storage   certmagic.Storage
	solvers   map[string]acmez.Solver
	gate      func(name string) error
	log       *slog.Logger

	mu      sync.Mutex
	account *acme.Account // registered with the CA; nil until the first order
}

// IssuerKey names the CA in storage paths, as certmagic's ACMEIssuer does
// ("acme-v02.api.letsencrypt.org-directory"), so certificates from the
// staging and the production CA never overwrite each other.
func (iss *issuer) IssuerKey() string {
	u, err := url.Parse(iss.directory)
	if err != nil || u.Host == "" {
		return certmagic.StorageKeys.Safe(iss.directory)
	}
	key := u.Host
	if p := strings.Trim(strings.NewReplacer("/", "-", "\\", "-").Replace(u.Path), "-"); p != "" {
		key += "-" + p
	}
	return key
}

// Issue obtains a certificate for the CSR's names, which must all pass the
// gate; a refusal is final (ErrNoRetry), not retried with backoff.
func (iss *issuer) Issue(ctx context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	if len(csr.IPAddresses)+len(csr.EmailAddresses)+len(csr.URIs) > 0 || len(csr.DNSNames) == 0 {
		return nil, certmagic.ErrNoRetry{Err: errors.New("acme: only DNS names are managed")}
	}
	for _, name := range csr.DNSNames {
		if err := iss.gate(name); err != nil {
			return nil, certmagic.ErrNoRetry{Err: err}
		}
	}
	client := &acmez.Client{
		Client: &acme.Client{
			Directory:  iss.directory,
			HTTPClient: iss.http,
			UserAgent:  "pyhost",
			Logger:     iss.log,
		},
		ChallengeSolvers: iss.solvers,
	}
	account, err := iss.registered(ctx, client.Client)
	if err != nil {
		return nil, fmt.Errorf("acme account: %w", err)
	}
	params, err := acmez.OrderParametersFromCSR(account, csr)
	if err != nil {
		return nil, certmagic.ErrNoRetry{Err: err}
	}
	chains, err := client.ObtainCertificate(ctx, params)
	if err != nil {
		var p acme.Problem
		if errors.As(err, &p) && (p.Type == acme.ProblemTypeAccountDoesNotExist || p.Type == acme.ProblemTypeUnauthorized) {
			// The CA no longer knows the account (deactivated, or a CA
			// that lost its state): register again on the next try.
			iss.mu.Lock()
			iss.account = nil
			iss.mu.Unlock()
		}
		return nil, err
	}
	if len(chains) == 0 {
		return nil, errors.New("acme: the CA offered no certificate chain")
	}
	return &certmagic.IssuedCertificate{Certificate: chains[0].ChainPEM, Metadata: chains[0]}, nil
}

// registered returns the ACME account, registering it on first use. The
// account key lives in storage, so a restart (or a second proxy during a
// reload) keeps the same account: newAccount with a known key returns the
// existing account (RFC 8555 §7.3.1).
func (iss *issuer) registered(ctx context.Context, client *acme.Client) (acme.Account, error) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	if iss.account != nil {
		return *iss.account, nil
	}
	lockKey := "acme_account_" + iss.IssuerKey()
	if err := iss.storage.Lock(ctx, lockKey); err != nil {
		return acme.Account{}, err
	}
	defer iss.storage.Unlock(context.WithoutCancel(ctx), lockKey)

	who := iss.email
	if who == "" {
		who = "default"
	}
	keyPath := path.Join("acme", iss.IssuerKey(), "pyhost-account", certmagic.StorageKeys.Safe(who)+".key")
	var key *ecdsa.PrivateKey
	pemBytes, err := iss.storage.Load(ctx, keyPath)
	switch {
	case err == nil:
		signer, err := certmagic.PEMDecodePrivateKey(pemBytes)
		if err != nil {
			return acme.Account{}, fmt.Errorf("%s: %w", keyPath, err)
		}
		k, ok := signer.(*ecdsa.PrivateKey)
		if !ok {
			return acme.Account{}, fmt.Errorf("%s: not an ECDSA key", keyPath)
		}
		key = k
	case errors.Is(err, fs.ErrNotExist):
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return acme.Account{}, err
		}
		pemBytes, err := certmagic.PEMEncodePrivateKey(key)
		if err != nil {
			return acme.Account{}, err
		}
		if err := iss.storage.Store(ctx, keyPath, pemBytes); err != nil {
			return acme.Account{}, err
		}
	default:
		return acme.Account{}, err
	}

	account := acme.Account{TermsOfServiceAgreed: true, PrivateKey: key}
	if iss.email != "" {
		account.Contact = []string{"mailto:" + iss.email}
	}
	account, err = client.NewAccount(ctx, account)
	if err != nil {
		return acme.Account{}, err
	}
	iss.account = &account
	return account, nil
}
