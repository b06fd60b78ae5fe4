// Package config owns what pyhost is told to do: the typed, validated
// runtime value of each app (App) and, for system mode, the admin file,
// app files, user policy and trust checks. Everything downstream reads
// these values; nothing else parses a file or applies a default.
package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/privdrop"
)

// Defaults for an app setting left unset.
const (
	DefaultProcesses       = 1
	DefaultThreads         = 4
	DefaultStartupTimeout  = 30 * time.Second
	DefaultGracefulTimeout = 15 * time.Second
	DefaultQueueTimeout    = 30 * time.Second
	DefaultRequestTimeout  = 60 * time.Second
	// DefaultMaxBody follows Apache httpd 2.4.53+ (LimitRequestBody 1 GiB):
	// large enough for uploads people do, small enough to stop a runaway.
	DefaultMaxBody = 1 << 30
	// DefaultQueueLimit bounds the requests waiting for a free thread, so
	// an overload costs 503s, not the proxy's memory.
	DefaultQueueLimit = 1024
)

// StaticMount is a URL prefix the proxy serves from a directory itself.
type StaticMount struct {
	URL string // "/static/", always with a trailing slash
	Dir string // absolute
}

// App is one app's resolved, validated settings. Paths are absolute,
// durations typed, the user resolved. The zero value is not valid; build
// one with a constructor such as ExpressApp and check Validate.
type App struct {
	Name string
	Cred privdrop.Credential
	// Exactly one of Script (an absolute file path) and Module (a dotted
	// module name) is set. Callable is the WSGI callable's name; empty for
	// a script means "application", else "app".
	Script     string
	Module     string
	Callable   string
	Directory  string
	Python     string
	PythonPath []string
	Domains    []string // empty: every Host (express mode)
	URLPrefix  string
	Processes  int
	Threads    int
	Env        map[string]string

	StartupTimeout  time.Duration
	GracefulTimeout time.Duration
	QueueTimeout    time.Duration
	// RequestTimeout: the client gets 504 and the worker is recycled; 0
	// means no limit.
	RequestTimeout time.Duration
	// IdleTimeout > 0 stops all workers after that long without a
	// request; the next request starts one.
	IdleTimeout time.Duration
	// QueueLimit bounds requests waiting for a thread (then 503).
	QueueLimit int

	// MemoryLimit is a worker's RSS in bytes above which it is recycled;
	// 0 means no limit.
	MemoryLimit int64
	// MaxRequests recycles a worker after that many requests (with
	// jitter); 0 means never.
	MaxRequests int
	// MaxBody is the largest request body in bytes (413 above).
	MaxBody int64
	// Limits are what the kernel enforces on the app's cgroup as a
	// whole (memory_max, memory_high, cpu_weight, cpu_max, tasks_max,
	// io_weight; issue 14); the zero value is no limit.
	Limits cgroup.Limits
	// Sandbox is the app's private view of the machine (C5), set by
	// Discover in system mode; nil: none (express mode, or sandbox =
	// false, which Unsandboxed records and the admin allowed).
	Sandbox     *Sandbox
	Unsandboxed bool

	Static []StaticMount

	// HTTPSOnly answers a plain-HTTP request with a 308 to its https
	// URL (ACME's HTTP-01 challenges excepted).
	HTTPSOnly bool
	// HSTS is sent as Strict-Transport-Security on https responses, as
	// it is; "" sends none.
	HSTS string

	// ReloadTrigger is a file whose touch rolls the app, as touching the
	// app file does (reload_trigger, D2); "" for none. Absolute, inside
	// the owner's home or the app's or app file's directory.
	ReloadTrigger string
	// Umask is the workers' file-creation mask as written (umask, D6),
	// three or four octal digits; "" is DefaultUmask. UmaskBits reads it.
	Umask string
	// Warmup are URL paths each new worker must answer below 500, one
	// after another, before it takes traffic (warmup, D3); nil: none.
	Warmup []string
	// Disabled (enabled = false) keeps the app loaded, its claims held,
	// but not started when the daemon starts (D5); pyctl start starts it
	// until the next restart.
	Disabled bool

	// File is the app file it was read from; "" in express mode without
	// one.
	File string
	// AdminDeployed: the app's file is in the admin's admin_dir, not in
	// its user's own directory. Its user sees it, its logs and its
	// status, but only root acts on it.
	AdminDeployed bool
}

// Key names the app uniquely in the daemon: "user/app".
func (a App) Key() string { return a.Cred.Username + "/" + a.Name }

// Validate checks the invariants every consumer relies on.
func (a App) Validate() error {
	switch {
	case a.Name == "" || strings.ContainsAny(a.Name, "/\x00"):
		return fmt.Errorf("app name %q is not valid", a.Name)
	case a.Cred.IsRoot():
		return fmt.Errorf("app %s: %w", a.Name, privdrop.ErrRoot)
	case (a.Script == "") == (a.Module == ""):
		return fmt.Errorf("app %s: give exactly one of app (module:callable) and script", a.Name)
	case a.Module != "" && a.Callable == "":
		return fmt.Errorf("app %s: module %s needs a callable (module:callable)", a.Name, a.Module)
	case a.Script != "" && !filepath.IsAbs(a.Script):
		return fmt.Errorf("app %s: script %q is not absolute", a.Name, a.Script)
	case !filepath.IsAbs(a.Directory):
		return fmt.Errorf("app %s: directory %q is not absolute", a.Name, a.Directory)
	case a.Python == "":
		return fmt.Errorf("app %s: no python interpreter", a.Name)
	}
	// Each tunable in its key's one range (tunables.go), as a file and
	// serve's flags are held to.
	for _, t := range tunables {
		if err := t.inRange(&a); err != nil {
			return fmt.Errorf("app %s: %s: %w", a.Name, t.name(), err)
		}
	}
	// And tasks_max with the processes and threads it must hold, which
	// serve's flags may raise over a file's tasks_max.
	if problem := tasksProblem(a, "the app"); problem != "" {
		return fmt.Errorf("app %s: tasks_max: %s", a.Name, problem)
	}
	return nil
}

// DefaultUmask is the workers' umask when the app file sets none: files
// an app creates are readable by its group, not by others (0640, 0750).
const DefaultUmask = "027"

// UmaskBits is the app's umask as the kernel takes it.
func (a App) UmaskBits() uint32 {
	s := a.Umask
	if s == "" {
		s = DefaultUmask
	}
	n, _ := parseUmask(s)
	return n
}

// parseUmask reads a umask written as 3 or 4 octal digits, at most 0777.
func parseUmask(s string) (uint32, bool) {
	if len(s) < 3 || len(s) > 4 {
		return 0, false
	}
	var n uint32
	for _, c := range s {
		if c < '0' || c > '7' {
			return 0, false
		}
		n = n*8 + uint32(c-'0')
	}
	return n, n <= 0o777
}
