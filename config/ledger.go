package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// LedgerFile is the ledger's file name inside [daemon] data_dir.
const LedgerFile = "claims.json"

// Ledger records which app holds each domain and URL prefix (U3: "the
// first keeps it"). It is what makes that rule hold across time: a
// reload or a restart decides a new claim against the holders in the
// ledger, never by the order of file names, so no new file, of the
// same user or another, can take a domain an app already serves. The
// daemon keeps it in data_dir and rewrites it after every change.
//
// Keys are claim keys (see claimKey); values app keys ("alice/blog").
// A nil Ledger holds nothing.
type Ledger map[string]string

// claimKey is the ledger's key for a domain and prefix.
func claimKey(domain, prefix string) string { return normDomain(domain) + " " + prefix }

// LedgerOf is the ledger of apps: every domain and prefix each claims.
func LedgerOf(apps []App) Ledger {
	l := Ledger{}
	for _, a := range apps {
		for _, d := range a.Domains {
			l[claimKey(d, a.URLPrefix)] = a.Key()
		}
	}
	return l
}

// Holds reports whether app holds any claim.
func (l Ledger) Holds(app string) bool {
	for _, h := range l {
		if h == app {
			return true
		}
	}
	return false
}

// NextLedger is the ledger after the daemon applied a Discovery: the
// claims of the apps it runs now (in the settings each runs with, which
// may be older than its file when a reload failed), plus the claims that
// prior gave to an app that does not run but that kept them in kept (a
// Discovery's Held: its file is broken, not gone nor refused by policy,
// so it may come back without losing its domain).
func NextLedger(prior Ledger, running []App, kept Ledger) Ledger {
	next := LedgerOf(running)
	runs := map[string]bool{}
	for _, a := range running {
		runs[a.Key()] = true
	}
	for k, holder := range kept {
		if _, taken := next[k]; !taken && !runs[holder] && prior[k] == holder {
			next[k] = holder
		}
	}
	return next
}

type ledgerFile struct {
	Version int           `json:"version"`
	Claims  []ledgerClaim `json:"claims"`
}

type ledgerClaim struct {
	Domain string `json:"domain"`
	Prefix string `json:"prefix"`
	App    string `json:"app"`
}

// LoadLedger reads the ledger at path; a missing file is an empty
// ledger (a first start).
func LoadLedger(path string) (Ledger, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Ledger{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("claims ledger: %w", err)
	}
	var f ledgerFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("claims ledger %s: %w (move it away to let the next start decide claims by file order)", path, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("claims ledger %s: version %d, this pyhostd reads version 1", path, f.Version)
	}
	l := Ledger{}
	for _, c := range f.Claims {
		l[claimKey(c.Domain, c.Prefix)] = c.App
	}
	return l, nil
}

// Save writes l to path atomically (a crash leaves the old or the new
// file, never half of one), creating its directory if needed. Both are
// root's alone (0700, 0600): the ledger lists every tenant's apps.
func (l Ledger) Save(path string) error {
	f := ledgerFile{Version: 1, Claims: []ledgerClaim{}}
	for k, app := range l {
		var c ledgerClaim
		for i := len(k) - 1; i >= 0; i-- {
			if k[i] == ' ' {
				c = ledgerClaim{Domain: k[:i], Prefix: k[i+1:], App: app}
				break
			}
		}
		f.Claims = append(f.Claims, c)
	}
	sort.Slice(f.Claims, func(i, j int) bool {
		a, b := f.Claims[i], f.Claims[j]
		if a.Domain != b.Domain {
			return a.Domain < b.Domain
		}
		return a.Prefix < b.Prefix
	})
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("claims ledger: %w", err)
	}
	tmp := path + ".tmp"
	os.Remove(tmp)
	w, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("claims ledger: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	if err == nil {
		err = w.Sync()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("claims ledger: %w", err)
	}
	return nil
}
