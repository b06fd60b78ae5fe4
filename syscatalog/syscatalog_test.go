package syscatalog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/privdrop"
)

// users are the fake system's accounts, each with its own uid.
var users = map[string]uint32{"alice": 2001, "bob": 2002}

// host is a fake system: its users have homes under a temporary root,
// and a test sees which questions the catalog asked it.
type host struct {
	t    *testing.T
	root string
	// fileUID owns the app files: the test's own uid, or nobody's as
	// root (app files must be their user's, and root's are refused).
	fileUID int

	mu      sync.Mutex
	pythons []string // FindPython's questions, "user:name"
	checks  []string // CheckAsUser's questions, "user:path"
	deny    map[string]bool
	loads   int
	next    config.Admin // what Load reads
	loadErr error
	problem error
}

func newHost(t *testing.T) *host {
	root := t.TempDir()
	os.Chmod(root, 0o755)
	uid := os.Getuid()
	if uid == 0 {
		uid = 65534
	}
	return &host{t: t, root: root, fileUID: uid, deny: map[string]bool{}}
}

// lookup resolves the fake users; with sameUID every user is the file
// owner (discovery trusts a file its user owns).
func (h *host) lookup(sameUID bool) func(string) (privdrop.Credential, error) {
	return func(name string) (privdrop.Credential, error) {
		for n, uid := range users {
			if name == n || name == fmt.Sprint(uid) {
				if sameUID {
					uid = uint32(h.fileUID)
				}
				return privdrop.Credential{Username: n, UID: uid, GID: uid, Home: filepath.Join(h.root, "home", n)}, nil
			}
		}
		return privdrop.Credential{}, fmt.Errorf("no user %s", name)
	}
}

func (h *host) options(sameUID bool) Options {
	return Options{
		Path:   filepath.Join(h.root, "pyhost.toml"),
		Lookup: h.lookup(sameUID),
		Load: func(string) (config.Admin, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.loads++
			return h.next, h.loadErr
		},
		FindPython: func(name string, cred privdrop.Credential) (string, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.pythons = append(h.pythons, cred.Username+":"+name)
			if name == "nopython" {
				return "", errors.New("nopython: not found on PATH")
			}
			return "/usr/bin/" + name, nil
		},
		PythonKey: func(cred privdrop.Credential) string { return "PATH of " + cred.Username },
		CheckAsUser: func(_ context.Context, cred privdrop.Credential, wants []map[string]uint32) []error {
			h.mu.Lock()
			defer h.mu.Unlock()
			errs := make([]error, len(wants))
			for i, w := range wants {
				for p := range w {
					h.checks = append(h.checks, cred.Username+":"+p)
					if h.deny[p] {
						errs[i] = fmt.Errorf("as user %s: cannot read %s", cred.Username, p)
					}
				}
			}
			return errs
		},
		Problems: func(config.Admin, []config.App) error { return h.problem },
	}
}

