package master

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/supervisor"
)

var (
	root     = control.Caller{UID: 0}
	aliceC   = control.Caller{UID: alice.UID}
	bobC     = control.Caller{UID: bob.UID}
	mallory  = control.Caller{UID: 3}
	ctxBg    = context.Background()
	noLines  = func(string) {}
	listed12 = map[uint32]bool{alice.UID: true, bob.UID: true}
)

// Every control verb asks authorize; its rules, in one table.
func TestAuthorize(t *testing.T) {
	const owner = 1000
	m := &Master{catalog: &fakeCatalog{listed: map[uint32]bool{alice.UID: true, owner: true}}, ownerUID: owner}
	blog := testApp(alice, "blog")
	shop := testApp(bob, "shop")
	deployed := testApp(alice, "status")
	deployed.AdminDeployed = true
	for _, tc := range []struct {
		name string
		c    control.Caller
		v    verb
		app  *config.App
		want error // nil, or the error it wraps
	}{
		{"root sees any app", root, seeApp, &shop, nil},
		{"root changes an admin's app", root, changeApp, &deployed, nil},
		{"root reloads the config", root, daemonConfig, nil, nil},
		{"a tenant sees their app", aliceC, seeApp, &blog, nil},
		{"a tenant changes their app", aliceC, changeApp, &blog, nil},
		{"a tenant does not see another's", aliceC, seeApp, &shop, control.ErrNoSuchApp},
		{"a tenant does not change another's", aliceC, changeApp, &shop, control.ErrNoSuchApp},
		{"a tenant sees the admin's app for them", aliceC, seeApp, &deployed, nil},
		{"a tenant does not change the admin's app for them", aliceC, changeApp, &deployed, control.ErrAccessDenied},
		{"a tenant checks files", aliceC, checkFile, nil, nil},
		{"a user not listed sees nothing", mallory, seeApp, nil, control.ErrAccessDenied},
		{"a user not listed checks nothing", mallory, checkFile, nil, control.ErrAccessDenied},
		{"the daemon's user sees every app", control.Caller{UID: owner}, seeApp, &shop, nil},
		{"the daemon's user reopens its logs", control.Caller{UID: owner}, daemonOwn, nil, nil},
		{"a tenant does not reopen the daemon's logs", aliceC, daemonOwn, nil, control.ErrAccessDenied},
		{"the daemon's user does not reload the config", control.Caller{UID: owner}, daemonConfig, nil, control.ErrAccessDenied},
		{"a tenant does not reload the config", aliceC, daemonConfig, nil, control.ErrAccessDenied},
	} {
		err := m.authorize(tc.c, tc.v, tc.app)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestExpressCatalog(t *testing.T) {
	app := testApp(alice, "blog")
	var c Catalog = NewExpress(app)
	if got := c.Initial(); !reflect.DeepEqual(got.Apps, []config.App{app}) || got.Refused != nil || got.Claims != nil {
		t.Errorf("initial %+v, want the one app", got)
	}
	if c.Mode() != "serve" || c.Rereads() || c.KeepFailed() || c.DefaultApp() != "" {
		t.Error("serve's settings are fixed, and its app failing stops it")
	}
	if err := c.Allowed(12345); err != nil {
		t.Errorf("whoever reaches serve's socket may use it: %v", err)
	}
	if _, _, err := c.Rescan(config.Scan{}, true); err == nil {
		t.Error("serve has no config to rescan")
	}
	if err := c.CheckFile(alice.UID, "/x.toml", nil, nil); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("check: %v", err)
	}
	if err := c.SaveClaims(config.Ledger{"a.test /": "daemon/blog"}); err != nil {
		t.Error(err)
	}
	c.Adopt(config.Admin{})
	if a, err := c.ACME(); a != nil || err != nil {
		t.Errorf("acme %v %v", a, err)
	}
	if _, ok := c.(UserLimiter); ok {
		t.Error("serve sets no per-user limits")
	}
}

// In express mode the settings are fixed: reload and restart roll the
// app onto the ones it has, stop lasts until start, check and
// reload-config have nothing to judge by.
func TestExpressVerbs(t *testing.T) {
	app := testApp(alice, "blog")
	m, st := newTestMaster(t, NewExpress(app))
	rows, err := m.Status(ctxBg, root, "")
	if err != nil || len(rows) != 1 || rows[0].Name != "blog" || rows[0].State != "running" || len(rows[0].Workers) != 1 {
		t.Fatalf("status %+v, %v", rows, err)
	}
	if err := m.Reload(ctxBg, root, "blog", noLines); err != nil {
		t.Fatal(err)
	}
	if n := st.pids.Load(); n != 2 {
		t.Errorf("%d workers started, want a second one for the reload", n)
	}
	if err := m.Act(ctxBg, root, control.ActionRestart, "", noLines); err != nil {
		t.Fatal(err)
	}
	var out lines
	if err := m.Act(ctxBg, root, control.ActionStop, "blog", out.add); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "stopped until pyctl start (or until serve exits)") {
		t.Errorf("stop said %q", out.String())
	}
	if s := state(t, m, "daemon/blog"); s != supervisor.AppStopped {
		t.Errorf("state %s after stop", s)
	}
	if err := m.Act(ctxBg, root, control.ActionStart, "blog", noLines); err != nil {
		t.Fatal(err)
	}
	if s := state(t, m, "daemon/blog"); s != supervisor.AppRunning {
		t.Errorf("state %s after start", s)
	}
	if err := m.Check(ctxBg, root, "/tmp/x.toml"); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("check: %v, want it said as it is", err)
	}
	if err := m.ReloadConfig(ctxBg, root, noLines); err == nil || !strings.Contains(err.Error(), "express mode") {
		t.Errorf("reload-config: %v", err)
	}
	info, err := m.Daemon(ctxBg, root)
	if err != nil || info.Mode != "serve" {
		t.Errorf("daemon %+v %v", info, err)
	}
	if tb := m.table(); len(tb.Apps) != 1 || tb.Default != "" {
		t.Errorf("table %+v", tb)
	}
	if err := m.Act(ctxBg, root, control.Action("dance"), "blog", noLines); err == nil {
		t.Error("an unknown action")
	}
}

