package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/pyhost/pyhost/privdrop"
)

// tenants is a fake user database for Discover: each user's home is a
// directory under one temporary root, and every user has the same
// non-root uid (files must be owned by it; as root the test chowns them
// to nobody, as anyone else they are the caller's own).
type tenants struct {
	t     *testing.T
	root  string
	uid   int
	admin Admin
}

func newTenants(t *testing.T, users string) *tenants {
	t.Helper()
	root := t.TempDir()
	os.Chmod(root, 0o755)
	uid := os.Getuid()
	if uid == 0 {
		uid = 65534
	}
	adminDir := filepath.Join(root, "apps.d")
	os.Mkdir(adminDir, 0o755)
	src := fmt.Sprintf("[apps]\nadmin_dir = %q\n%s", adminDir, users)
	admin, err := ParseAdmin(filepath.Join(root, "pyhost.toml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return &tenants{t: t, root: root, uid: uid, admin: admin}
}

func (ts *tenants) lookup(name string) (privdrop.Credential, error) {
	if _, ok := ts.admin.Users[name]; !ok && name != "carol" {
		return privdrop.Credential{}, fmt.Errorf("no user %s", name)
	}
	return privdrop.Credential{Username: name, UID: uint32(ts.uid), GID: uint32(ts.uid), Home: filepath.Join(ts.root, "home", name)}, nil
}

// file writes user's app file name.toml with body, owned by the user.
func (ts *tenants) file(user, name, body string) {
	ts.t.Helper()
	home := filepath.Join(ts.root, "home", user)
	dir := filepath.Join(home, ".config", "pyhost", "apps")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		ts.t.Fatal(err)
	}
	path := filepath.Join(dir, name+".toml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		ts.t.Fatal(err)
	}
	for p := path; p != filepath.Join(ts.root, "home"); p = filepath.Dir(p) {
		os.Chown(p, ts.uid, ts.uid)
	}
}

// adminFile writes a root-owned admin_dir file.
func (ts *tenants) adminFile(name, body string) {
	ts.t.Helper()
	path := filepath.Join(ts.admin.Apps.AdminDir, name+".toml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		ts.t.Fatal(err)
	}
	if os.Getuid() != 0 {
		ts.t.Skip("admin_dir files must be root's: needs root")
	}
}

func (ts *tenants) discover(held Ledger) Discovery {
	return Discover(ts.admin, ts.lookup, nil, Scan{Held: held})
}

func (ts *tenants) discoverRunning(held Ledger, running []App, only string) Discovery {
	return Discover(ts.admin, ts.lookup, nil, Scan{Held: held, Running: running, Only: only})
}

func keysOf(d Discovery) []string {
	var out []string
	for _, a := range d.Apps {
		out = append(out, a.Key())
	}
	sort.Strings(out)
	return out
}

func refusedFor(d Discovery, key string) error {
	for _, r := range d.Refused {
		if r.User+"/"+strings.TrimSuffix(filepath.Base(r.Path), ".toml") == key {
			return r.Err
		}
	}
	return nil
}

const site = "script = \"wsgi.py\"\ndirectory = \"/tmp\"\n"

func claimFile(domain string) string {
	return fmt.Sprintf("domains = [%q]\n%s", domain, site)
}

// U3: the holder in the ledger keeps its domain against a file whose
// name comes first, in the same user or another, and however often the
// daemon restarts (the ledger is what a restart starts from).
func TestDiscoverHolderKeepsItsClaim(t *testing.T) {
	ts := newTenants(t, "[users.alice]\ndomains = [\"alice.test\", \"shared.test\"]\n[users.bob]\ndomains = [\"shared.test\"]\n")
	ts.file("alice", "blog", claimFile("alice.test"))
	ts.file("bob", "site", claimFile("shared.test"))

	first := ts.discover(nil)
	if got := keysOf(first); !reflect.DeepEqual(got, []string{"alice/blog", "bob/site"}) {
		t.Fatalf("first scan runs %v (refused %v)", got, first.Refused)
	}
	held := NextLedger(nil, first.Apps, first.Held)

	// alice adds aaa (sorts before blog) on her own domain, and ant on
	// the domain bob holds (alice sorts before bob).
	ts.file("alice", "aaa", claimFile("alice.test"))
	ts.file("alice", "ant", claimFile("shared.test"))
	for round := 0; round < 3; round++ {
		d := ts.discover(held)
		if got := keysOf(d); !reflect.DeepEqual(got, []string{"alice/blog", "bob/site"}) {
			t.Fatalf("round %d runs %v, want the holders", round, got)
		}
		var ce *ConflictError
		if err := refusedFor(d, "alice/aaa"); !errors.As(err, &ce) || ce.Holder != "alice/blog" {
			t.Errorf("round %d: aaa refused with %v, want a conflict with alice/blog", round, err)
		}
		if err := refusedFor(d, "alice/ant"); !errors.As(err, &ce) || ce.Holder != "bob/site" {
			t.Errorf("round %d: ant refused with %v, want a conflict with bob/site", round, err)
		}
		held = NextLedger(held, d.Apps, d.Held)
	}
	// Without a ledger (the old behaviour) file order would have won.
	if d := ts.discover(Ledger{}); refusedFor(d, "alice/blog") == nil {
		t.Errorf("with an empty ledger, name order should decide (this test's premise)")
	}
}

// A holder whose file breaks keeps its claim (its running version still
// serves it); one whose file is gone, or refused by policy, gives it up.
func TestDiscoverReservationOfABrokenHolder(t *testing.T) {
	ts := newTenants(t, "[users.alice]\ndomains = [\"alice.test\"]\n")
	ts.file("alice", "blog", claimFile("alice.test"))
	d := ts.discover(nil)
	held := NextLedger(nil, d.Apps, d.Held)

	ts.file("alice", "blog", "domains = [\"alice.test\"\nthis is not toml")
	ts.file("alice", "aaa", claimFile("alice.test"))
	d = ts.discover(held)
	if len(d.Apps) != 0 {
		t.Fatalf("aaa took a broken holder's domain: %v", keysOf(d))
	}
	if d.Held[claimKey("alice.test", "/")] != "alice/blog" {
		t.Errorf("the broken holder's claim is not kept: %v", d.Held)
	}
	// The daemon keeps running the old blog: the ledger still says blog.
	running := []App{{Name: "blog", Cred: privdrop.Credential{Username: "alice"}, Domains: []string{"alice.test"}, URLPrefix: "/"}}
	held = NextLedger(held, running, d.Held)
	if held[claimKey("alice.test", "/")] != "alice/blog" {
		t.Fatalf("ledger after a broken reload: %v", held)
	}
	// After a restart nothing of blog runs, and the claim is still kept.
	if next := NextLedger(held, nil, ts.discover(held).Held); next[claimKey("alice.test", "/")] != "alice/blog" {
		t.Errorf("a restart with blog's file broken gave its claim away: %v", next)
	}

	// The file is deleted: the claim is free for aaa.
	os.Remove(filepath.Join(ts.root, "home/alice/.config/pyhost/apps/blog.toml"))
	d = ts.discover(held)
	if got := keysOf(d); !reflect.DeepEqual(got, []string{"alice/aaa"}) {
		t.Errorf("after blog's file is gone: %v (refused %v)", got, d.Refused)
	}
}

func TestDiscoverPolicyRefusedHolderReleases(t *testing.T) {
	ts := newTenants(t, "[users.alice]\ndomains = [\"alice.test\"]\n[users.bob]\ndomains = [\"alice.test\"]\n")
	ts.file("alice", "blog", claimFile("alice.test"))
	d := ts.discover(nil)
	held := NextLedger(nil, d.Apps, d.Held)
	// The admin takes alice.test from alice; bob's file may have it now.
	ts.admin.Users["alice"] = UserPolicy{Domains: []string{"other.test"}}
	ts.file("bob", "site", claimFile("alice.test"))
	d = ts.discover(held)
	if got := keysOf(d); !reflect.DeepEqual(got, []string{"bob/site"}) {
		t.Errorf("after alice lost the domain: %v (refused %v)", got, d.Refused)
	}
	if err := refusedFor(d, "alice/blog"); !errors.Is(err, ErrPolicy) {
		t.Errorf("alice/blog: %v, want a policy refusal", err)
	}
}

// U8 and issue 9 item 15: running apps keep their quota slots; new files
// past the quota are refused naming it, however many there are.
func TestDiscoverQuotaKeepsIncumbents(t *testing.T) {
	ts := newTenants(t, "[users.alice]\ndomains = [\"*.alice.test\"]\nmax_apps = 2\n")
	ts.file("alice", "zz", claimFile("zz.alice.test"))
	ts.file("alice", "zy", claimFile("zy.alice.test"))
	d := ts.discover(nil)
	held := NextLedger(nil, d.Apps, d.Held)
	for i := 0; i < 50; i++ {
		ts.file("alice", fmt.Sprintf("app%02d", i), claimFile(fmt.Sprintf("a%d.alice.test", i)))
	}
	d = ts.discover(held)
	if got := keysOf(d); !reflect.DeepEqual(got, []string{"alice/zy", "alice/zz"}) {
		t.Fatalf("after 50 new files: %v", got)
	}
	var qe *QuotaError
	if err := refusedFor(d, "alice/app00"); !errors.As(err, &qe) || qe.Limit != "max_apps" {
		t.Errorf("app00: %v, want max_apps named", err)
	}
}

// Issue 9 item 2: an admin_dir app owns its name; the user's file of the
// same name is refused, saying so.
func TestDiscoverAdminFileOwnsItsName(t *testing.T) {
	ts := newTenants(t, "[users.bob]\ndomains = [\"bob.test\", \"status.bob.test\"]\n")
	ts.adminFile("status", "user = \"bob\"\n"+claimFile("status.bob.test"))
	ts.file("bob", "status", claimFile("bob.test"))
	d := ts.discover(nil)
	if len(d.Apps) != 1 || !d.Apps[0].AdminDeployed || d.Apps[0].Domains[0] != "status.bob.test" {
		t.Fatalf("apps %+v, want the admin's status only", d.Apps)
	}
	if err := refusedFor(d, "bob/status"); err == nil || !strings.Contains(err.Error(), "deployed by the admin") {
		t.Errorf("bob's own status.toml: %v", err)
	}
}

func TestLedgerSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lib", LedgerFile)
	if l, err := LoadLedger(path); err != nil || len(l) != 0 {
		t.Fatalf("missing ledger: %v %v", l, err)
	}
	l := Ledger{claimKey("Alice.Test", "/"): "alice/blog", claimKey("alice.test", "/api"): "alice/api"}
	if err := l.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadLedger(path)
	if err != nil || !reflect.DeepEqual(got, l) {
		t.Fatalf("round trip: %v %v, want %v", got, err, l)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("ledger mode %v, want 0600", fi.Mode())
	}
	os.WriteFile(path, []byte("{not json"), 0o600)
	if _, err := LoadLedger(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("a corrupt ledger: %v", err)
	}
}

