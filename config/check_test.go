package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pyhost/pyhost/privdrop"
)

// checkFixture is a scratch system for CheckAppFile: two users' homes
// (files owned by uids that need no passwd entry, since lookup is
// faked), an admin_dir, and the admin file that lists both users.
type checkFixture struct {
	t          *testing.T
	admin      Admin
	adminDir   string
	alice, bob privdrop.Credential
	checked    []string // the users paths were checked as, in order
}

func newCheckFixture(t *testing.T) *checkFixture {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("app files of other users are made with chown: needs root")
	}
	base := t.TempDir()
	os.Chmod(base, 0o755)
	f := &checkFixture{t: t, adminDir: filepath.Join(base, "apps.d"),
		alice: privdrop.Credential{UID: 51001, GID: 51001, Groups: []uint32{51001}, Username: "ck-alice", Home: filepath.Join(base, "alice")},
		bob:   privdrop.Credential{UID: 51002, GID: 51002, Groups: []uint32{51002}, Username: "ck-bob", Home: filepath.Join(base, "bob")},
	}
	for _, c := range []privdrop.Credential{f.alice, f.bob} {
		os.MkdirAll(c.Home, 0o755)
		os.Chown(c.Home, int(c.UID), int(c.GID))
	}
	os.MkdirAll(f.adminDir, 0o755)
	src := fmt.Sprintf("[apps]\nadmin_dir = %q\n\n[users.ck-alice]\ndomains = [\"alice.test\"]\n\n[users.ck-bob]\ndomains = [\"bob.test\"]\n", f.adminDir)
	a, err := ParseAdmin(filepath.Join(base, "pyhost.toml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	f.admin = a
	return f
}

// lookup knows the two users by name and uid, and nobody else.
func (f *checkFixture) lookup(name string) (privdrop.Credential, error) {
	for _, c := range []privdrop.Credential{f.alice, f.bob} {
		if name == c.Username || name == fmt.Sprint(c.UID) {
			return c, nil
		}
	}
	return privdrop.Credential{}, fmt.Errorf("look up user %q: %w", name, user.UnknownUserError(name))
}

func (f *checkFixture) check(cred privdrop.Credential, _ map[string]uint32) error {
	f.checked = append(f.checked, cred.Username)
	return nil
}

// write makes an app file owned by uid (0: root's) with mode 0644.
func (f *checkFixture) write(path string, uid uint32, src string) string {
	f.t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if uid != 0 {
		for d := filepath.Dir(path); strings.HasPrefix(d, f.alice.Home) || strings.HasPrefix(d, f.bob.Home); d = filepath.Dir(d) {
			os.Chown(d, int(uid), int(uid))
		}
	}
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		f.t.Fatal(err)
	}
	os.Chown(path, int(uid), int(uid))
	return path
}

func (f *checkFixture) run(caller privdrop.Credential, path string, running ...App) error {
	f.checked = nil
	return CheckAppFile(f.admin, caller, path, running, LedgerOf(running), f.lookup, OneByOne(f.check))
}

const goodApp = "domains = [%q]\napp = \"site.wsgi:application\"\n"

func TestCheckAppFileAsUser(t *testing.T) {
	f := newCheckFixture(t)
	good := f.write(filepath.Join(f.alice.Home, "apps/blog.toml"), f.alice.UID, fmt.Sprintf(goodApp, "alice.test"))
	if err := f.run(f.alice, good); err != nil {
		t.Errorf("alice's good file: %v", err)
	}
	if !checkedAs(f.checked, f.alice.Username) {
		t.Errorf("paths checked as %v, want alice", f.checked)
	}
	// Another user's file is not alice's to deploy.
	if err := f.run(f.bob, good); !errors.Is(err, ErrUntrusted) {
		t.Errorf("bob checking alice's file: %v", err)
	}
}

