package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// System mode, as root, with real users the test creates: two permitted
// (alice, bob) and one not (mallory).
const (
	alice   = "pyh-alice"
	bob     = "pyh-bob"
	mallory = "pyh-mallory"
)

// probeApp reports who it runs as and what it can reach of others.
const probeApp = `
import json, os, socket, signal

def probe(environ):
    qs = dict(p.split("=", 1) for p in environ["QUERY_STRING"].split("&") if "=" in p)
    out = {"sockets": {}, "log": None, "kill": None}
    for root, dirs, files in os.walk(qs["state"], onerror=lambda e: out["sockets"].setdefault(e.filename, "walk: " + e.strerror)):
        for f in files:
            path = os.path.join(root, f)
            if not f.endswith(".sock"):
                continue
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(path)
                out["sockets"][path] = "connected"
            except OSError as e:
                out["sockets"][path] = e.strerror
            finally:
                s.close()
    try:
        open(qs["log"]).read()
        out["log"] = "read"
    except OSError as e:
        out["log"] = e.strerror
    try:
        os.kill(int(qs["pid"]), signal.SIGTERM)
        out["kill"] = "killed"
    except OSError as e:
        out["kill"] = e.strerror
    return out

def application(environ, start_response):
    if environ["PATH_INFO"] == "/probe":
        data = probe(environ)
    else:
        status = open("/proc/self/status").read()
        data = {
            "app": os.environ.get("APP_NAME"),
            "pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
            "nnp": [l.split()[1] for l in status.splitlines() if l.startswith("NoNewPrivs:")][0],
            "canary": os.environ.get("PYHOST_CANARY"),
            "script_name": environ["SCRIPT_NAME"],
        }
    body = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
`

type sysUser struct {
	name     string
	uid, gid int
	home     string
}

var (
	// usersMu serializes useradd in this run (which fails rather than
	// waits while another holds /etc/passwd's lock; other runs take the
	// machine's "passwd" lock too) and guards usersHeld.
	usersMu sync.Mutex
	// usersHeld names, by user, the test of this run holding it.
	usersHeld = map[string]string{}
)

