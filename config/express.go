package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pyhost/pyhost/privdrop"
)

// ErrNoTarget is returned for a serve TARGET that names nothing usable.
var ErrNoTarget = errors.New("no such app")

// ExpressTarget is what `pyhostd serve TARGET` resolves to.
type ExpressTarget struct {
	Name      string // the app's name: file stem or module
	Target    string // absolute script path, or module:callable
	Directory string // the script's directory, or the current directory
}

// ResolveExpressTarget interprets TARGET: a file (wsgi.py, app.wsgi, with
// an optional ":callable"), or module:callable imported from cwd.
func ResolveExpressTarget(target, cwd string) (ExpressTarget, error) {
	if target == "" {
		return ExpressTarget{}, fmt.Errorf("%w: empty target", ErrNoTarget)
	}
	path, callable := target, ""
	if i := strings.LastIndexByte(target, ':'); i > 0 {
		path, callable = target[:i], target[i+1:]
	}
	looksLikeFile := strings.ContainsRune(path, '/') || strings.HasSuffix(path, ".py") || strings.HasSuffix(path, ".wsgi")
	if !looksLikeFile {
		if callable == "" {
			// "hello" alone: a file without suffix, or a module without
			// callable; a file wins if it exists.
			if st, err := os.Stat(filepath.Join(cwd, path)); err == nil && st.Mode().IsRegular() {
				looksLikeFile = true
			} else {
				return ExpressTarget{}, fmt.Errorf("%w: %q is neither a file nor module:callable", ErrNoTarget, target)
			}
		} else {
			if !validModule(path) || !validModule(callable) {
				return ExpressTarget{}, fmt.Errorf("%w: %q is not module:callable", ErrNoTarget, target)
			}
			return ExpressTarget{Name: path, Target: target, Directory: cwd}, nil
		}
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(cwd, path)
	}
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ExpressTarget{}, fmt.Errorf("%w: %s does not exist", ErrNoTarget, path)
		}
		return ExpressTarget{}, fmt.Errorf("app file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return ExpressTarget{}, fmt.Errorf("%w: %s is not a regular file", ErrNoTarget, path)
	}
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	t := path
	if callable != "" {
		t += ":" + callable
	}
	return ExpressTarget{Name: name, Target: t, Directory: filepath.Dir(path)}, nil
}

func validModule(s string) bool {
	if s == "" {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" {
			return false
		}
		for i, c := range part {
			if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
				return false
			}
		}
	}
	return true
}

// ExpressApp builds the App that `pyhostd serve` runs for cred.
func ExpressApp(t ExpressTarget, cred privdrop.Credential, python string, processes, threads int) App {
	return App{
		Name:            t.Name,
		Cred:            cred,
		Target:          t.Target,
		Directory:       t.Directory,
		Python:          python,
		URLPrefix:       "/",
		Processes:       processes,
		Threads:         threads,
		StartupTimeout:  DefaultStartupTimeout,
		GracefulTimeout: DefaultGracefulTimeout,
		QueueTimeout:    DefaultQueueTimeout,
	}
}