func TestNextLedger(t *testing.T) {
	app := func(key, domain string) App {
		u, n, _ := strings.Cut(key, "/")
		return App{Name: n, Cred: privdrop.Credential{Username: u}, Domains: []string{domain}, URLPrefix: "/"}
	}
	prior := Ledger{"a.test /": "u/a", "b.test /": "u/b", "c.test /": "u/c"}
	kept := Ledger{"b.test /": "u/b", "x.test /": "u/new", "a.test /": "u/a2"}
	got := NextLedger(prior, []App{app("u/a", "a.test")}, kept)
	want := Ledger{"a.test /": "u/a", "b.test /": "u/b"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("NextLedger = %v, want %v (running a; b kept as prior holder; c gone; a new app's claim not applied)", got, want)
	}
}

// A holder whose file stops claiming a domain still serves it until it
// is reloaded: the domain is free for another app only once the holder
// runs without it, so two apps never route the same domain at once.
func TestDiscoverDroppedClaimIsFreeOnceApplied(t *testing.T) {
	ts := newTenants(t, "[users.alice]\ndomains = [\"*.alice.test\"]\n")
	ts.file("alice", "blog", claimFile("old.alice.test"))
	d := ts.discover(nil)
	held := NextLedger(nil, d.Apps, d.Held)
	running := d.Apps

	ts.file("alice", "blog", claimFile("new.alice.test"))
	ts.file("alice", "aaa", claimFile("old.alice.test"))
	d = ts.discover(held)
	var ce *ConflictError
	if err := refusedFor(d, "alice/aaa"); !errors.As(err, &ce) || ce.Holder != "alice/blog" {
		t.Fatalf("aaa took a domain blog still serves: %v", err)
	}
	// Only aaa is applied (pyctl reload aaa was refused; blog not reloaded).
	held = NextLedger(held, running, d.Held)
	if err := refusedFor(ts.discover(held), "alice/aaa"); err == nil {
		t.Fatalf("aaa admitted while blog runs with old.alice.test")
	}
	// blog is reloaded onto its new file: old.alice.test is free.
	for _, a := range d.Apps {
		if a.Key() == "alice/blog" {
			running = []App{a}
		}
	}
	held = NextLedger(held, running, d.Held)
	if got := keysOf(ts.discover(held)); !reflect.DeepEqual(got, []string{"alice/aaa", "alice/blog"}) {
		t.Errorf("after blog runs without the domain: %v", got)
	}
}