// Root has no apps: root's check is for whoever the file would run as.
func TestCheckAppFileAsRoot(t *testing.T) {
	f := newCheckFixture(t)
	root := privdrop.Credential{Username: "root", Home: "/root"}
	aliceGood := f.write(filepath.Join(f.alice.Home, "apps/blog.toml"), f.alice.UID, fmt.Sprintf(goodApp, "alice.test"))
	aliceBad := f.write(filepath.Join(f.alice.Home, "apps/steal.toml"), f.alice.UID, fmt.Sprintf(goodApp, "bob.test"))
	adminGood := f.write(filepath.Join(f.adminDir, "site.toml"), 0, "user = \"ck-bob\"\n"+fmt.Sprintf(goodApp, "bob.test"))
	adminBad := f.write(filepath.Join(f.adminDir, "grab.toml"), 0, "user = \"ck-bob\"\n"+fmt.Sprintf(goodApp, "alice.test"))
	adminNoUser := f.write(filepath.Join(f.adminDir, "nouser.toml"), 0, fmt.Sprintf(goodApp, "bob.test"))
	adminNobody := f.write(filepath.Join(f.adminDir, "nobody.toml"), 0, "\nuser = \"ck-nobody\"\n"+fmt.Sprintf(goodApp, "bob.test"))
	adminUsers := f.write(filepath.Join(f.adminDir, "users.toml"), f.alice.UID, "user = \"ck-alice\"\n"+fmt.Sprintf(goodApp, "alice.test"))
	rootDraft := f.write(filepath.Join(filepath.Dir(f.adminDir), "draft.toml"), 0, "user = \"ck-bob\"\n"+fmt.Sprintf(goodApp, "bob.test"))

	cases := []struct {
		name, path string
		as         string // the user paths are checked as; "" for none
		want       string // the whole error, "" for none
		is         error
	}{
		{"alice's good file, as alice", aliceGood, "ck-alice", "", nil},
		{"alice's file, judged by alice's policy", aliceBad, "",
			aliceBad + ":1: domains[0]: ck-alice may not claim bob.test; allowed: alice.test", ErrPolicy},
		{"admin_dir file, as the user it names", adminGood, "ck-bob", "", nil},
		{"admin_dir file, judged by its user's policy", adminBad, "",
			adminBad + ":2: domains[0]: ck-bob may not claim alice.test; allowed: bob.test", ErrPolicy},
		{"admin_dir file naming no user", adminNoUser, "",
			adminNoUser + ": a file in admin_dir (" + f.adminDir + ") must name the user its app runs as: user = \"NAME\"", nil},
		{"admin_dir file naming an unknown user", adminNobody, "",
			adminNobody + ":2: user: no such user \"ck-nobody\" on this system", nil},
		{"admin_dir file of a user's", adminUsers, "",
			adminUsers + ": untrusted file: " + adminUsers + " is not owned by the app's owner (uid 0)", ErrUntrusted},
		{"root's file outside admin_dir", rootDraft, "",
			rootDraft + ": a file of root's is an app file only in admin_dir (" + f.adminDir + "), where it names the user its app runs as; elsewhere an app runs as the owner of its file, and never as root", privdrop.ErrRoot},
	}
	for _, c := range cases {
		err := f.run(root, c.path)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%s: %v is not %v", c.name, err, c.is)
		}
		if c.as != "" && (len(f.checked) == 0 || f.checked[0] != c.as) {
			t.Errorf("%s: paths checked as %v, want %s", c.name, f.checked, c.as)
		}
	}
}

// A tenant checking a file of admin_dir, one that names them too, is
// told it is the admin's to check, not that it is "not owned by the
// app's owner" (issue 13 review); so through a link to it, as root's
// check follows one.
func TestCheckAppFileOfAdminDirAsUser(t *testing.T) {
	f := newCheckFixture(t)
	forAlice := f.write(filepath.Join(f.adminDir, "site.toml"), 0, "user = \"ck-alice\"\n"+fmt.Sprintf(goodApp, "alice.test"))
	forBob := f.write(filepath.Join(f.adminDir, "shop.toml"), 0, "user = \"ck-bob\"\n"+fmt.Sprintf(goodApp, "bob.test"))
	link := filepath.Join(f.alice.Home, "site-link.toml")
	os.Symlink(forAlice, link)
	for _, p := range []string{forAlice, forBob, link} {
		path, _ := adminDirPath(f.admin, p)
		want := path + ": a file of admin_dir (" + f.adminDir + "): the admin deploys it, for the user it names, and only root checks it (sudo pyctl check, or pyhostd check)"
		err := f.run(f.alice, p)
		if err == nil || err.Error() != want || !errors.Is(err, ErrAdminDir) {
			t.Errorf("alice checking %s:\n got %v\nwant %s", p, err, want)
		}
		if len(f.checked) != 0 {
			t.Errorf("alice checking %s: paths checked as %v, want none", p, f.checked)
		}
	}
}

