package config

import (
	"errors"
	"testing"
)

func TestDomainAllowed(t *testing.T) {
	pats := []string{"alice.example.com", "*.alice.example.com", "Shop.Example.ORG."}
	cases := map[string]bool{
		"alice.example.com":        true,
		"ALICE.example.com.":       true,
		"blog.alice.example.com":   true,
		"a.b.alice.example.com":    true,
		"*.blog.alice.example.com": true,
		"*.alice.example.com":      true, // the pattern itself
		"evilalice.example.com":    false,
		"example.com":              false,
		"bob.example.com":          false,
		"shop.example.org":         true,
		"www.shop.example.org":     false,
	}
	for d, want := range cases {
		if got := DomainAllowed(pats, d); got != want {
			t.Errorf("DomainAllowed(%q) = %v, want %v", d, got, want)
		}
	}
	if DomainAllowed(nil, "alice.example.com") {
		t.Error("a user without patterns may claim a domain")
	}
}

func TestClaims(t *testing.T) {
	var c Claims
	if err := c.Claim("alice/blog", []string{"blog.example.com", "www.blog.example.com"}, "/"); err != nil {
		t.Fatal(err)
	}
	if err := c.Claim("alice/api", []string{"blog.example.com"}, "/api"); err != nil {
		t.Fatalf("another prefix of the same domain refused: %v", err)
	}
	err := c.Claim("bob/evil", []string{"other.example.com", "BLOG.example.com"}, "/")
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Holder != "alice/blog" || ce.Domain != "blog.example.com" {
		t.Fatalf("hijack: %v", err)
	}
	if err.Error() != "domain blog.example.com with url_prefix / is already claimed by alice/blog" {
		t.Errorf("message %q", err)
	}
	// All or nothing: other.example.com was not taken by the refused app.
	if err := c.Claim("carol/x", []string{"other.example.com"}, "/"); err != nil {
		t.Errorf("a refused app kept a claim: %v", err)
	}
	if err := c.Claim("alice/blog", []string{"blog.example.com"}, "/"); err != nil {
		t.Errorf("an app cannot re-claim its own domain: %v", err)
	}
	c.Release("alice/blog")
	if err := c.Claim("bob/evil", []string{"blog.example.com"}, "/"); err != nil {
		t.Errorf("released claim still held: %v", err)
	}
}

func TestCheckQuota(t *testing.T) {
	app := func(name string, procs int, mem int64) App {
		return App{Name: name, Processes: procs, MemoryLimit: mem}
	}
	cases := []struct {
		name  string
		q     Quota
		apps  []App
		limit string
		msg   string
	}{
		{"fits", Quota{MaxApps: 2, MaxProcesses: 4, MaxMemory: 2 * GiB}, []App{app("a", 2, 512*MiB), app("b", 2, 256*MiB)}, "", ""},
		{"too many apps", Quota{MaxApps: 1}, []App{app("a", 1, 0), app("b", 1, 0)}, "max_apps", "user alice: max_apps exceeded: app b would be app 2 of at most 1"},
		{"too many processes", Quota{MaxProcesses: 3}, []App{app("a", 2, 0), app("b", 2, 0)}, "max_processes", "user alice: max_processes exceeded: app b brings the total to 4 processes, at most 3"},
		{"too much memory", Quota{MaxMemory: GiB}, []App{app("a", 2, 300*MiB), app("b", 2, 300*MiB)}, "max_memory", "user alice: max_memory exceeded: app b brings memory_limit x processes to 1200MiB, at most 1GiB"},
		{"no memory limit under a memory quota", Quota{MaxMemory: GiB}, []App{app("a", 1, 0)}, "max_memory", ""},
		{"no quota", Quota{}, []App{app("a", 100, 0)}, "", ""},
	}
	for _, c := range cases {
		err := CheckQuota("alice", c.q, c.apps)
		var qe *QuotaError
		switch {
		case c.limit == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.limit != "" && (!errors.As(err, &qe) || qe.Limit != c.limit):
			t.Errorf("%s: %v, want a %s error", c.name, err, c.limit)
		case c.msg != "" && err.Error() != c.msg:
			t.Errorf("%s: message %q, want %q", c.name, err, c.msg)
		}
	}
}