// admin parses an admin file of body, with the host's directories.
func (h *host) admin(body string) config.Admin {
	h.t.Helper()
	src := fmt.Sprintf("[daemon]\ndata_dir = %q\n[apps]\nadmin_dir = %q\n%s", filepath.Join(h.root, "data"), filepath.Join(h.root, "apps.d"), body)
	os.MkdirAll(filepath.Join(h.root, "apps.d"), 0o755)
	a, err := config.ParseAdmin(filepath.Join(h.root, "pyhost.toml"), []byte(src))
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

// file writes user's app file name.toml, owned by the user.
func (h *host) file(user, name, body string) string {
	h.t.Helper()
	home := filepath.Join(h.root, "home", user)
	dir := filepath.Join(home, ".config", "pyhost", "apps")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	path := filepath.Join(dir, name+".toml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		h.t.Fatal(err)
	}
	for p := path; p != filepath.Join(h.root, "home"); p = filepath.Dir(p) {
		os.Chown(p, h.fileUID, h.fileUID)
	}
	return path
}

func appFile(domain, python string) string {
	s := fmt.Sprintf("domains = [%q]\nscript = \"app.py\"\ndirectory = \"/tmp\"\nmemory_limit = \"100MiB\"\n", domain)
	if python != "" {
		s += fmt.Sprintf("python = %q\n", python)
	}
	return s
}

func keys(apps []config.App) []string {
	var out []string
	for _, a := range apps {
		out = append(out, a.Key())
	}
	return out
}

const twoUsers = "[users.alice]\ndomains = [\"*.alice.test\"]\nmax_memory = \"1GiB\"\n[users.bob]\ndomains = [\"*.bob.test\"]\n"

// A scan looks each python up once per user and name, and refuses the
// app whose python cannot be found, with the reason, keeping the others.
func TestScanFindsEachPythonOnceAndRefusesAMissingOne(t *testing.T) {
	h := newHost(t)
	admin := h.admin(twoUsers)
	h.file("alice", "a1", appFile("a1.alice.test", ""))
	h.file("alice", "a2", appFile("a2.alice.test", ""))
	bad := h.file("bob", "b1", appFile("b1.bob.test", "nopython"))

	d := Scan(admin, config.Scan{}, h.options(true))
	if got := keys(d.Apps); !reflect.DeepEqual(got, []string{"alice/a1", "alice/a2"}) {
		t.Fatalf("apps %v (refused %v), want alice's two", got, d.Refused)
	}
	for _, a := range d.Apps {
		if a.Python != "/usr/bin/python3" {
			t.Errorf("%s runs %q, want the python found for it", a.Key(), a.Python)
		}
	}
	if want := []string{"alice:python3", "bob:nopython"}; !reflect.DeepEqual(h.pythons, want) {
		t.Errorf("pythons looked up %v, want %v: once per user and name", h.pythons, want)
	}
	if len(d.Refused) != 1 || d.Refused[0].Path != bad || !strings.Contains(d.Refused[0].Err.Error(), "python: nopython: not found") {
		t.Errorf("refused %v, want bob's file for its python", d.Refused)
	}
}

// Who may use the control socket, the default app and each user's
// memory follow the admin config in force: Adopt replaces it whole.
func TestPolicyFollowsTheAdoptedConfig(t *testing.T) {
	h := newHost(t)
	c := New(h.admin(twoUsers+"[proxy]\ndefault_app = \"alice/www\"\n"), config.Discovery{}, nil, h.options(false))
	if err := c.Allowed(users["alice"]); err != nil {
		t.Errorf("alice, listed: %v", err)
	}
	if err := c.Allowed(3000); !errors.Is(err, control.ErrAccessDenied) || !strings.Contains(err.Error(), "not a user the admin allows") {
		t.Errorf("an unlisted uid: %v, want access denied", err)
	}
	if got := c.DefaultApp(); got != "alice/www" {
		t.Errorf("default app %q", got)
	}
	if got := c.UserMaxMemory("alice"); got != 1<<30 {
		t.Errorf("alice's max_memory %d, want 1G", got)
	}
	if got := c.UserMaxMemory("bob"); got != 0 {
		t.Errorf("bob's max_memory %d, want none", got)
	}

	c.Adopt(h.admin("[users.bob]\ndomains = [\"*.bob.test\"]\nmax_memory = \"2GiB\"\n"))
	if err := c.Allowed(users["alice"]); err == nil {
		t.Error("alice, no longer listed, is still allowed")
	}
	if err := c.Allowed(users["bob"]); err != nil {
		t.Errorf("bob: %v", err)
	}
	if got := c.DefaultApp(); got != "" {
		t.Errorf("default app %q after a config without one", got)
	}
	if got := c.UserMaxMemory("bob"); got != 2<<30 {
		t.Errorf("bob's max_memory %d, want 2G", got)
	}
	if a, err := c.ACME(); a != nil || err != nil {
		t.Errorf("ACME without [proxy] acme: %v, %v", a, err)
	}
}

// A tenant's reload judges by the config in force; only reload-config
// re-reads it, and refuses what a start would refuse.
func TestRescanRereadsOnlyWhenAsked(t *testing.T) {
	h := newHost(t)
	inForce := h.admin(twoUsers)
	h.file("alice", "a1", appFile("a1.alice.test", ""))
	h.file("bob", "b1", appFile("b1.bob.test", ""))
	c := New(inForce, config.Discovery{}, nil, h.options(true))

	admin, d, err := c.Rescan(config.Scan{}, false)
	if err != nil || h.loads != 0 || !reflect.DeepEqual(admin.Users, inForce.Users) {
		t.Fatalf("rescan without reread: %v, %d loads", err, h.loads)
	}
	if got := keys(d.Apps); !reflect.DeepEqual(got, []string{"alice/a1", "bob/b1"}) {
		t.Errorf("apps %v", got)
	}

	h.next = h.admin("[users.bob]\ndomains = [\"*.bob.test\"]\n")
	admin, d, err = c.Rescan(config.Scan{}, true)
	if err != nil || h.loads != 1 {
		t.Fatalf("reread: %v, %d loads", err, h.loads)
	}
	if _, ok := admin.Users["alice"]; ok {
		t.Error("the re-read config still lists alice")
	}
	if got := keys(d.Apps); !reflect.DeepEqual(got, []string{"bob/b1"}) {
		t.Errorf("apps of the re-read config %v, want bob's alone", got)
	}
	if c.Allowed(uint32(h.fileUID)) != nil {
		t.Error("a rescan put the re-read config in force before Adopt")
	}

	h.problem = errors.New("proxy.user: no such user")
	if _, _, err := c.Rescan(config.Scan{}, true); err == nil || err.Error() != "proxy.user: no such user" {
		t.Errorf("a config a start would refuse: %v", err)
	}
	if _, _, err := c.Rescan(config.Scan{}, false); err != nil {
		t.Errorf("a tenant's reload is not judged by the admin file's problems: %v", err)
	}
	h.loadErr = errors.New("pyhost.toml:3: bad")
	if _, _, err := c.Rescan(config.Scan{}, true); err == nil || !strings.Contains(err.Error(), "bad") {
		t.Errorf("a broken admin file: %v", err)
	}
}

// pyctl check reads the file as its caller first: the daemon never
// judges, or quotes, a file its caller could not read.
func TestCheckFileAsTheCaller(t *testing.T) {
	h := newHost(t)
	opts := h.options(true)
	// The files are the test's uid's, alice's here: that uid is alice.
	byName := opts.Lookup
	opts.Lookup = func(name string) (privdrop.Credential, error) {
		if name == fmt.Sprint(h.fileUID) {
			name = "alice"
		}
		return byName(name)
	}
	c := New(h.admin(twoUsers), config.Discovery{}, nil, opts)
	path := h.file("alice", "a1", appFile("a1.alice.test", ""))
	alice, _ := h.lookup(true)("alice")

	if err := c.CheckFile(alice.UID, path, nil, nil); err != nil {
		t.Errorf("a good file: %v", err)
	}
	if len(h.checks) == 0 || h.checks[0] != "alice:"+path {
		t.Errorf("checks %v, want the caller's read of the file first", h.checks)
	}
	h.deny[path] = true
	if err := c.CheckFile(alice.UID, path, nil, nil); err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Errorf("a file its caller cannot read: %v", err)
	}
	delete(h.deny, path)
	other := h.file("alice", "a2", appFile("a2.bob.test", ""))
	if err := c.CheckFile(alice.UID, other, nil, nil); err == nil || !strings.Contains(err.Error(), "a2.bob.test") {
		t.Errorf("a domain alice may not claim: %v", err)
	}
	// A uid the user database does not know (it changed since the
	// admin listed the user): said as that, no file judged.
	if err := c.CheckFile(4242424, path, nil, nil); !errors.Is(err, control.ErrAccessDenied) || !strings.Contains(err.Error(), "uid 4242424 cannot be looked up") {
		t.Errorf("an unknown uid: %v", err)
	}
}