// Review of issue 9, finding 2: a holder that runs keeps its claims
// while its file is away (renamed, or the home not mounted), until the
// daemon stops it; a rival's reload meanwhile is refused.
func TestDiscoverRunningHolderKeepsClaimsWithoutItsFile(t *testing.T) {
	ts := newTenants(t, "[users.alice]\ndomains = [\"shared.test\"]\n[users.bob]\ndomains = [\"shared.test\"]\n")
	ts.file("alice", "blog", claimFile("shared.test"))
	d := ts.discover(nil)
	running := d.Apps
	held := NextLedger(nil, running, d.Held)
	os.Rename(filepath.Join(ts.root, "home/alice/.config/pyhost/apps/blog.toml"), filepath.Join(ts.root, "home/alice/.config/pyhost/apps/blog.toml.off"))
	ts.file("bob", "evil", claimFile("shared.test"))
	d = ts.discoverRunning(held, running, "bob/evil")
	var ce *ConflictError
	if err := refusedFor(d, "bob/evil"); !errors.As(err, &ce) || ce.Holder != "alice/blog" {
		t.Errorf("bob's reload while blog runs without its file: %v (apps %v)", err, keysOf(d))
	}
}

// Finding 3: a tenant's own file error (a domain not theirs, a quota
// their edit breaks) is not the admin's policy changing: the running
// settings are still allowed, so the app is not stopped.
func TestRunningAllowed(t *testing.T) {
	ts := newTenants(t, "[users.alice]\ndomains = [\"alice.test\"]\n")
	app := App{Name: "blog", Cred: privdrop.Credential{Username: "alice"}, Domains: []string{"alice.test"}, URLPrefix: "/"}
	if err := RunningAllowed(ts.admin, app); err != nil {
		t.Errorf("allowed settings: %v", err)
	}
	app.Domains = []string{"other.test"}
	if err := RunningAllowed(ts.admin, app); !errors.Is(err, ErrPolicy) {
		t.Errorf("a domain no longer hers: %v", err)
	}
	app.Cred.Username = "zed"
	if err := RunningAllowed(ts.admin, app); !errors.Is(err, ErrPolicy) {
		t.Errorf("an unlisted user: %v", err)
	}
}