func makeUser(t *testing.T, name string) sysUser {
	t.Helper()
	holdUser(t, name)
	usersMu.Lock()
	defer usersMu.Unlock()
	if exec.Command("id", "-u", name).Run() != nil {
		release := lockMachine(t, "passwd")
		out, err := exec.Command("useradd", "--create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
		release()
		if err != nil {
			t.Fatalf("useradd %s: %v %s", name, err, out)
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// Start from a clean app directory every run.
	os.RemoveAll(filepath.Join(u.HomeDir, ".config"))
	os.Chmod(u.HomeDir, 0o755)
	return sysUser{name, uid, gid, u.HomeDir}
}

// holdUser makes t the only test on the machine using the user name
// until t ends, in this run and in any other run of the suite (CI beside
// a developer's make test): the user's home is the machine's, and
// makeUser resets its ~/.config. Another run deploying there meanwhile
// put its app under t's daemon (TestTrustWorldWritableDirectory was
// served another run's TestTrustUserSitePth app). A test whose own test,
// or parent, holds the user goes on; within a run, tests that share a
// user never overlap anyway (harness_test.go).
func holdUser(t *testing.T, name string) {
	t.Helper()
	usersMu.Lock()
	holder, held := usersHeld[name]
	usersMu.Unlock()
	if held && strings.HasPrefix(t.Name()+"/", holder+"/") {
		return
	}
	release := lockMachine(t, "user-"+name)
	usersMu.Lock()
	usersHeld[name] = t.Name()
	usersMu.Unlock()
	t.Cleanup(func() {
		usersMu.Lock()
		delete(usersHeld, name)
		usersMu.Unlock()
		release()
	})
}

// writeOwned writes a file as if its owner had: owned by u, mode perm,
// with every directory it needs created the same way.
func writeOwned(t *testing.T, u sysUser, path, content string, perm os.FileMode) {
	t.Helper()
	for dir := filepath.Dir(path); dir != u.home && strings.HasPrefix(dir, u.home); dir = filepath.Dir(dir) {
		defer func(d string) { os.Chown(d, u.uid, u.gid) }(dir)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, perm)
	os.Chown(path, u.uid, u.gid)
}

var (
	portsMu sync.Mutex
	ports   = map[string]bool{} // handed out by freePort
)

// freePort returns a loopback address that was free a moment ago and
// that no other test of this run got from freePort.
func freePort(t *testing.T) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if !ports[addr] {
			ports[addr] = true
			return addr
		}
	}
}

func appFile(domains, extra string) string {
	return fmt.Sprintf("domains = [%s]\nscript = \"~/site/wsgi.py\"\ndirectory = \"~/site\"\n%s\n", domains, extra)
}

func TestSystemMode(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("system mode runs apps as other users: needs root")
	}
	a, b, m := makeUser(t, alice), makeUser(t, bob), makeUser(t, mallory)
	base, err := os.MkdirTemp(baseDir, "system-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o755)
	addr := freePort(t)
	adminDir := filepath.Join(base, "apps.d")
	os.MkdirAll(adminDir, 0o755)
	admin := fmt.Sprintf(`
[proxy]
listen = [%q]
user = %q

[daemon]
state_dir = "%s/run"
log_dir = "%s/log"
data_dir = "%s/lib"

[apps]
admin_dir = %q

[users.%s]
domains = ["alice.test", "*.alice.test"]
max_apps = 6

[users.%s]
domains = ["bob.test"]
max_processes = 2
`, addr, testUser, base, base, base, adminDir, alice, bob)
	adminPath := filepath.Join(base, "pyhost.toml")
	os.WriteFile(adminPath, []byte(admin), 0o644)

	apps := func(u sysUser) string { return filepath.Join(u.home, ".config/pyhost/apps") }
	for _, u := range []sysUser{a, b, m} {
		writeOwned(t, u, filepath.Join(u.home, "site/wsgi.py"), validated(probeApp), 0o644)
	}
	writeOwned(t, a, filepath.Join(apps(a), "blog.toml"), appFile(`"blog.alice.test"`, "processes = 1\n[env]\nAPP_NAME = \"alice-blog\""), 0o644)
	writeOwned(t, a, filepath.Join(apps(a), "api.toml"), appFile(`"alice.test"`, "url_prefix = \"/api\"\nprocesses = 1\n[env]\nAPP_NAME = \"alice-api\""), 0o644)
	writeOwned(t, a, filepath.Join(apps(a), "dup.toml"), appFile(`"blog.alice.test"`, "processes = 1"), 0o644)
	// An app that dies at every start: it must fail alone.
	writeOwned(t, a, filepath.Join(a.home, "crash/wsgi.py"), "raise SystemExit('dying at import, every time')\n", 0o644)
	writeOwned(t, a, filepath.Join(apps(a), "crash.toml"), "domains = [\"crash.alice.test\"]\nscript = \"~/crash/wsgi.py\"\ndirectory = \"~/crash\"\nprocesses = 1\n", 0o644)
	writeOwned(t, a, filepath.Join(apps(a), "groupw.toml"), appFile(`"g.alice.test"`, ""), 0o664)
	writeOwned(t, a, filepath.Join(apps(a), "rootdir.toml"), "domains = [\"r.alice.test\"]\nscript = \"wsgi.py\"\ndirectory = \"/root\"\n", 0o644)
	writeOwned(t, b, filepath.Join(apps(b), "site.toml"), appFile(`"bob.test"`, "processes = 2\n[env]\nAPP_NAME = \"bob-site\""), 0o644)
	writeOwned(t, b, filepath.Join(apps(b), "hijack.toml"), appFile(`"blog.alice.test"`, "processes = 1"), 0o644)
	writeOwned(t, b, filepath.Join(apps(b), "zmore.toml"), appFile(`"bob.test"`, "url_prefix = \"/more\"\nprocesses = 1"), 0o644)
	// alice links to bob's file; mallory is not listed at all.
	os.Symlink(filepath.Join(apps(b), "site.toml"), filepath.Join(apps(a), "stolen.toml"))
	os.Lchown(filepath.Join(apps(a), "stolen.toml"), a.uid, a.gid)
	writeOwned(t, m, filepath.Join(apps(m), "mine.toml"), appFile(`"mallory.test"`, ""), 0o644)
	os.WriteFile(filepath.Join(adminDir, "mal.toml"), []byte(fmt.Sprintf("user = %q\n%s", mallory, appFile(`"mallory.test"`, ""))), 0o644)

	// pyhostd check reports every refused file and fails.
	check := exec.Command(filepath.Join(binDir, "pyhostd"), "check", "--config", adminPath)
	out, err := check.CombinedOutput()
	if err == nil {
		t.Errorf("pyhostd check passed with broken app files:\n%s", out)
	}
	for _, want := range []string{
		"dup.toml: domain blog.alice.test with url_prefix / is already claimed by " + alice + "/blog",
		"groupw.toml is writable by group or others",
		"rootdir.toml: as user " + alice,
		"hijack.toml:1: domains[0]: " + bob + " may not claim blog.alice.test",
		"zmore.toml: user " + bob + ": max_processes exceeded",
		"stolen.toml: untrusted file",
		"mal.toml: user " + mallory + " is not listed under [users]",
		"ok: " + alice + "/blog",
		"ok: " + bob + "/site",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("pyhostd check output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("pyhostd check:\n%s", out)
	}

	// pyhostd run serves the valid apps, each as its owner.
	run := exec.Command(filepath.Join(binDir, "pyhostd"), "run", "--config", adminPath)
	run.Env = append(os.Environ(), "PYHOST_CANARY=leaked", "PYHOST_LOG_LEVEL=debug")
	stderr, _ := run.StderrPipe()
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{lines: make(chan string, 4096)}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			logs.add(sc.Text())
			if !once && daemonServing(sc.Text()) {
				once = true
				close(ready)
			}
		}
	}()
	t.Cleanup(func() {
		run.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- run.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			run.Process.Kill()
		}
		if t.Failed() {
			t.Logf("pyhostd run log:\n%s", logs)
		}
	})
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("pyhostd run did not serve within 30s:\n%s", logs)
	}

	type report struct {
		App        string `json:"app"`
		PID        int    `json:"pid"`
		UID, GID   int
		Groups     []int  `json:"groups"`
		NNP        string `json:"nnp"`
		Canary     *string
		ScriptName string `json:"script_name"`
	}
	ask := func(host, path string) (int, report, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s%s: %v", host, path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var r report
		json.Unmarshal(body, &r)
		return resp.StatusCode, r, string(body)
	}
	groupsOf := func(name string) []int {
		out, _ := exec.Command("id", "-G", name).Output()
		var gs []int
		for _, f := range strings.Fields(string(out)) {
			n, _ := strconv.Atoi(f)
			gs = append(gs, n)
		}
		return gs
	}
	cases := []struct {
		host, path string
		u          sysUser
		app        string
		script     string
	}{
		{"blog.alice.test", "/", a, "alice-blog", ""},
		{"BLOG.alice.test:80", "/x", a, "alice-blog", ""},
		{"alice.test", "/api/v1", a, "alice-api", "/api"},
		{"bob.test", "/", b, "bob-site", ""},
	}
	for _, c := range cases {
		code, r, body := ask(c.host, c.path)
		if code != 200 || r.App != c.app || r.ScriptName != c.script {
			t.Errorf("%s%s: %d %s, want %s", c.host, c.path, code, body, c.app)
			continue
		}
		if r.UID != c.u.uid || r.GID != c.u.gid || fmt.Sprint(r.Groups) != fmt.Sprint(sortedCopy(groupsOf(c.u.name))) {
			t.Errorf("%s runs as uid %d gid %d groups %v, want %d %d %v", c.app, r.UID, r.GID, r.Groups, c.u.uid, c.u.gid, groupsOf(c.u.name))
		}
		if r.NNP != "1" || r.Canary != nil {
			t.Errorf("%s: NoNewPrivs %q, canary %v (want 1 and absent)", c.app, r.NNP, r.Canary)
		}
	}
	// R11: the proxy logged them, to log_dir/access.log, a file its
	// user owns and others cannot read.
	checkAccessLog(t, filepath.Join(base, "log", "access.log"), testUser,
		regexp.MustCompile(`"GET /api/v1 HTTP/1.1" 200 \d+ "-" "Go-http-client/1.1" \d+\.\d{6} `+regexp.QuoteMeta(alice)+`/api [0-9a-f]+-[0-9a-f]+\n`))
	// S2: the crash-looping app becomes failing (503, Retry-After) while
	// every other app keeps serving.
	eventually(t, 30*time.Second, "the crashing app is marked failing", func() bool {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Host = "crash.alice.test"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 503 && resp.Header.Get("Retry-After") != "" && strings.Contains(mustStatus(t, ctlPath(base), "crash"), "failing")
	})
	if code, r, _ := ask("blog.alice.test", "/"); code != 200 || r.App != "alice-blog" {
		t.Errorf("a neighbour of the failing app: %d %q", code, r.App)
	}
	for _, host := range []string{"alice.test", "mallory.test", "g.alice.test", "nowhere.test"} {
		if code, _, _ := ask(host, "/"); code != 404 {
			t.Errorf("%s/: %d, want 404", host, code)
		}
	}

	// U6: alice's app cannot reach bob's worker sockets, log or process.
	_, bobWorker, _ := ask("bob.test", "/")
	bobLog := filepath.Join(base, "log", bob, "site.log")
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/probe?state=%s&log=%s&pid=%d", addr, filepath.Join(base, "run"), bobLog, bobWorker.PID), nil)
	req.Host = "blog.alice.test"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var probe struct {
		Sockets map[string]string
		Log     string
		Kill    string
	}
	json.Unmarshal(body, &probe)
	for path, res := range probe.Sockets {
		// The control socket takes anyone's connection and then checks
		// who it is (U5); worker sockets must not be reachable at all.
		if res == "connected" && filepath.Base(path) != "control.sock" {
			t.Errorf("alice's app connected to %s", path)
		}
	}
	// Without the sandbox the walk is refused at the workers' directory;
	// with it (C5), state_dir is hidden and the walk finds no socket.
	if probe.Sockets[filepath.Join(base, "run", "workers")] == "" && len(probe.Sockets) > 0 {
		t.Errorf("the probe did not try the worker sockets' directory: %s", body)
	}
	if probe.Log == "read" || probe.Kill == "killed" {
		t.Errorf("alice's app reached others: %s", body)
	}
	t.Logf("alice's probe: %s", body)
	if fi, err := os.Stat(bobLog); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("bob's log %v mode %v, want 0600", err, fi)
	}

	// U7: the process that parses HTTP is not root.
	for _, p := range descendants(run.Process.Pid) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		if !strings.Contains(string(cmdline), "__proxy") {
			continue
		}
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)`).FindSubmatch(status); m == nil || string(m[1]) == "0" {
			t.Errorf("the proxy runs as uid %s", m[1])
		}
	}

	// U5: each user sees and acts on their own apps only.
	ctl := filepath.Join(base, "run", "control.sock")
	pyctlAs := func(who string, args ...string) (string, error) {
		return retryBusy(args, func() (string, error) {
			cmd := exec.Command("runuser", append([]string{"-u", who, "--", filepath.Join(binDir, "pyctl"), "--socket", ctl}, args...)...)
			out, err := cmd.CombinedOutput()
			return string(out), err
		})
	}
	out2, err := pyctlAs(alice, "status", "--json")
	if err != nil {
		t.Fatalf("pyctl status as alice: %v %s", err, out2)
	}
	var st []appStatus
	json.Unmarshal([]byte(out2), &st)
	names := []string{}
	for _, s := range st {
		if s.State != "refused" {
			names = append(names, s.Name)
		}
	}
	sort.Strings(names)
	if fmt.Sprint(names) != "[api blog crash]" {
		t.Errorf("alice sees %v, want her api, blog and crash", names)
	}
	if out, err := pyctlAs(alice, "reload", bob+"/site"); err == nil {
		t.Errorf("alice reloaded bob's app: %s", out)
	}
	if out, err := pyctlAs(bob, "reload", "site"); err != nil {
		t.Errorf("bob cannot reload his app: %v %s", err, out)
	}
	if out, err := pyctlAs(mallory, "status"); err == nil || !strings.Contains(out, "not a user the admin allows") {
		t.Errorf("mallory: %v %s", err, out)
	}

	// pyctl check validates a draft as the daemon would, for its owner.
	writeOwned(t, a, filepath.Join(a.home, "drafts/ok.toml"), appFile(`"draft.alice.test"`, "processes = 1"), 0o644)
	writeOwned(t, a, filepath.Join(a.home, "drafts/bad.toml"), appFile(`"bob.test"`, "processes = 1"), 0o644)
	if out, err := pyctlAs(alice, "check", filepath.Join(a.home, "drafts/ok.toml")); err != nil || !strings.Contains(out, "ok") {
		t.Errorf("pyctl check of a good file: %v %s", err, out)
	}
	if out, err := pyctlAs(alice, "check", filepath.Join(a.home, "drafts/bad.toml")); err == nil || !strings.Contains(out, "may not claim bob.test") {
		t.Errorf("pyctl check of a hijacking file: %v %s", err, out)
	}

	// The daemon never reads for a user what the user could not: a
	// root-only file, directly or through a link in the app directory.
	secret := filepath.Join(base, "secret.toml")
	os.WriteFile(secret, []byte("threads = \"s3cr3t-value\"\n"), 0o600)
	for _, target := range []string{secret, "/root/.bashrc", "/root/nonexistent.toml"} {
		out, err := pyctlAs(alice, "check", target)
		if err == nil || strings.Contains(out, "s3cr3t") || strings.Contains(out, "TOML") || strings.Contains(out, "no such file") {
			t.Errorf("pyctl check %s as alice: %v, said:\n%s", target, err, out)
		}
	}
	os.Symlink(secret, filepath.Join(apps(a), "leak.toml"))
	os.Lchown(filepath.Join(apps(a), "leak.toml"), a.uid, a.gid)
	if out, err := pyctlAs(alice, "reload", "leak"); err == nil || strings.Contains(out, "s3cr3t") {
		t.Errorf("reload through a link to a root-only file: %v\n%s", err, out)
	}
	os.Remove(filepath.Join(apps(a), "leak.toml"))

	// Owners see why their files were refused.
	if out, _ := pyctlAs(alice, "status"); !strings.Contains(out, "groupw") || !strings.Contains(out, "writable by group or others") {
		t.Errorf("alice's status does not explain her refused file:\n%s", out)
	}

	// S6 in system mode: pyctl reload re-reads the file.
	writeOwned(t, b, filepath.Join(apps(b), "site.toml"), appFile(`"bob.test"`, "processes = 2\n[env]\nAPP_NAME = \"bob-site-v2\""), 0o644)
	if out, err := pyctlAs(bob, "reload", "site"); err != nil {
		t.Fatalf("bob's reload: %v %s", err, out)
	}
	if _, r, _ := ask("bob.test", "/"); r.App != "bob-site-v2" {
		t.Errorf("after bob's reload: %q, want bob-site-v2", r.App)
	}
	// A new file is started by pyctl reload NAME.
	writeOwned(t, a, filepath.Join(apps(a), "extra.toml"), appFile(`"extra.alice.test"`, "processes = 1\n[env]\nAPP_NAME = \"alice-extra\""), 0o644)
	if out, err := pyctlAs(alice, "reload", "extra"); err != nil {
		t.Fatalf("alice's reload of a new file: %v %s", err, out)
	}
	if code, r, _ := ask("extra.alice.test", "/"); code != 200 || r.App != "alice-extra" {
		t.Errorf("new app: %d %q", code, r.App)
	}

	// S10: SIGHUP and reload-config. A broken file keeps its running
	// version; a removed one stops; a new one starts.
	writeOwned(t, a, filepath.Join(apps(a), "blog.toml"), "domains = [\"blog.alice.test\"\nthis is not toml", 0o644)
	os.Remove(filepath.Join(apps(a), "api.toml"))
	writeOwned(t, a, filepath.Join(apps(a), "shop.toml"), appFile(`"shop.alice.test"`, "processes = 1\n[env]\nAPP_NAME = \"alice-shop\""), 0o644)
	out3, err := exec.Command(filepath.Join(binDir, "pyctl"), "--socket", ctl, "reload-config").CombinedOutput()
	if err != nil {
		t.Fatalf("pyctl reload-config: %v %s", err, out3)
	}
	if code, r, _ := ask("blog.alice.test", "/"); code != 200 || r.App != "alice-blog" {
		t.Errorf("broken file's app: %d %q, want the running version to keep serving", code, r.App)
	}
	if code, _, _ := ask("alice.test", "/api/"); code != 404 {
		t.Errorf("removed app still answers %d", code)
	}
	if code, r, _ := ask("shop.alice.test", "/"); code != 200 || r.App != "alice-shop" {
		t.Errorf("new app after reload-config: %d %q", code, r.App)
	}
	if out, _ := pyctlAs(alice, "status"); !strings.Contains(out, "blog.toml:2") {
		t.Errorf("alice's status does not show why blog.toml is refused:\n%s", out)
	}
	// pyctl restart keeps the settings (only reload re-reads the file).
	// The file is changed while the app is stopped: a write of a running
	// app's file rolls it on the new file (touch to reload, D2), which
	// would race the restart ("a reload of this app is already running").
	// The touch is skipped for an app stopped with pyctl stop.
	if out, err := pyctlAs(alice, "stop", "extra"); err != nil {
		t.Fatalf("stop: %v %s", err, out)
	}
	writeOwned(t, a, filepath.Join(apps(a), "extra.toml"), appFile(`"extra.alice.test"`, "processes = 1\n[env]\nAPP_NAME = \"alice-extra-v2\""), 0o644)
	eventually(t, 10*time.Second, "the touch of the stopped app skipped", func() bool {
		return strings.Contains(logs.String(), "reload of "+alice+"/extra skipped")
	})
	// Twice: restart starts the stopped app, then rolls the running one.
	for i := 0; i < 2; i++ {
		if out, err := pyctlAs(alice, "restart", "extra"); err != nil {
			t.Fatalf("restart: %v %s", err, out)
		}
		if _, r, _ := ask("extra.alice.test", "/"); r.App != "alice-extra" {
			t.Errorf("restart %d re-read the file: serving %q", i+1, r.App)
		}
	}
	// A user listed by a config reload may use pyctl at once.
	carol := makeUser(t, "pyh-carol")
	os.WriteFile(adminPath, []byte(admin+"\n[users.pyh-carol]\ndomains = [\"carol.test\"]\n"), 0o644)
	if out, err := exec.Command(filepath.Join(binDir, "pyctl"), "--socket", ctl, "reload-config").CombinedOutput(); err != nil {
		t.Fatalf("reload-config: %v %s", err, out)
	}
	if out, err := pyctlAs(carol.name, "status"); err != nil {
		t.Errorf("a newly listed user is refused: %v %s", err, out)
	}
	if out, err := pyctlAs(alice, "reload-config"); err == nil {
		t.Errorf("alice could reload the daemon's config: %s", out)
	}
	// SIGHUP does the same: the shop file goes away.
	os.Remove(filepath.Join(apps(a), "shop.toml"))
	run.Process.Signal(syscall.SIGHUP)
	eventually(t, 15*time.Second, "SIGHUP stops the app whose file is gone", func() bool {
		code, _, _ := ask("shop.alice.test", "/")
		return code == 404
	})
	// R1: the admin's default app answers a Host nobody claims.
	withDefault := strings.Replace(admin, "[proxy]\n", "[proxy]\ndefault_app = \""+alice+"/blog\"\n", 1)
	os.WriteFile(adminPath, []byte(withDefault+"\n[users.pyh-carol]\ndomains = [\"carol.test\"]\n"), 0o644)
	if out, err := exec.Command(filepath.Join(binDir, "pyctl"), "--socket", ctl, "reload-config").CombinedOutput(); err != nil {
		t.Fatalf("reload-config: %v %s", err, out)
	}
	eventually(t, 10*time.Second, "the default app answers an unclaimed Host", func() bool {
		code, r, _ := ask("nowhere.test", "/")
		return code == 200 && r.App == "alice-blog"
	})
	if code, r, _ := ask("bob.test", "/"); code != 200 || !strings.HasPrefix(r.App, "bob-site") {
		t.Errorf("a claimed Host with a default app set: %d %q, want bob's site", code, r.App)
	}
}

func sortedCopy(xs []int) []int {
	out := append([]int(nil), xs...)
	sort.Ints(out)
	return out
}

// TestInstallStaged installs into a staging root and checks that the
// example config it ships is valid and the unit names the daemon.
func TestInstallStaged(t *testing.T) {
	t.Parallel()
	dest := t.TempDir()
	cmd := exec.Command("bash", "../scripts/install.sh")
	cmd.Env = append(os.Environ(), "DESTDIR="+dest)
	// install.sh wants the binaries in bin/ of the checkout, built from
	// this tree (checkoutBuild runs make build).
	if err := checkoutBuild.wait(); err != nil {
		t.Fatal(err)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	for _, f := range []string{"usr/local/bin/pyhostd", "usr/local/bin/pyctl", "usr/local/lib/pyhost/pyhost-sandbox", "etc/systemd/system/pyhost.service", "etc/logrotate.d/pyhost", "etc/pyhost/pyhost.toml", "etc/pyhost/apps.d"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("not installed: %s", f)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "etc/systemd/system/pyhost.service"))
	for _, want := range []string{"Type=notify", "ExecStart=/usr/local/bin/pyhostd run --config /etc/pyhost/pyhost.toml", "ExecReload=/bin/kill -HUP $MAINPID", "WatchdogSec="} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	if os.Geteuid() == 0 {
		// The example parses (there are no apps in it, so check passes).
		// It names the proxy user install.sh creates; check refuses a
		// proxy user that does not exist, as run would. The user is made
		// in a throwaway copy of this machine (deb_test.go's), made after
		// the install so that it sees dest; where the kernel gives none,
		// on the machine itself, and removed again: the .deb test skips
		// on a host where a pyhost user it did not create exists.
		m, _ := sandbox(t)
		if m == nil {
			holdMachine(t) // creates and removes the pyhost user
			m = &debMachine{}
			if exec.Command("id", "-u", "pyhost").Run() != nil {
				t.Cleanup(func() {
					if out, err := exec.Command("userdel", "pyhost").CombinedOutput(); err != nil {
						t.Errorf("userdel pyhost: %v: %s", err, out)
					}
				})
			}
		}
		if m.command("id", "-u", "pyhost").Run() != nil {
			m.must(t, "useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "pyhost")
		}
		out, err := m.command(filepath.Join(binDir, "pyhostd"), "check", "--config", filepath.Join(dest, "etc/pyhost/pyhost.toml")).CombinedOutput()
		if err != nil {
			t.Errorf("the example config does not pass pyhostd check: %v\n%s", err, out)
		}
	}
}

func ctlPath(base string) string { return filepath.Join(base, "run", "control.sock") }

// mustStatus is root's pyctl status of one app, as text.
func mustStatus(t *testing.T, ctl, app string) string {
	out, _ := exec.Command(filepath.Join(binDir, "pyctl"), "--socket", ctl, "status").CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "/"+app+" ") {
			return l
		}
	}
	return ""
}