// systemCatalog is a fake system mode of alice's blog and bob's shop,
// with a refused file of alice's.
func systemCatalog(apps ...config.App) *fakeCatalog {
	if apps == nil {
		apps = []config.App{testApp(alice, "blog"), testApp(bob, "shop")}
	}
	for i := range apps {
		apps[i].File = apps[i].Cred.Home + "/.config/pyhost/apps/" + apps[i].Name + ".toml"
	}
	return &fakeCatalog{
		mode: "system", rereads: true, listed: listed12,
		initial: Initial{Apps: apps, Refused: []config.Refusal{{Path: alice.Home + "/.config/pyhost/apps/draft.toml", User: alice.Username, Err: errors.New("draft.toml:1: script is missing")}}},
		admin: config.Admin{Path: "/etc/pyhost/pyhost.toml", Users: map[string]config.UserPolicy{
			alice.Username: {Domains: []string{"*.test"}}, bob.Username: {Domains: []string{"*.test"}},
		}},
	}
}

func keysOf(rows []control.AppStatus) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.User+"/"+r.Name+":"+r.State)
	}
	return out
}

// A tenant sees their own apps and refused files, root everything, a
// user the admin does not list nothing.
func TestStatusIsEachTenantsOwn(t *testing.T) {
	m, _ := newTestMaster(t, systemCatalog())
	for _, tc := range []struct {
		c    control.Caller
		name string
		want []string
	}{
		{aliceC, "", []string{"daemon/blog:running", "daemon/draft:refused"}},
		{bobC, "", []string{"bin/shop:running"}},
		{root, "", []string{"daemon/blog:running", "bin/shop:running", "daemon/draft:refused"}},
		{aliceC, "blog", []string{"daemon/blog:running"}},
		{aliceC, "draft", []string{"daemon/draft:refused"}},
		{root, "bin/shop", []string{"bin/shop:running"}},
	} {
		rows, err := m.Status(ctxBg, tc.c, tc.name)
		if err != nil {
			t.Errorf("uid %d status %q: %v", tc.c.UID, tc.name, err)
			continue
		}
		if got := keysOf(rows); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("uid %d status %q: %v, want %v", tc.c.UID, tc.name, got, tc.want)
		}
	}
	if _, err := m.Status(ctxBg, bobC, "blog"); !errors.Is(err, control.ErrNoSuchApp) {
		t.Errorf("bob asking for alice's blog: %v", err)
	}
	if _, err := m.Status(ctxBg, mallory, ""); !errors.Is(err, control.ErrAccessDenied) {
		t.Errorf("a user not listed: %v", err)
	}
	m.appLine("daemon/blog", "hello from the test")
	var got []string
	if err := m.Logs(ctxBg, aliceC, "blog", 100, false, func(l string) error { got = append(got, l); return nil }); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(got, "\n"), "hello from the test") {
		t.Errorf("logs %q", got)
	}
	if err := m.Logs(ctxBg, bobC, "blog", 10, false, func(string) error { return nil }); !errors.Is(err, control.ErrNoSuchApp) {
		t.Errorf("bob reading alice's log: %v", err)
	}
	if err := m.AccessLogs(ctxBg, aliceC, "blog", 10, false, func(string) error { return nil }); err == nil || !strings.Contains(err.Error(), "off") {
		t.Errorf("per-app access logs off: %v", err)
	}
	if _, err := m.Metrics(ctxBg, aliceC, ""); err == nil || !strings.Contains(err.Error(), "metrics are off") {
		t.Errorf("metrics off: %v", err)
	}
}

