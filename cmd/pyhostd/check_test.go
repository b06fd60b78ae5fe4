package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/privdrop"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// fakeLookup knows www-data (the proxy), alice and bob, and toor, a
// second name for root; not pyhost, the default proxy user.
func fakeLookup(name string) (privdrop.Credential, error) {
	switch name {
	case "www-data":
		return privdrop.Credential{UID: 990, GID: 990, Username: name}, nil
	case "alice":
		return privdrop.Credential{UID: 1000, GID: 1000, Username: name, Home: "/home/alice"}, nil
	case "bob":
		return privdrop.Credential{UID: 1001, GID: 1001, Username: name, Home: "/home/bob"}, nil
	case "toor":
		return privdrop.Credential{Username: name, Home: "/root"}, nil
	}
	return privdrop.Credential{}, fmt.Errorf("look up user %q: %w", name, user.UnknownUserError(name))
}

// fakeFiles is a file system for checkSystemWith's lstat: only the
// paths listed exist.
type fakeFiles map[string]privdrop.FileNode

func (f fakeFiles) lstat(path string) (privdrop.FileNode, error) {
	if n, ok := f[path]; ok {
		return n, nil
	}
	return privdrop.FileNode{}, &fs.PathError{Op: "lstat", Path: path, Err: fs.ErrNotExist}
}

// files: the default access log does not exist yet, /var/log/syslog is
// root's (a mistaken path), /srv/log/access.log the proxy's from a
// previous run.
var files = fakeFiles{
	"/var/log/syslog":     {UID: 0, Mode: 0o640},
	"/srv/log/access.log": {UID: 990, Mode: 0o640},
	"/srv/log/link.log":   {UID: 990, Mode: fs.ModeSymlink | 0o777, Link: "/etc/shadow"},
}

func app(user, name, domain, prefix string) config.App {
	return config.App{Name: name, Cred: privdrop.Credential{Username: user}, Domains: []string{domain}, URLPrefix: prefix, Processes: 2, Threads: 4}
}

const users = `
[users.alice]
domains = ["alice.example.com", "*.alice.example.com"]

[users.bob]
domains = ["bob.example.com"]
`