// Finding 6: apps that keep running with a broken file count towards
// the quota, so breaking files cannot multiply apps.
func TestDiscoverQuotaCountsBrokenRunningApps(t *testing.T) {
	ts := newTenants(t, "[users.carol]\ndomains = [\"*.carol.test\"]\nmax_apps = 1\n")
	ts.file("carol", "a1", claimFile("a1.carol.test"))
	d := ts.discover(nil)
	running := d.Apps
	held := NextLedger(nil, running, d.Held)
	ts.file("carol", "a1", "this is not toml")
	ts.file("carol", "a2", claimFile("a2.carol.test"))
	d = ts.discoverRunning(held, running, "carol/a2")
	var qe *QuotaError
	if err := refusedFor(d, "carol/a2"); !errors.As(err, &qe) {
		t.Errorf("a2 while a1 runs with a broken file: %v (apps %v)", err, keysOf(d))
	}
}

// Finding 7: a home that is not there (not mounted yet) is not "every
// file gone": the user's running apps keep running and their claims.
func TestDiscoverUnreachableHomeKeepsRunningApps(t *testing.T) {
	ts := newTenants(t, "[users.alice]\ndomains = [\"shared.test\"]\n[users.bob]\ndomains = [\"shared.test\"]\n")
	ts.file("alice", "blog", claimFile("shared.test"))
	d := ts.discover(nil)
	running := d.Apps
	held := NextLedger(nil, running, d.Held)
	home := filepath.Join(ts.root, "home/alice")
	os.Rename(home, home+".away")
	ts.file("bob", "evil", claimFile("shared.test"))
	d = ts.discoverRunning(held, nil, "")
	if err := refusedFor(d, "bob/evil"); err == nil {
		t.Errorf("bob took shared.test while alice's home was away: %v", keysOf(d))
	}
	d = ts.discoverRunning(held, running, "")
	if err := refusedFor(d, "alice/blog"); err == nil || !strings.Contains(err.Error(), "keeps serving") {
		t.Errorf("alice's running blog with her home away: %v", err)
	}
	if NextLedger(held, running, d.Held)[claimKey("shared.test", "/")] != "alice/blog" {
		t.Errorf("the ledger gave shared.test away")
	}
}

// Finding 11: a file nobody loaded does not stand in the way of the one
// being reloaded; it is skipped, not admitted.
func TestDiscoverOnlySkipsNewcomers(t *testing.T) {
	ts := newTenants(t, "[users.alice]\ndomains = [\"shared.test\"]\n[users.bob]\ndomains = [\"shared.test\"]\n")
	ts.file("alice", "squat", claimFile("shared.test"))
	ts.file("bob", "site", claimFile("shared.test"))
	d := ts.discoverRunning(Ledger{}, nil, "bob/site")
	if got := keysOf(d); !reflect.DeepEqual(got, []string{"bob/site"}) || !reflect.DeepEqual(d.Skipped, []string{"alice/squat"}) {
		t.Errorf("pyctl reload site: apps %v, skipped %v", got, d.Skipped)
	}
}