// pyctl reload APP in system mode re-reads the one file and does what it
// says now: roll, refuse, stop, start.
func TestReloadFromFile(t *testing.T) {
	cat := systemCatalog()
	m, _ := newTestMaster(t, cat)
	blog := cat.initial.Apps[0]

	changed := blog
	changed.Processes = 2
	cat.next = config.Discovery{Apps: []config.App{changed}}
	if err := m.Reload(ctxBg, aliceC, "blog", noLines); err != nil {
		t.Fatal(err)
	}
	if got := m.set.config(blog.Key()).Processes; got != 2 {
		t.Errorf("processes %d after the roll, want the file's 2", got)
	}
	if s := cat.scans[len(cat.scans)-1]; s.Only != blog.Key() || len(s.Running) != 2 {
		t.Errorf("rescan asked %+v, want about the one app, against both running", s)
	}
	if len(cat.saved) == 0 || cat.saved[len(cat.saved)-1]["blog.test "] != blog.Key() {
		t.Errorf("claims saved %v", cat.saved)
	}

	broken := changed
	broken.Directory = "/srv/broken"
	cat.next = config.Discovery{Apps: []config.App{broken}}
	err := m.Reload(ctxBg, aliceC, "blog", noLines)
	var rerr *control.ReloadError
	if !errors.As(err, &rerr) || !strings.Contains(rerr.Detail, "No module named 'broken'") {
		t.Fatalf("a broken import: %v", err)
	}
	if got := m.set.config(blog.Key()).Directory; got != blog.Directory {
		t.Errorf("directory %q after a failed roll, want the running one", got)
	}

	cat.next = config.Discovery{Refused: []config.Refusal{{Path: blog.File, User: alice.Username, Err: errors.New("blog.toml:2: bad")}}}
	if err := m.Reload(ctxBg, aliceC, "blog", noLines); !errors.As(err, &rerr) || !strings.Contains(rerr.Reason, "refused") {
		t.Errorf("a refused file: %v", err)
	}
	if s := state(t, m, blog.Key()); s != supervisor.AppRunning {
		t.Errorf("state %s after a refused file, want running on", s)
	}

	if err := m.Reload(ctxBg, bobC, "daemon/blog", noLines); !errors.Is(err, control.ErrNoSuchApp) {
		t.Errorf("bob reloading alice's app: %v", err)
	}
	if err := m.Reload(ctxBg, mallory, "blog", noLines); !errors.Is(err, control.ErrAccessDenied) {
		t.Errorf("a user not listed: %v", err)
	}

	wiki := testApp(alice, "wiki")
	wiki.File = alice.Home + "/.config/pyhost/apps/wiki.toml"
	cat.next = config.Discovery{Apps: []config.App{wiki}}
	var out lines
	if err := m.Reload(ctxBg, aliceC, "wiki", out.add); err != nil {
		t.Fatal(err)
	}
	if s := state(t, m, wiki.Key()); s != supervisor.AppRunning || !strings.Contains(out.String(), "new app file") {
		t.Errorf("a new file: state %s, said %q", s, out.String())
	}

	cat.next = config.Discovery{}
	if err := m.Reload(ctxBg, aliceC, "wiki", noLines); err != nil {
		t.Fatal(err)
	}
	if m.set.get(wiki.Key()) != nil {
		t.Error("the app of a deleted file still runs")
	}
	if err := m.Reload(ctxBg, aliceC, "nothing", noLines); !errors.Is(err, control.ErrNoSuchApp) {
		t.Errorf("no file, no app: %v", err)
	}

	cat.rescanErr = errors.New("pyhost.toml: gone")
	if err := m.Reload(ctxBg, aliceC, "blog", noLines); !errors.As(err, &rerr) || !strings.Contains(rerr.Reason, "cannot be read") {
		t.Errorf("an unreadable admin config: %v", err)
	}
}

