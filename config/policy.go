package config

import (
	"fmt"
	"strings"
)

// DomainAllowed is the pure decision "may a user with these patterns
// claim domain?" (U3). A pattern is an exact name or "*.example.com",
// which matches subdomains at any depth but not example.com itself. A
// claimed wildcard ("*.blog.example.com") is allowed when a pattern
// covers every name it could match. Case and a trailing dot do not
// matter.
func DomainAllowed(patterns []string, domain string) bool {
	d := normDomain(domain)
	for _, p := range patterns {
		p = normDomain(p)
		if p == d {
			return true
		}
		suffix, ok := strings.CutPrefix(p, "*.")
		if !ok {
			continue
		}
		name := strings.TrimPrefix(d, "*.")
		if strings.HasSuffix(name, "."+suffix) {
			return true
		}
	}
	return false
}

func normDomain(d string) string { return strings.ToLower(strings.TrimSuffix(d, ".")) }

// Claims records which app holds each domain and URL prefix, so that no
// two apps claim the same pair (U3). The first claim keeps it. The zero
// value is ready to use.
type Claims struct {
	held map[string]string // "domain prefix" → app key
}

// ConflictError says which app already holds a claim.
type ConflictError struct {
	Domain, Prefix string
	Holder         string // app key, "alice/blog"
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("domain %s with url_prefix %s is already claimed by %s", e.Domain, e.Prefix, e.Holder)
}

// Claim takes every domain+prefix of app for it, or none: the first
// conflict is returned and nothing is taken.
func (c *Claims) Claim(app string, domains []string, prefix string) error {
	if c.held == nil {
		c.held = map[string]string{}
	}
	keys := make([]string, 0, len(domains))
	for _, d := range domains {
		k := claimKey(d, prefix)
		if holder, ok := c.held[k]; ok && holder != app {
			return &ConflictError{Domain: normDomain(d), Prefix: prefix, Holder: holder}
		}
		keys = append(keys, k)
	}
	for _, k := range keys {
		c.held[k] = app
	}
	return nil
}

// reserve gives key to app before any Claim: held by an incumbent.
func (c *Claims) reserve(key, app string) {
	if c.held == nil {
		c.held = map[string]string{}
	}
	c.held[key] = app
}

// ledger is a copy of what c holds.
func (c *Claims) ledger() Ledger {
	l := Ledger{}
	for k, app := range c.held {
		l[k] = app
	}
	return l
}

// Release gives up every claim of app (it was removed).
func (c *Claims) Release(app string) {
	for k, holder := range c.held {
		if holder == app {
			delete(c.held, k)
		}
	}
}

// Quota is what the admin allows one user in total (U8); zero fields
// mean no limit.
type Quota struct {
	MaxApps      int
	MaxProcesses int
	MaxMemory    int64 // sum over apps of memory_limit x processes
}

// QuotaError names the limit an app would break.
type QuotaError struct {
	User, Limit string
	Detail      string
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("user %s: %s exceeded: %s", e.User, e.Limit, e.Detail)
}

// CheckQuota is the pure decision "do these apps of user fit the quota?".
// apps are the user's apps in load order; the first that breaks a limit
// is refused, naming the limit. An app without memory_limit counts as
// unlimited memory, so with max_memory set it must declare one.
func CheckQuota(user string, q Quota, apps []App) error {
	procs := 0
	var mem int64
	for i, a := range apps {
		if q.MaxApps > 0 && i+1 > q.MaxApps {
			return &QuotaError{user, "max_apps", fmt.Sprintf("app %s would be app %d of at most %d", a.Name, i+1, q.MaxApps)}
		}
		procs += a.Processes
		if q.MaxProcesses > 0 && procs > q.MaxProcesses {
			return &QuotaError{user, "max_processes", fmt.Sprintf("app %s brings the total to %d processes, at most %d", a.Name, procs, q.MaxProcesses)}
		}
		if q.MaxMemory > 0 {
			if a.MemoryLimit <= 0 {
				return &QuotaError{user, "max_memory", fmt.Sprintf("app %s sets no memory_limit, and %s's apps may use %s in all", a.Name, user, FormatSize(q.MaxMemory))}
			}
			mem += a.MemoryLimit * int64(a.Processes)
			if mem > q.MaxMemory {
				return &QuotaError{user, "max_memory", fmt.Sprintf("app %s brings memory_limit x processes to %s, at most %s", a.Name, FormatSize(mem), FormatSize(q.MaxMemory))}
			}
		}
	}
	return nil
}
