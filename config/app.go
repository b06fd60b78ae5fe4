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

	"github.com/pyhost/pyhost/privdrop"
)

// Defaults for an app setting left unset.
const (
	DefaultProcesses       = 1
	DefaultThreads         = 4
	DefaultStartupTimeout  = 30 * time.Second
	DefaultGracefulTimeout = 15 * time.Second
	DefaultQueueTimeout    = 30 * time.Second
)

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
	case a.Processes < 1 || a.Processes > 256:
		return fmt.Errorf("app %s: processes = %d, want 1 to 256", a.Name, a.Processes)
	case a.Threads < 1 || a.Threads > 1024:
		return fmt.Errorf("app %s: threads = %d, want 1 to 1024", a.Name, a.Threads)
	case a.StartupTimeout <= 0 || a.GracefulTimeout <= 0 || a.QueueTimeout <= 0:
		return fmt.Errorf("app %s: timeouts must be positive", a.Name)
	}
	return nil
}
