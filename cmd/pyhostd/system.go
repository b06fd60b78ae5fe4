package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os/user"
	"slices"
	"time"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/master"
	"github.com/pyhost/pyhost/privdrop"
)

// systemConfig is what the admin file asks of system mode that only the
// system (does the proxy's user exist?) or this version (is the feature
// built?) can judge; config.ParseAdmin has judged the rest. `pyhostd run`
// refuses to start on any of Problems and logs Warnings; `pyhostd check`
// prints both. Both ask checkSystem, so check refuses exactly what run
// refuses.
type systemConfig struct {
	// Proxy is the proxy's user, resolved; zero when Problems says why
	// it cannot be.
	Proxy privdrop.Credential
	// Problems, each located in the admin file, stop run from starting.
	// Nil when there are none.
	Problems config.Errors
	// Warnings, located the same way, stop nothing.
	Warnings config.Errors
	// Certs are the [[tls]] pairs that cannot be loaded (a file missing
	// or unreadable, bad PEM, a key that is not the certificate's). Run
	// refuses to start on them, as on Problems; a reload-config keeps
	// the certificates in use instead, and says so (the master reads
	// the files itself then).
	Certs config.Errors
}

// refusals are what run refuses to start with.
func (s systemConfig) refusals() config.Errors {
	if s.Problems == nil && s.Certs == nil {
		return nil
	}
	return append(append(config.Errors{}, s.Problems...), s.Certs...)
}

// checkSystem judges admin, whose apps (as discovered) are apps; lookup
// resolves user names (privdrop.Lookup).
func checkSystem(admin config.Admin, apps []config.App, lookup func(string) (privdrop.Credential, error)) systemConfig {
	return checkSystemWith(admin, apps, lookup, privdrop.Lstat)
}

// checkSystemWith is checkSystem looking at files with lstat (tests pass
// a fake file system).
func checkSystemWith(admin config.Admin, apps []config.App, lookup func(string) (privdrop.Credential, error), lstat privdrop.LstatFunc) systemConfig {
	var s systemConfig
	s.Certs, s.Warnings = checkTLS(admin, apps, config.ReadCertPair, time.Now())
	s.Problems, s.Warnings = append(s.Problems, acmeProblems(admin, master.ReadACMERoot)...), append(s.Warnings, acmeWarnings(admin)...)

	name := admin.Proxy.User
	switch cred, err := lookup(name); {
	case err != nil:
		e := admin.LookupError("proxy.user", name, err)
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			e.Msg += fmt.Sprintf("; name an existing user for the proxy, or create this one: useradd --system --no-create-home --shell /usr/sbin/nologin %s", name)
		}
		s.Problems = append(s.Problems, e)
	case cred.IsRoot():
		s.Problems = append(s.Problems, admin.Errorf("proxy.user", "%q is root (uid 0); the proxy parses HTTP from the network and must run as an unprivileged user", name))
	default:
		s.Proxy = cred
	}

	if s.Proxy.Username != "" {
		if err := accessLogProblem(admin.Proxy.AccessLog, s.Proxy, lstat); err != nil {
			s.Problems = append(s.Problems, admin.Errorf("proxy.access_log", "%v", err))
		}
	}

	if def := admin.Proxy.DefaultApp; def != "" && !slices.ContainsFunc(apps, func(a config.App) bool { return a.Key() == def }) {
		s.Warnings = append(s.Warnings, admin.Errorf("proxy.default_app", "%q names no app that runs; hosts no app claims get 404 until it does", def))
	}
	return s
}

// accessLogProblem says why the master would refuse path as the access
// log it hands to proxy (the same judgement as its prepareAccessLog),
// nil when it would not: a missing file is created for the proxy, an
// existing one must be the proxy's user's own (privdrop.CheckHandover).
func accessLogProblem(path string, proxy privdrop.Credential, lstat privdrop.LstatFunc) error {
	if path == "" {
		return nil
	}
	n, err := lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return privdrop.CheckHandover(path, n, proxy)
}