// Root's check of an admin_dir file reached through a symlink (a linked
// directory, a link to the file, admin_dir itself a link) is the check of
// that admin_dir file, not a refusal as "a file of root's outside
// admin_dir". Issue 9 review, item 5.
func TestCheckAppFileThroughSymlinks(t *testing.T) {
	f := newCheckFixture(t)
	root := privdrop.Credential{Username: "root", Home: "/root"}
	base := filepath.Dir(f.adminDir)
	site := f.write(filepath.Join(f.adminDir, "site.toml"), 0, "user = \"ck-bob\"\n"+fmt.Sprintf(goodApp, "bob.test"))
	grab := f.write(filepath.Join(f.adminDir, "grab.toml"), 0, "user = \"ck-bob\"\n"+fmt.Sprintf(goodApp, "alice.test"))
	os.Symlink(f.adminDir, filepath.Join(base, "linked.d"))
	os.Symlink(site, filepath.Join(base, "site-link.toml"))
	for _, p := range []string{
		filepath.Join(base, "linked.d", "site.toml"),
		filepath.Join(base, "site-link.toml"),
		filepath.Join(base, "linked.d", "..", "apps.d", "site.toml"),
	} {
		if err := f.run(root, p); err != nil {
			t.Errorf("%s: %v", p, err)
		} else if !checkedAs(f.checked, "ck-bob") {
			t.Errorf("%s: checked as %v, want ck-bob", p, f.checked)
		}
	}
	// Its problems are located in the file as admin_dir names it.
	want := grab + ":2: domains[0]: ck-bob may not claim alice.test; allowed: bob.test"
	if err := f.run(root, filepath.Join(base, "linked.d", "grab.toml")); err == nil || err.Error() != want {
		t.Errorf("through the linked directory:\n got %v\nwant %s", err, want)
	}

	// admin_dir itself is a link, and root names the real directory.
	f.admin.Apps.AdminDir = filepath.Join(base, "linked.d")
	if err := f.run(root, site); err != nil || !checkedAs(f.checked, "ck-bob") {
		t.Errorf("admin_dir a link, the real path: %v (checked as %v)", err, f.checked)
	}
	// A root-owned file elsewhere is still refused.
	draft := f.write(filepath.Join(base, "draft.toml"), 0, "user = \"ck-bob\"\n"+fmt.Sprintf(goodApp, "bob.test"))
	if err := f.run(root, draft); !errors.Is(err, privdrop.ErrRoot) {
		t.Errorf("root's file outside admin_dir: %v", err)
	}
}

// The running apps count as Discover's earlier files do: their domains
// are taken, and the user's quota counts them, except the app the file
// would replace.
func TestCheckAppFileAgainstRunning(t *testing.T) {
	f := newCheckFixture(t)
	root := privdrop.Credential{Username: "root", Home: "/root"}
	path := f.write(filepath.Join(f.alice.Home, "apps/blog.toml"), f.alice.UID, fmt.Sprintf(goodApp, "alice.test"))
	other := App{Name: "other", Cred: f.alice, Domains: []string{"alice.test"}, URLPrefix: "/"}
	itself := App{Name: "blog", Cred: f.alice, Domains: []string{"alice.test"}, URLPrefix: "/"}
	for _, caller := range []privdrop.Credential{f.alice, root} {
		err := f.run(caller, path, other)
		var ce *ConflictError
		if !errors.As(err, &ce) || ce.Holder != "ck-alice/other" || !strings.HasPrefix(err.Error(), path+": ") {
			t.Errorf("as %s, a domain a running app holds: %v", caller.Username, err)
		}
		if err := f.run(caller, path, itself); err != nil {
			t.Errorf("as %s, the running version of the same app: %v", caller.Username, err)
		}
		// An app of admin_dir owns its name: the user's file may not
		// replace it.
		admins := itself
		admins.AdminDeployed = true
		if err := f.run(caller, path, admins); !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "deployed by the admin") {
			t.Errorf("as %s, a file named as an admin_dir app: %v", caller.Username, err)
		}
	}
	// The admin_dir file itself replaces its running version.
	adminFile := f.write(filepath.Join(f.adminDir, "site.toml"), 0, "user = \"ck-bob\"\n"+fmt.Sprintf(goodApp, "bob.test"))
	running := App{Name: "site", Cred: f.bob, Domains: []string{"bob.test"}, URLPrefix: "/", AdminDeployed: true}
	if err := f.run(root, adminFile, running); err != nil {
		t.Errorf("an admin_dir file beside its running version: %v", err)
	}
}