// The ledger starts as NextLedger of the saved one and the start-up scan,
// and every change is kept in data_dir.
func TestClaimsLedger(t *testing.T) {
	h := newHost(t)
	admin := h.admin(twoUsers)
	h.file("alice", "a1", appFile("a1.alice.test", ""))
	d := Scan(admin, config.Scan{}, h.options(true))
	c := New(admin, d, nil, h.options(true))
	start := c.Initial()
	if got := keys(start.Apps); !reflect.DeepEqual(got, []string{"alice/a1"}) {
		t.Fatalf("initial apps %v", got)
	}
	if !reflect.DeepEqual(start.Claims, config.NextLedger(nil, d.Apps, d.Held)) || len(start.Claims) == 0 {
		t.Errorf("initial claims %v", start.Claims)
	}
	if err := os.MkdirAll(admin.Daemon.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := c.SaveClaims(start.Claims); err != nil {
		t.Fatal(err)
	}
	saved, err := config.LoadLedger(ClaimsFile(admin))
	if err != nil || !reflect.DeepEqual(saved, start.Claims) {
		t.Errorf("saved %v (%v), want %v", saved, err, start.Claims)
	}
	if c.Mode() != "system" || !c.Rereads() || !c.KeepFailed() {
		t.Error("system mode re-reads its files and keeps serving past a failed app")
	}
	os.RemoveAll(admin.Daemon.DataDir)
	os.WriteFile(admin.Daemon.DataDir, nil, 0o600) // a file where the directory was
	if err := c.SaveClaims(start.Claims); err == nil || !strings.Contains(err.Error(), ClaimsFile(admin)) {
		t.Errorf("a ledger that cannot be saved: %v, want its path said", err)
	}
}