// An app the admin deployed for a tenant is theirs to see, root's to
// change.
func TestAdminDeployedAppIsRootsToChange(t *testing.T) {
	status := testApp(alice, "status")
	status.AdminDeployed = true
	cat := systemCatalog(status)
	m, _ := newTestMaster(t, cat)
	if _, err := m.Status(ctxBg, aliceC, "status"); err != nil {
		t.Errorf("status: %v", err)
	}
	for _, a := range []control.Action{control.ActionStop, control.ActionStart, control.ActionRestart} {
		if err := m.Act(ctxBg, aliceC, a, "status", noLines); !errors.Is(err, control.ErrAccessDenied) || !strings.Contains(err.Error(), "deployed by the admin") {
			t.Errorf("%s: %v", a, err)
		}
	}
	cat.next = config.Discovery{Apps: []config.App{status}}
	if err := m.Reload(ctxBg, aliceC, "status", noLines); !errors.Is(err, control.ErrAccessDenied) {
		t.Errorf("reload: %v", err)
	}
	if err := m.Act(ctxBg, root, control.ActionRestart, "daemon/status", noLines); err != nil {
		t.Errorf("root's restart: %v", err)
	}
}

// reload-config applies the whole scan: new apps start, changed ones
// roll, gone ones stop, refused ones run on as they were.
func TestReloadConfig(t *testing.T) {
	apps := []config.App{testApp(alice, "blog"), testApp(alice, "old"), testApp(bob, "shop"), testApp(bob, "keep")}
	cat := systemCatalog(apps...)
	m, _ := newTestMaster(t, cat)
	changed := apps[0]
	changed.Threads = 4
	wiki := testApp(alice, "wiki")
	cat.def = "bin/shop"
	cat.next = config.Discovery{
		Apps:    []config.App{changed, apps[2], wiki},
		Refused: []config.Refusal{{Path: apps[3].File, User: bob.Username, Err: errors.New("keep.toml:1: bad")}},
	}
	if err := m.ReloadConfig(ctxBg, aliceC, noLines); !errors.Is(err, control.ErrAccessDenied) {
		t.Errorf("a tenant's reload-config: %v", err)
	}
	var out lines
	if err := m.ReloadConfig(ctxBg, root, out.add); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "1 started, 1 rolled, 1 stopped, 1 unchanged; 1 app files refused, 0 failed to start or roll") {
		t.Errorf("said %q", out.String())
	}
	for key, want := range map[string]supervisor.AppState{"daemon/blog": supervisor.AppRunning, "daemon/wiki": supervisor.AppRunning, "bin/shop": supervisor.AppRunning, "bin/keep": supervisor.AppRunning, "daemon/old": ""} {
		if s := state(t, m, key); s != want {
			t.Errorf("%s: %q, want %q", key, s, want)
		}
	}
	if got := m.set.config("daemon/blog").Threads; got != 4 {
		t.Errorf("blog's threads %d, want the file's 4", got)
	}
	if len(cat.adopted) != 1 || m.table().Default != "bin/shop" {
		t.Errorf("adopted %d configs, default %q", len(cat.adopted), m.table().Default)
	}
	info, _ := m.Daemon(ctxBg, aliceC)
	if info.Mode != "system" || info.LastReload == nil || !info.LastReload.OK {
		t.Errorf("daemon %+v", info)
	}

	cat.rescanErr = errors.New("pyhost.toml:3: bad")
	if err := m.ReloadConfig(ctxBg, root, noLines); err == nil || !strings.Contains(err.Error(), "nothing changed") {
		t.Errorf("a broken admin file: %v", err)
	}
	if info, _ := m.Daemon(ctxBg, aliceC); info.LastReload == nil || info.LastReload.OK || info.LastReload.Error != "" {
		t.Errorf("a tenant's view of the failed reload: %+v", info.LastReload)
	}
	if info, _ := m.Daemon(ctxBg, root); info.LastReload == nil || !strings.Contains(info.LastReload.Error, "bad") {
		t.Errorf("root's view of the failed reload: %+v", info.LastReload)
	}
	cat.rescanErr = nil

	// The policy no longer lets bob run: his apps stop though their
	// files are only refused.
	cat.admin.Users = map[string]config.UserPolicy{alice.Username: {Domains: []string{"*.test"}}}
	cat.next = config.Discovery{Apps: []config.App{changed, wiki}, Refused: []config.Refusal{{Path: apps[2].File, User: bob.Username, Err: errors.New("not listed")}}}
	out = lines{}
	if err := m.ReloadConfig(ctxBg, root, out.add); err != nil {
		t.Fatal(err)
	}
	if m.set.get("bin/shop") != nil || !strings.Contains(out.String(), "no longer listed") {
		t.Errorf("bob's app runs on, said %q", out.String())
	}
}

