package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pyhost/pyhost/privdrop"
)

func TestSandboxKey(t *testing.T) {
	owner := privdrop.Credential{UID: 1001, GID: 1001, Username: "alice", Home: "/home/alice"}
	path := "/home/alice/.config/pyhost/apps/blog.toml"
	for _, tc := range []struct {
		body        string
		unsandboxed bool
		problem     string
	}{
		{body: "", unsandboxed: false},
		{body: "sandbox = true", unsandboxed: false},
		{body: "sandbox = false", unsandboxed: true},
		{body: `sandbox = "no"`, problem: "blog.toml:2: sandbox:"},
	} {
		app, _, err := ParseAppFile(path, []byte("script = \"/home/alice/wsgi.py\"\n"+tc.body+"\n"), owner, Defaults{})
		switch {
		case tc.problem != "":
			if err == nil || !strings.Contains(err.Error(), tc.problem) {
				t.Errorf("%q: %v, want %q", tc.body, err, tc.problem)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.body, err)
		case app.Unsandboxed != tc.unsandboxed || app.Sandbox != nil:
			t.Errorf("%q: Unsandboxed %v, Sandbox %v; want %v and nil (Discover sets it)", tc.body, app.Unsandboxed, app.Sandbox, tc.unsandboxed)
		}
	}
}

func TestUnsandboxedAllowed(t *testing.T) {
	admin, err := ParseAdmin(DefaultAdminFile, []byte(`
[users.alice]
[users.bob]
allow_unsandboxed = true
`))
	if err != nil {
		t.Fatal(err)
	}
	app := func(user string, off, byAdmin bool) App {
		return App{Name: "a", Cred: privdrop.Credential{Username: user}, Unsandboxed: off, AdminDeployed: byAdmin}
	}
	for _, tc := range []struct {
		app App
		ok  bool
	}{
		{app("alice", false, false), true},
		{app("alice", true, false), false},
		{app("alice", true, true), true}, // the admin's own file
		{app("bob", true, false), true},
		{app("carol", true, false), false}, // not listed: refused elsewhere too
	} {
		err := UnsandboxedAllowed(admin, tc.app)
		if (err == nil) != tc.ok {
			t.Errorf("%s (sandbox = %v, admin's %v): %v, want allowed %v", tc.app.Cred.Username, !tc.app.Unsandboxed, tc.app.AdminDeployed, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "allow_unsandboxed = true under [users."+tc.app.Cred.Username+"] in "+DefaultAdminFile) {
			t.Errorf("the refusal does not say what to do: %v", err)
		}
	}
	if err := RunningAllowed(admin, app("alice", true, false)); err == nil {
		t.Error("a running unsandboxed app of a user no longer allowed may go on")
	}
}

func TestDaemonSandbox(t *testing.T) {
	admin, err := ParseAdmin(DefaultAdminFile, []byte("[daemon]\nstate_dir = \"/srv/run\"\nlog_dir = \"/srv/log\"\ndata_dir = \"/srv/lib\"\n[apps]\nadmin_dir = \"/srv/apps.d\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := daemonSandbox(admin, App{})
	if want := (&Sandbox{Hide: []string{"/srv/run", "/srv/lib", "/srv/log", "/srv/apps.d"}}); !reflect.DeepEqual(got, want) {
		t.Errorf("daemonSandbox = %+v, want %+v", got, want)
	}
	if got := daemonSandbox(admin, App{Unsandboxed: true}); got != nil {
		t.Errorf("an app with sandbox = false got %+v", got)
	}
}
