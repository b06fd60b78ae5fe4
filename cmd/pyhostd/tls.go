package main

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/pyhost/pyhost/acme"
	"github.com/pyhost/pyhost/config"
)

// certSoon is how close to its expiry a certificate is warned about:
// certbot renews 30 days ahead, so a week left means renewal failed.
const certSoon = 7 * 24 * time.Hour

// checkTLS judges the [[tls]] pairs as run would load them: each is read
// (read is config.ReadCertPair, as root) and checked as a pair, and a
// broken one is a problem, located at its table; one that has expired,
// is not valid yet or expires within certSoon is a warning. With
// tls_listen set, an app domain no certificate covers, and that ACME
// (when on) cannot get one for, is a warning: its clients get the
// fallback, the first pair, and a name mismatch.
func checkTLS(admin config.Admin, apps []config.App, read func(config.TLSCert) ([]byte, []byte, error), now time.Time) (problems, warnings config.Errors) {
	var names [][]string
	for i, c := range admin.TLS {
		key := fmt.Sprintf("tls[%d]", i)
		certPEM, keyPEM, err := read(c)
		if err != nil {
			problems = append(problems, admin.Errorf(key, "%v", err))
			continue
		}
		cert, err := config.ParseCertPair(c.Cert, c.Key, certPEM, keyPEM)
		if err != nil {
			problems = append(problems, admin.Errorf(key, "%v", err))
			continue
		}
		problem, warning := config.CertExpiry(cert.Leaf, now, certSoon)
		if problem != "" {
			warnings = append(warnings, admin.Errorf(key+".cert", "%s %s; clients will refuse it", c.Cert, problem))
		} else if warning != "" {
			warnings = append(warnings, admin.Errorf(key+".cert", "%s %s; renew it", c.Cert, warning))
		}
		names = append(names, config.CertNames(cert.Leaf))
	}
	if len(admin.Proxy.TLSListen) == 0 || len(problems) > 0 {
		return problems, warnings
	}
	for _, a := range apps {
		for _, d := range a.Domains {
			covered := false
			for _, n := range names {
				if config.CertCovers(n, d) {
					covered = true
					break
				}
			}
			if !covered && admin.Proxy.ACME != nil && acme.CheckName(acme.NormalizeName(d)) == nil {
				continue // [proxy] acme obtains it
			}
			if !covered {
				why := "its https clients get the first pair's certificate and a name mismatch"
				if admin.Proxy.ACME != nil {
					why = "[proxy] acme cannot get one for it (" + acmeWhy(d) + "); its https clients get the first pair's certificate, if any, and a name mismatch"
				}
				warnings = append(warnings, admin.Errorf("tls", "no [[tls]] certificate covers %s (app %s): %s", d, a.Key(), why))
			}
		}
	}
	return problems, warnings
}

// acmeWhy says why ACME cannot get a certificate for d.
func acmeWhy(d string) string {
	err := acme.CheckName(acme.NormalizeName(d))
	if err == nil {
		return "it can"
	}
	_, why, _ := strings.Cut(err.Error(), acme.ErrNotEligible.Error()+": ")
	return why
}

// acmeProblems are what run refuses with [proxy] acme: a ca_root that
// cannot be read or holds no certificate (read as the master will).
func acmeProblems(admin config.Admin, readRoot func(string) ([]byte, error)) config.Errors {
	a := admin.Proxy.ACME
	if a == nil || a.CARoot == "" {
		return nil
	}
	if _, err := readRoot(a.CARoot); err != nil {
		return config.Errors{admin.Errorf("proxy.acme.ca_root", "%s", strings.TrimPrefix(err.Error(), "[proxy] acme ca_root: "))}
	}
	return nil
}

// acmeWarnings: the CA validates on ports 80 (HTTP-01) and 443
// (TLS-ALPN-01) of the server's public address; a listener on neither is
// a warning, not a problem, as a NAT or load balancer may forward them.
func acmeWarnings(admin config.Admin) config.Errors {
	a := admin.Proxy.ACME
	if a == nil {
		return nil
	}
	onPort := func(addrs []string, port string) bool {
		for _, addr := range addrs {
			if _, p, err := net.SplitHostPort(addr); err == nil && p == port {
				return true
			}
		}
		return false
	}
	http01 := a.Offers(config.ChallengeHTTP01) && onPort(admin.Proxy.Listen, "80")
	alpn := a.Offers(config.ChallengeTLSALPN01) && onPort(admin.Proxy.TLSListen, "443")
	if http01 || alpn {
		return nil
	}
	return config.Errors{admin.Errorf("proxy.acme", "the CA validates on port 80 (http-01, a listen address) or 443 (tls-alpn-01, a tls_listen address), and pyhost listens on neither for the challenges offered; fine only if a NAT or load balancer forwards them here")}
}