// pyctl check asks the catalog about the file, against the apps as they
// run; a refusal is the file's, not the call's.
func TestCheck(t *testing.T) {
	cat := systemCatalog()
	m, _ := newTestMaster(t, cat)
	if err := m.Check(ctxBg, aliceC, "/home/x.toml"); err != nil {
		t.Fatal(err)
	}
	if len(cat.checked) != 1 || cat.checked[0] != "/home/x.toml" || len(cat.running[0]) != 2 {
		t.Errorf("checked %v against %d apps", cat.checked, len(cat.running[0]))
	}
	cat.checkErr = errors.New("x.toml:1: domains: not yours")
	var rerr *control.ReloadError
	if err := m.Check(ctxBg, aliceC, "/home/x.toml"); !errors.As(err, &rerr) || rerr.App != "x.toml" || !strings.Contains(rerr.Detail, "not yours") {
		t.Errorf("a refused file: %v", err)
	}
	if err := m.Check(ctxBg, mallory, "/home/x.toml"); !errors.Is(err, control.ErrAccessDenied) {
		t.Errorf("a user not listed: %v", err)
	}
}

func TestReopenLogsIsTheDaemonsUsers(t *testing.T) {
	m, _ := newTestMaster(t, systemCatalog())
	if err := m.ReopenLogs(ctxBg, aliceC); !errors.Is(err, control.ErrAccessDenied) {
		t.Errorf("a tenant: %v", err)
	}
	if err := m.ReopenLogs(ctxBg, root); err != nil {
		t.Errorf("root: %v", err)
	}
}

func TestStopLasts(t *testing.T) {
	a := testApp(alice, "blog")
	if got := stopLasts(a, false); !strings.Contains(got, "serve exits") {
		t.Errorf("serve: %q", got)
	}
	if got := stopLasts(a, true); got != "stopped until the next daemon restart" {
		t.Errorf("no file: %q", got)
	}
	a.File = "/f.toml"
	if got := stopLasts(a, true); !strings.Contains(got, "set enabled = false in /f.toml") {
		t.Errorf("a file: %q", got)
	}
	a.Disabled = true
	if got := stopLasts(a, true); !strings.Contains(got, "keeps it stopped across daemon restarts") {
		t.Errorf("disabled: %q", got)
	}
}

func TestFewLines(t *testing.T) {
	if got := fewLines("a\nb", 2, ""); got != "a\nb" {
		t.Errorf("short: %q", got)
	}
	if got := fewLines("a\nb\nc\nd\n", 2, ""); got != "a\nb\n… 2 more lines (pyctl logs has the rest)" {
		t.Errorf("long: %q", got)
	}
	if got := fewLines("a\nb\nc", 1, checkHint("/f.toml")); !strings.HasSuffix(got, "(pyctl check /f.toml lists them all)") {
		t.Errorf("hint: %q", got)
	}
	if got := lastLines([]string{"1", "2", "3"}, 2); !reflect.DeepEqual(got, []string{"2", "3"}) {
		t.Errorf("last: %v", got)
	}
}

func TestReloadSummary(t *testing.T) {
	s := reloadSummary{started: 1, rolled: 2, unchanged: 1}
	if s.err() != nil || s.String() != "1 started, 2 rolled, 0 stopped, 1 unchanged; 0 app files refused, 0 failed to start or roll" {
		t.Errorf("%q %v", s, s.err())
	}
	s.refused = 3
	if s.err() != nil {
		t.Error("a refused file is no failure of the reload")
	}
	s.failed = 1
	if err := s.err(); err == nil || !strings.Contains(err.Error(), "1 apps failed") {
		t.Errorf("failed: %v", err)
	}
	s.certs = errors.New("cert.pem: bad")
	if err := s.err(); err == nil || !strings.Contains(err.Error(), "certificates were not reloaded") || !strings.Contains(s.String(), "cert.pem: bad") {
		t.Errorf("certs and failed: %v", err)
	}
	s.failed = 0
	if err := s.err(); !errors.Is(err, s.certs) {
		t.Errorf("certs: %v", err)
	}
	if count(1, "pair") != "1 pair" || count(2, "pair") != "2 pairs" {
		t.Error("count")
	}
}