func TestFileProblem(t *testing.T) {
	const path = "/home/alice/.config/pyhost/apps/my app.toml"
	located := &Error{File: path, Line: 3, Key: "threads", Msg: "must be an integer"}
	cases := []struct {
		err  error
		want string
	}{
		{located, path + ":3: threads: must be an integer"},
		{Errors{located, {File: path, Line: 4, Key: "x", Msg: "unknown key"}}, path + ":3: threads: must be an integer\n" + path + ":4: x: unknown key"},
		{policyErr{located}, path + ":3: threads: must be an integer"},
		{&Error{File: "/other.toml", Msg: "m"}, path + ": /other.toml: m"},
		{errors.New("untrusted"), path + ": untrusted"},
		{&Error{Msg: "no file"}, path + ": no file"},
	}
	for _, c := range cases {
		if got := fileProblem(path, c.err); got != c.want {
			t.Errorf("fileProblem(%v):\n got %q\nwant %q", c.err, got, c.want)
		}
	}
}

// checkedAs: paths were checked (one call per path), every time as user.
func checkedAs(checked []string, user string) bool {
	for _, c := range checked {
		if c != user {
			return false
		}
	}
	return len(checked) > 0
}

// TestCheckPathProblemsLocated (D7): a path the owner cannot use is a
// problem of the key naming it, FILE:LINE: KEY: message, one per line; a
// problem shared by several paths is said once.
func TestCheckPathProblemsLocated(t *testing.T) {
	path := "/home/alice/.config/pyhost/apps/blog.toml"
	src := "domains = [\"a.test\"]\ndirectory = \"/srv/blog\"\nscript = \"wsgi.py\"\npython_path = [\"/srv/lib\", \"/srv/gone\"]\n[[static]]\nurl = \"/s/\"\ndir = \"/srv/closed\"\n"
	app, meta, err := ParseAppFile(path, []byte(src), alice, Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"/srv/gone":         "cannot enter /srv/gone: no such file or directory",
		"/srv/closed":       "cannot enter /srv/closed: permission denied",
		"/srv/blog":         "/srv is writable by others",
		"/srv/blog/wsgi.py": "/srv is writable by others",
		alice.Home:          "the user site is writable by others",
	}
	check := func(_ privdrop.Credential, want map[string]uint32) error {
		var msgs []string
		for p := range want {
			if m := bad[p]; m != "" {
				msgs = append(msgs, m)
			}
		}
		if len(msgs) == 0 {
			return nil
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	want := []string{
		path + ": the user site is writable by others",
		path + ":2: directory: /srv is writable by others",
		path + ":4: python_path[1]: cannot enter /srv/gone: no such file or directory",
		path + ":7: static[0].dir: cannot enter /srv/closed: permission denied",
	}
	asked := map[string]uint32{app.Directory: 1, app.Script: 1, app.PythonPath[0]: 1, app.PythonPath[1]: 1, app.Static[0].Dir: 1, alice.Home: 1}
	got := locatePaths(context.Background(), app, meta, IgnoringContext(OneByOne(check)))(alice, asked)
	if got == nil || got.Error() != strings.Join(want, "\n") {
		t.Errorf("located path problems:\n got %v\nwant %s", got, strings.Join(want, "\n"))
	}
	if err := locatePaths(context.Background(), app, meta, IgnoringContext(OneByOne(func(privdrop.Credential, map[string]uint32) error { return nil })))(alice, asked); err != nil {
		t.Errorf("no problem: %v", err)
	}
}

// pyctl check asks about every path of the file in one call (one helper
// process as the owner), each path a set of its own so each answer
// belongs to one key; it used to start one helper per path.
func TestCheckPathsInOneHelper(t *testing.T) {
	f := newCheckFixture(t)
	p := f.write(filepath.Join(f.alice.Home, ".config/pyhost/apps/blog.toml"), f.alice.UID, fmt.Sprintf(goodApp, "alice.test")+"python_path = [\"lib\"]\n")
	var calls [][]map[string]uint32
	check := func(_ privdrop.Credential, wants []map[string]uint32) []error {
		calls = append(calls, wants)
		return make([]error, len(wants))
	}
	if err := CheckAppFile(f.admin, f.alice, p, nil, nil, f.lookup, check); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 {
		t.Fatalf("%d helper calls for one check, want 1", len(calls))
	}
	for _, set := range calls[0] {
		if len(set) != 1 {
			t.Errorf("a set of %d paths, want one path a set: %v", len(set), set)
		}
	}
	if len(calls[0]) < 3 {
		t.Errorf("%d paths checked, want the directory, python_path[0], the home…: %v", len(calls[0]), calls[0])
	}
}

// A path check that never answers (a path on a hung NFS mount) is a
// problem of the file within PathCheckTimeout, naming the paths it was
// asked about; the check does not wait for it.
func TestCheckPathsTimeout(t *testing.T) {
	f := newCheckFixture(t)
	shortPathCheck(t)
	p := f.write(filepath.Join(f.alice.Home, ".config/pyhost/apps/blog.toml"), f.alice.UID, fmt.Sprintf(goodApp, "alice.test")+"directory = \"/srv/nfs/blog\"\n")
	hung := make(chan struct{})
	defer close(hung) // the checker's goroutine ends with the test
	check := func(privdrop.Credential, []map[string]uint32) []error {
		<-hung
		return nil
	}
	err := CheckAppFile(f.admin, f.alice, p, nil, nil, f.lookup, check)
	var e *Error
	if !errors.Is(err, ErrPathCheckTimeout) || !errors.As(err, &e) || e.File != p {
		t.Fatalf("check with a hung path: %v, want ErrPathCheckTimeout, of the file", err)
	}
	for _, want := range []string{"as user ck-alice", "directory /srv/nfs/blog", "50ms"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}

// pyctl check's bound stops the helper too: past it (here, when the
// caller's context ends), the helper that checks paths as the owner,
// stuck as on a hung mount (a stand-in that sleeps), is killed and
// reaped before CheckAppFileContext returns. It used to stay until the
// mount answered.
func TestCheckPathsStopKillsHelper(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("runs the helper as the app's user: needs root")
	}
	f := newCheckFixture(t)
	p := f.write(filepath.Join(f.alice.Home, ".config/pyhost/apps/blog.toml"), f.alice.UID, fmt.Sprintf(goodApp, "alice.test"))
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	fifo := filepath.Join(dir, "pid")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(dir, "helper")
	if err := os.WriteFile(self, []byte("#!/bin/sh\necho $$ >"+fifo+"\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := privdrop.Lookup("root")
	if err != nil {
		t.Fatal(err)
	}
	sp, err := privdrop.NewSpawner()
	if err != nil {
		t.Fatal(err)
	}
	check := func(ctx context.Context, _ privdrop.Credential, wants []map[string]uint32) []error {
		return privdrop.CheckManyAsUserContext(ctx, sp, self, root, wants)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pids := make(chan int, 1)
	go func() {
		defer cancel() // once the helper runs and has said its pid
		data, _ := os.ReadFile(fifo)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		pids <- pid
	}()
	err = CheckAppFileContext(ctx, f.admin, f.alice, p, nil, nil, f.lookup, check)
	if !errors.Is(err, ErrPathCheckTimeout) {
		t.Errorf("check with a hung helper: %v, want ErrPathCheckTimeout", err)
	}
	pid := <-pids
	if pid <= 0 {
		t.Fatalf("helper pid %d", pid)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !os.IsNotExist(err) {
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		t.Errorf("helper %d is still there (%v): %s", pid, err, stat)
	}
}
