package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/pyhost/pyhost/privdrop"
)

func TestResolveExpressTarget(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"wsgi.py", "app.wsgi", "pkg.wsgi", "noext"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	abs := func(f string) string { return filepath.Join(dir, f) }
	cases := []struct {
		target string
		want   ExpressTarget
		err    bool
	}{
		{"wsgi.py", ExpressTarget{Name: "wsgi", Script: abs("wsgi.py"), Directory: dir}, false},
		{abs("app.wsgi"), ExpressTarget{Name: "app", Script: abs("app.wsgi"), Directory: dir}, false},
		{"wsgi.py:make_app", ExpressTarget{Name: "wsgi", Script: abs("wsgi.py"), Callable: "make_app", Directory: dir}, false},
		{"noext", ExpressTarget{Name: "noext", Script: abs("noext"), Directory: dir}, false},
		{"myproject.wsgi:application", ExpressTarget{Name: "myproject.wsgi", Module: "myproject.wsgi", Callable: "application", Directory: dir}, false},
		// An existing file wins over a module of the same spelling.
		{"pkg.wsgi:app", ExpressTarget{Name: "pkg", Script: abs("pkg.wsgi"), Callable: "app", Directory: dir}, false},
		{"app:factory.create", ExpressTarget{Name: "app", Module: "app", Callable: "factory.create", Directory: dir}, false},
		{"missing.py", ExpressTarget{}, true},
		{"sub", ExpressTarget{}, true},
		{"module", ExpressTarget{}, true},
		{"bad-module:app", ExpressTarget{}, true},
		{"mod:1bad", ExpressTarget{}, true},
		{"", ExpressTarget{}, true},
	}
	for _, c := range cases {
		got, err := ResolveExpressTarget(c.target, dir)
		if c.err {
			if !errors.Is(err, ErrNoTarget) {
				t.Errorf("%q: error %v, want ErrNoTarget", c.target, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q:\n got %+v, %v\nwant %+v", c.target, got, err, c.want)
		}
	}
}

func TestAppValidate(t *testing.T) {
	good := ExpressApp(ExpressTarget{Name: "blog", Script: "/srv/blog/wsgi.py", Directory: "/srv/blog"},
		privdrop.Credential{UID: 1000, GID: 1000, Username: "alice"}, "/usr/bin/python3")
	if err := good.Validate(); err != nil {
		t.Fatalf("valid app refused: %v", err)
	}
	if good.Key() != "alice/blog" {
		t.Errorf("key %q", good.Key())
	}
	bad := map[string]func(a *App){
		"root":          func(a *App) { a.Cred.UID = 0 },
		"no target":     func(a *App) { a.Script = "" },
		"both targets":  func(a *App) { a.Module = "x" },
		"relative dir":  func(a *App) { a.Directory = "blog" },
		"zero procs":    func(a *App) { a.Processes = 0 },
		"zero threads":  func(a *App) { a.Threads = 0 },
		"slash in name": func(a *App) { a.Name = "a/b" },
		"no timeout":    func(a *App) { a.QueueTimeout = 0 },
		"module no callable": func(a *App) {
			a.Script = ""
			a.Module = "x"
		},
	}
	for name, mutate := range bad {
		a := good
		mutate(&a)
		if err := a.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	a := good
	a.Cred.UID = 0
	if err := a.Validate(); !errors.Is(err, privdrop.ErrRoot) {
		t.Errorf("root app: %v, want ErrRoot", err)
	}
}

func TestParseStaticFlag(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "static"), 0o755)
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o644)
	cases := []struct {
		spec, prefix string
		seen         []StaticMount
		want         StaticMount
		err          bool
	}{
		{"/static/=static", "/", nil, StaticMount{URL: "/static/", Dir: filepath.Join(dir, "static")}, false},
		{"/static=" + filepath.Join(dir, "static"), "/", nil, StaticMount{URL: "/static/", Dir: filepath.Join(dir, "static")}, false},
		{"/blog/media/=./static/", "/blog", nil, StaticMount{URL: "/blog/media/", Dir: filepath.Join(dir, "static")}, false},
		{"/static/", "/", nil, StaticMount{}, true},                                     // no DIR
		{"static/=static", "/", nil, StaticMount{}, true},                               // not a URL path
		{"/=static", "/", nil, StaticMount{}, true},                                     // the whole app
		{"/other/=static", "/blog", nil, StaticMount{}, true},                           // outside the prefix
		{"/static/=missing", "/", nil, StaticMount{}, true},                             // no such directory
		{"/static/=file", "/", nil, StaticMount{}, true},                                // not a directory
		{"/a/../b/=static", "/", nil, StaticMount{}, true},                              // dot segments
		{"/static/=static", "/", []StaticMount{{URL: "/static/"}}, StaticMount{}, true}, // twice
	}
	for _, c := range cases {
		got, err := ParseStaticFlag(c.spec, dir, c.prefix, c.seen)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseStaticFlag(%q, prefix %q) = %+v, %v; want %+v, error %v", c.spec, c.prefix, got, err, c.want, c.err)
		}
	}
}