// TestCheckReport: what pyhostd check prints (testdata/check/NAME.golden:
// stdout, then the error pyhostd prints last on stderr). `go test
// ./cmd/pyhostd -run CheckReport -update` rewrites them; review the diff.
func TestCheckReport(t *testing.T) {
	twoApps := []config.App{
		app("alice", "blog", "blog.alice.example.com", "/"),
		app("alice", "api", "alice.example.com", "/api"),
		app("bob", "site", "bob.example.com", "/"),
	}
	cases := []struct {
		name  string
		admin string
		d     config.Discovery
	}{
		{"ok", "[proxy]\nuser = \"www-data\"\naccess_log = \"/srv/log/access.log\"\n" + users, config.Discovery{Apps: twoApps}},
		{"ok-none", "[proxy]\nuser = \"www-data\"\naccess_log = \"/srv/log/new.log\"\n", config.Discovery{}},
		{"access-log-root", "[proxy]\nuser = \"www-data\"\naccess_log = \"/var/log/syslog\"\n" + users, config.Discovery{Apps: twoApps}},
		{"access-log-link", "[proxy]\nuser = \"www-data\"\naccess_log = \"/srv/log/link.log\"\n", config.Discovery{}},
		{"unimplemented", `[proxy]
listen = [":80"]
tls_listen = [":443"]
user = "www-data"

[[tls]]
cert = "/etc/pyhost/tls/example.pem"
key = "/etc/pyhost/tls/example.key"

[daemon]
metrics_listen = "127.0.0.1:9181"
` + users, config.Discovery{Apps: twoApps}},
		{"proxy-user", "[proxy]\nlisten = [\":80\"]\nuser = \"pyhsot\"\n" + users, config.Discovery{Apps: twoApps[:1]}},
		{"proxy-default-user", "[daemon]\nlog_dir = \"/srv/log\"\n", config.Discovery{}},
		{"proxy-root", "[proxy]\nuser = \"toor\"\n", config.Discovery{}},
		{"refused", "[proxy]\nuser = \"www-data\"\ndefault_app = \"bob/site\"\n" + users, config.Discovery{
			Apps: twoApps[:1],
			Refused: []config.Refusal{
				{Path: "/home/alice/.config/pyhost/apps/dup.toml", User: "alice", Err: &config.ConflictError{Domain: "blog.alice.example.com", Prefix: "/", Holder: "alice/blog"}},
				{Path: "/home/bob/.config/pyhost/apps/site.toml", User: "bob", Err: errors.New("untrusted file: /home/bob/.config/pyhost/apps/site.toml is writable by group or others (mode 0664); run chmod go-w /home/bob/.config/pyhost/apps/site.toml")},
			},
		}},
	}
	for _, c := range cases {
		admin, err := config.ParseAdmin(config.DefaultAdminFile, []byte(c.admin))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var out bytes.Buffer
		if err := report(&out, admin, c.d, checkSystemWith(admin, c.d.Apps, fakeLookup, files.lstat)); err != nil {
			fmt.Fprintf(&out, "error: %v\n", err)
		}
		file := filepath.Join("testdata", "check", c.name+".golden")
		if *update {
			os.MkdirAll(filepath.Dir(file), 0o755)
			if err := os.WriteFile(file, out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%s (run with -update to create it)", err)
		}
		if out.String() != string(want) {
			t.Errorf("%s: output differs from %s (run with -update and review the diff)\ngot:\n%s\nwant:\n%s", c.name, file, out.String(), want)
		}
	}
}

// run refuses to start on exactly what check reports as the admin
// file's problems; the proxy's user is resolved for it.
func TestCheckSystem(t *testing.T) {
	admin, err := config.ParseAdmin(config.DefaultAdminFile, []byte("[proxy]\nuser = \"www-data\"\ndefault_app = \"alice/blog\"\naccess_log = \"/srv/log/access.log\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := checkSystemWith(admin, []config.App{app("alice", "blog", "alice.example.com", "/")}, fakeLookup, files.lstat)
	if s.Problems != nil || s.Warnings != nil || s.Proxy.UID != 990 {
		t.Errorf("a good config: %+v", s)
	}
	s = checkSystemWith(admin, nil, fakeLookup, files.lstat)
	if s.Problems != nil || len(s.Warnings) != 1 || s.Warnings[0].Line != 3 {
		t.Errorf("default_app naming no app: %+v", s)
	}

	admin, err = config.ParseAdmin(config.DefaultAdminFile, []byte("[daemon]\nmetrics_listen = \"127.0.0.1:9181\"\n[proxy]\nuser = \"nobody-here\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	s = checkSystemWith(admin, nil, fakeLookup, files.lstat)
	// metrics_listen is served (issue 15): no problem of its own.
	if len(s.Problems) != 1 || s.Problems[0].Key != "proxy.user" || s.Problems[0].Line != 4 || s.Proxy.Username != "" {
		t.Fatalf("one problem: %+v", s)
	}
	var unknown user.UnknownUserError
	if !errors.As(s.Problems[0], &unknown) {
		t.Errorf("the lookup's error is not kept: %#v", s.Problems[0])
	}
	// As run returns them: one problem a line.
	var e error = s.Problems
	want := config.DefaultAdminFile + `:4: proxy.user: no such user "nobody-here" on this system; name an existing user for the proxy, or create this one: useradd --system --no-create-home --shell /usr/sbin/nologin nobody-here`
	if e.Error() != want {
		t.Errorf("run's error:\n%s\nwant\n%s", e, want)
	}
}

// The access log the master would refuse to hand the proxy, check
// refuses (issue 9 review, item 1): an existing file must be the proxy's
// user's; a missing one is created for it.
func TestAccessLogProblem(t *testing.T) {
	proxy := privdrop.Credential{UID: 990, GID: 990, Username: "www-data"}
	fifo := fakeFiles{
		"/var/log/pyhost/access.log": {UID: 0, Mode: 0o600},
		"/var/log/pyhost/mine.log":   {UID: 990, Mode: 0o640},
		"/var/log/pyhost/other.log":  {UID: 1000, Mode: 0o666},
		"/var/log/pyhost/fifo":       {UID: 990, Mode: fs.ModeNamedPipe | 0o600},
		"/var/log/pyhost/dir":        {UID: 990, Mode: fs.ModeDir | 0o755},
		"/var/log/pyhost/link":       {UID: 990, Mode: fs.ModeSymlink | 0o777, Link: "mine.log"},
	}
	for _, c := range []struct {
		path string
		want string // in the error; "" for none
	}{
		{"", ""},
		{"/var/log/pyhost/new.log", ""},
		{"/nowhere/yet/access.log", ""},
		{"/var/log/pyhost/mine.log", ""},
		{"/var/log/pyhost/access.log", "owned by uid 0 (root), not by www-data (uid 990)"},
		{"/var/log/pyhost/other.log", "owned by uid 1000, not by www-data"},
		{"/var/log/pyhost/fifo", "not a regular file (a FIFO)"},
		{"/var/log/pyhost/dir", "not a regular file (a directory)"},
		{"/var/log/pyhost/link", "is a symlink"},
	} {
		err := accessLogProblem(c.path, proxy, fifo.lstat)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.path, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: %v, want %q", c.path, err, c.want)
		}
	}
	// A path the admin cannot look at is a problem too, not a pass.
	broken := func(string) (privdrop.FileNode, error) { return privdrop.FileNode{}, fs.ErrPermission }
	if err := accessLogProblem("/x/access.log", proxy, broken); err == nil {
		t.Error("an lstat that fails: no problem")
	}
}
