package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// addSeeds adds every golden input under dir to the corpus.
func addSeeds(f *testing.F, dir string) {
	inputs, _ := filepath.Glob(filepath.Join(dir, "*.toml"))
	if len(inputs) == 0 {
		f.Fatalf("no seeds in %s", dir)
	}
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// checkFuzzErrors checks what every error must be: Errors, each with the
// file, a message, and a line inside the file.
func checkFuzzErrors(t *testing.T, file string, data []byte, err error) {
	var es Errors
	if !errors.As(err, &es) || len(es) == 0 || len(es) > maxErrors+1 {
		t.Fatalf("error is not a non-empty, bounded Errors: %T %v", err, err)
	}
	lines := strings.Count(string(data), "\n") + 1
	for _, e := range es {
		if e.File != file || e.Msg == "" || e.Line < 0 || e.Line > lines || strings.Contains(e.Msg, "\n") {
			t.Fatalf("bad error %#v in a file of %d lines", e, lines)
		}
	}
}

func FuzzParseAppFile(f *testing.F) {
	addSeeds(f, "testdata/appfile")
	f.Add([]byte("app = \"a:b\"\n[[static]]\nurl = \"/s/\"\ndir = \"s\"\n[static.x]\n[[static]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		app, meta, err := ParseAppFile(appPath, data, alice, Defaults{})
		if err != nil {
			checkFuzzErrors(t, appPath, data, err)
			return
		}
		if err := app.Validate(); err != nil {
			t.Fatalf("accepted an app that fails Validate: %v", err)
		}
		if meta.Path != appPath || app.Name != "blog" || app.Cred.UID != alice.UID {
			t.Fatalf("accepted with wrong identity: %+v %+v", app, meta)
		}
		for _, p := range append(append([]string{app.Directory, app.Python}, app.PythonPath...), app.Script) {
			if p != "" && strings.HasPrefix(p, "/") && filepath.Clean(p) != p {
				t.Fatalf("path not clean: %q", p)
			}
		}
		for _, m := range app.Static {
			if !strings.HasPrefix(m.URL, "/") || !strings.HasSuffix(m.URL, "/") || !filepath.IsAbs(m.Dir) {
				t.Fatalf("bad static mount %+v", m)
			}
		}
	})
}

func FuzzParseAdmin(f *testing.F) {
	addSeeds(f, "testdata/admin")
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseAdmin(DefaultAdminFile, data)
		if err != nil {
			checkFuzzErrors(t, DefaultAdminFile, data, err)
			return
		}
		if len(a.Proxy.Listen)+len(a.Proxy.TLSListen) == 0 || a.Proxy.User == "" || a.Proxy.User == "root" {
			t.Fatalf("accepted a proxy that cannot run: %+v", a.Proxy)
		}
		for _, p := range []string{a.Daemon.StateDir, a.Daemon.LogDir, a.Daemon.ControlSocket, a.Apps.AdminDir} {
			if !filepath.IsAbs(p) {
				t.Fatalf("relative path %q accepted", p)
			}
		}
		if _, ok := a.Users["root"]; ok {
			t.Fatal("root accepted as a user")
		}
		if a.Defaults.Processes < 1 || a.Defaults.Threads < 1 || a.Defaults.Python == "" {
			t.Fatalf("incomplete defaults %+v", a.Defaults)
		}
	})
}
