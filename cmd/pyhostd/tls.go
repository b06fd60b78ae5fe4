package main

import (
	"fmt"
	"time"

	"github.com/pyhost/pyhost/config"
)

// certSoon is how close to its expiry a certificate is warned about:
// certbot renews 30 days ahead, so a week left means renewal failed.
const certSoon = 7 * 24 * time.Hour

// checkTLS judges the [[tls]] pairs as run would load them: each is read
// (read is config.ReadCertPair, as root) and checked as a pair, and a
// broken one is a problem, located at its table; one that has expired,
// is not valid yet or expires within certSoon is a warning. With
// tls_listen set (and no ACME, which this version has not), an app
// domain no certificate covers is a warning: its clients get the
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
			if !covered {
				warnings = append(warnings, admin.Errorf("tls", "no [[tls]] certificate covers %s (app %s): its https clients get the first pair's certificate and a name mismatch", d, a.Key()))
			}
		}
	}
	return problems, warnings
}
