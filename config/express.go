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
	Script    string // absolute script path, or ""
	Module    string // dotted module, or ""
	Callable  string
	Directory string // the script's directory, or the current directory
}

// ResolveExpressTarget interprets TARGET: a file (wsgi.py, app.wsgi), or
// module:callable imported from cwd. "file.py:name" picks another callable
// in a file. An existing file always wins, so "pkg.wsgi:app" is a module
// unless a file named pkg.wsgi is there.
func ResolveExpressTarget(target, cwd string) (ExpressTarget, error) {
	if target == "" {
		return ExpressTarget{}, fmt.Errorf("%w: empty target", ErrNoTarget)
	}
	path, callable := target, ""
	if i := strings.LastIndexByte(target, ':'); i > 0 {
		path, callable = target[:i], target[i+1:]
	}
	abs := path
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(cwd, path)
	}
	st, statErr := os.Stat(abs)
	if statErr == nil && st.Mode().IsRegular() {
		return ExpressTarget{
			Name:      strings.TrimSuffix(filepath.Base(abs), filepath.Ext(abs)),
			Script:    abs,
			Callable:  callable,
			Directory: filepath.Dir(abs),
		}, nil
	}
	if callable != "" && validModule(path) {
		if !validModule(callable) {
			return ExpressTarget{}, fmt.Errorf("%w: %q is not a valid callable name in %s", ErrNoTarget, callable, target)
		}
		return ExpressTarget{Name: path, Module: path, Callable: callable, Directory: cwd}, nil
	}
	switch {
	case statErr == nil:
		return ExpressTarget{}, fmt.Errorf("%w: %s is not a regular file", ErrNoTarget, abs)
	case errors.Is(statErr, os.ErrNotExist) && callable == "" && validModule(path) && !strings.HasSuffix(path, ".py"):
		return ExpressTarget{}, fmt.Errorf("%w: no file %s; for a module, name its callable too: %s:application", ErrNoTarget, abs, path)
	case errors.Is(statErr, os.ErrNotExist):
		return ExpressTarget{}, fmt.Errorf("%w: %s does not exist (give a wsgi file or module:callable)", ErrNoTarget, abs)
	default:
		return ExpressTarget{}, fmt.Errorf("app file: %w", statErr)
	}
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

// ExpressApp builds the App that `pyhostd serve` runs for cred, with
// the built-in defaults (serve's flags come next).
func ExpressApp(t ExpressTarget, cred privdrop.Credential, python string) App {
	app := BuiltinDefaults().App
	app.Name = t.Name
	app.Cred = cred
	app.Script, app.Module, app.Callable = t.Script, t.Module, t.Callable
	app.Directory = t.Directory
	app.Python = python
	app.URLPrefix = "/"
	return app
}

// ParseStaticFlag reads a `serve --static URL=DIR` value into the mount a
// [[static]] table with url = URL and dir = DIR would make: the URL is
// checked by the same rules (under prefix, not the whole app, not
// mounted twice: seen holds the URLs taken by earlier flags or the app
// file), and a relative DIR is taken from cwd. The directory must exist:
// a typo would otherwise answer 404 for every file with no other word.
func ParseStaticFlag(spec, cwd, prefix string, seen []StaticMount) (StaticMount, error) {
	u, dir, ok := strings.Cut(spec, "=")
	if !ok || u == "" || dir == "" {
		return StaticMount{}, fmt.Errorf("--static %q: want URL=DIR, like --static /static/=./static", spec)
	}
	clean, problem := cleanURLPath(u)
	if problem != "" {
		return StaticMount{}, fmt.Errorf("--static %q: %s; use a URL path like \"/static/\"", spec, problem)
	}
	if prefix == "" {
		prefix = "/"
	}
	switch {
	case prefix != "/" && clean != prefix && !strings.HasPrefix(clean, prefix+"/"):
		return StaticMount{}, fmt.Errorf("--static %q: %q is outside url_prefix %q; use a path under it", spec, u, prefix)
	case clean == prefix:
		return StaticMount{}, fmt.Errorf("--static %q: %q is the whole app (url_prefix %q), so the app would never be reached; use a path under it, like %q", spec, u, prefix, strings.TrimSuffix(prefix, "/")+"/static/")
	}
	for _, s := range seen {
		if s.URL == clean+"/" {
			return StaticMount{}, fmt.Errorf("--static %q: %q is served by an earlier --static or [[static]] already", spec, u)
		}
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(cwd, dir)
	}
	dir = filepath.Clean(dir)
	st, err := os.Stat(dir)
	if err != nil {
		return StaticMount{}, fmt.Errorf("--static %q: %w", spec, err)
	}
	if !st.IsDir() {
		return StaticMount{}, fmt.Errorf("--static %q: %s is not a directory", spec, dir)
	}
	return StaticMount{URL: clean + "/", Dir: dir}, nil
}
