package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Users of the trust tests only, so they run beside the other system tests.
const (
	trAlice = "pyh-tr-alice"
	trBob   = "pyh-tr-bob"
)

const trustUsers = `
[users."pyh-tr-alice"]
domains = ["tr-alice.test"]

[users."pyh-tr-bob"]
domains = ["tr-bob.test"]
`

// An app directory others may write is code planting across tenants:
// bob rewrites alice's wsgi.py and it runs as alice. pyhost must refuse
// such a directory at load (pyhostd check, pyhostd run) and at reload
// (pyctl check, pyctl reload), naming it and the fix (issue 9, item 14).
func TestTrustWorldWritableDirectory(t *testing.T) {
	// Not parallel: shares its users with TestTrustUserSitePth.
	d := newSysd(t, trustUsers)
	a, b := makeUser(t, trAlice), makeUser(t, trBob)
	deployNamed(t, a, "wdir", "alice v1", `"tr-alice.test"`, "")
	deployNamed(t, b, "site", "bob's app", `"tr-bob.test"`, "")
	wdir := filepath.Join(a.home, "wdir")
	appFile := filepath.Join(userApps(a), "wdir.toml")

	// mkdir -m 777 ~alice/wdir, and bob plants his code in it.
	if err := os.Chmod(wdir, 0o777); err != nil {
		t.Fatal(err)
	}
	writeOwned(t, b, filepath.Join(wdir, "wsgi.py"), nameApp("code planted by bob"), 0o644)
	os.Chown(filepath.Join(wdir, "wsgi.py"), b.uid, b.gid)
	refusal := wdir + " is writable by group or others (mode 0777)"
	fix := "chmod go-w " + wdir

	out, err := d.check()
	if err == nil || !strings.Contains(out, refusal) || !strings.Contains(out, fix) {
		t.Errorf("pyhostd check with a 0777 app directory: %v\n%s\nwant a refusal with %q and %q", err, out, refusal, fix)
	}
	if !strings.Contains(out, "ok: "+trBob+"/site") {
		t.Errorf("pyhostd check refused bob's app too:\n%s", out)
	}

	d.start()
	if code, body := d.get("tr-alice.test", "/"); code == 200 || strings.Contains(body, "planted") {
		t.Errorf("alice's app in a 0777 directory was loaded: %d %q", code, body)
	}
	if code, body := d.get("tr-bob.test", "/"); code != 200 || !strings.HasPrefix(body, "bob's app") {
		t.Fatalf("bob's app does not serve beside the refused one: %d %q", code, body)
	}
	if !strings.Contains(d.logs.String(), refusal) {
		t.Errorf("the daemon's log does not say why alice's app was refused (%q)", refusal)
	}
	d.stop()

	// Fixed: the directory is alice's alone again, with her own code.
	os.Chmod(wdir, 0o755)
	writeOwned(t, a, filepath.Join(wdir, "wsgi.py"), nameApp("alice v1"), 0o644)
	d.start()
	code, before := d.get("tr-alice.test", "/")
	if code != 200 || !strings.HasPrefix(before, "alice v1") {
		t.Fatalf("alice's app in a 0755 directory: %d %q", code, before)
	}

	// It becomes world-writable while running: the running version keeps
	// serving, and pyctl check and pyctl reload say why the file is refused.
	os.Chmod(wdir, 0o777)
	if out, err := d.pyctl(trAlice, "check", appFile); err == nil || !strings.Contains(out, refusal) || !strings.Contains(out, fix) {
		t.Errorf("pyctl check with a 0777 app directory: %v\n%s\nwant a refusal with %q and %q", err, out, refusal, fix)
	}
	if out, err := d.pyctl(trAlice, "reload", "wdir"); err == nil || !strings.Contains(out, refusal) {
		t.Errorf("pyctl reload with a 0777 app directory: %v\n%s\nwant a refusal with %q", err, out, refusal)
	}
	if code, after := d.get("tr-alice.test", "/"); code != 200 || after != before {
		t.Errorf("after the refused reload alice's app answers %d %q; want the running version, %q", code, after, before)
	}
	if code, body := d.get("tr-bob.test", "/"); code != 200 || !strings.HasPrefix(body, "bob's app") {
		t.Errorf("bob's app after alice's refused reload: %d %q", code, body)
	}
}

// Issue 9 review, item 3: with python = "python3", Python puts the
// owner's user site (~/.local/lib/pythonX.Y/site-packages) on sys.path
// and runs its .pth files at every start. A user site others may write
// is code planting as surely as a 0777 app directory: bob drops a .pth
// into alice's, and it would run as alice. pyhost refuses the app at
// load and at reload, naming the directory and the fix.
func TestTrustUserSitePth(t *testing.T) {
	t.Parallel()
	d := newSysd(t, trustUsers)
	a, b := makeUser(t, trAlice), makeUser(t, trBob)
	local := filepath.Join(a.home, ".local")
	os.RemoveAll(local)
	t.Cleanup(func() { os.RemoveAll(local) })
	out, err := exec.Command(python, "-c", `import sys; print("%d.%d" % sys.version_info[:2])`).Output()
	if err != nil {
		t.Fatal(err)
	}
	site := filepath.Join(local, "lib", "python"+strings.TrimSpace(string(out)), "site-packages")

	// alice's app says whether code planted in her user site ran.
	writeOwned(t, a, filepath.Join(a.home, "usite", "wsgi.py"), `import os
def application(environ, start_response):
    body = ("alice " + os.environ.get("PYHOST_PLANTED", "clean")).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`, 0o644)
	writeOwned(t, a, filepath.Join(userApps(a), "usite.toml"),
		"domains = [\"tr-alice.test\"]\nscript = \"wsgi.py\"\ndirectory = \"~/usite\"\npython = \"python3\"\nprocesses = 1\nthreads = 2\n", 0o644)
	deployNamed(t, b, "site", "bob's app", `"tr-bob.test"`, "")
	writeOwned(t, a, filepath.Join(site, "alice.pth"), "", 0o644) // the user site exists, alice's
	os.Chmod(site, 0o777)
	pth := filepath.Join(site, "zz-bob.pth")
	writeOwned(t, b, pth, "import os; os.environ['PYHOST_PLANTED'] = 'planted by bob'\n", 0o644)
	os.Chown(pth, b.uid, b.gid)
	refusal := site + " is writable by group or others (mode 0777)"
	fix := "chmod go-w " + site

	out2, err := d.check()
	if err == nil || !strings.Contains(out2, refusal) || !strings.Contains(out2, fix) {
		t.Errorf("pyhostd check with a 0777 user site: %v\n%s\nwant a refusal with %q and %q", err, out2, refusal, fix)
	}
	if !strings.Contains(out2, "ok: "+trBob+"/site") {
		t.Errorf("pyhostd check refused bob's app too:\n%s", out2)
	}
	d.start()
	if code, body := d.get("tr-alice.test", "/"); code == 200 || strings.Contains(body, "planted") {
		t.Errorf("alice's app with a 0777 user site was loaded: %d %q", code, body)
	}
	if code, body := d.get("tr-bob.test", "/"); code != 200 || !strings.HasPrefix(body, "bob's app") {
		t.Fatalf("bob's app does not serve beside the refused one: %d %q", code, body)
	}
	if !strings.Contains(d.logs.String(), refusal) {
		t.Errorf("the daemon's log does not say why alice's app was refused (%q)", refusal)
	}
	d.stop()

	// Fixed: the user site is alice's alone, bob's file gone.
	os.Remove(pth)
	os.Chmod(site, 0o755)
	d.start()
	if code, body := d.get("tr-alice.test", "/"); code != 200 || body != "alice clean" {
		t.Fatalf("alice's app with her own user site: %d %q", code, body)
	}

	// It becomes world-writable while the app runs: pyctl check and
	// pyctl reload refuse, and the running version keeps serving.
	os.Chmod(site, 0o777)
	appFile := filepath.Join(userApps(a), "usite.toml")
	if out, err := d.pyctl(trAlice, "check", appFile); err == nil || !strings.Contains(out, refusal) || !strings.Contains(out, fix) {
		t.Errorf("pyctl check with a 0777 user site: %v\n%s\nwant a refusal with %q and %q", err, out, refusal, fix)
	}
	if out, err := d.pyctl(trAlice, "reload", "usite"); err == nil || !strings.Contains(out, refusal) {
		t.Errorf("pyctl reload with a 0777 user site: %v\n%s\nwant a refusal with %q", err, out, refusal)
	}
	if code, body := d.get("tr-alice.test", "/"); code != 200 || body != "alice clean" {
		t.Errorf("after the refused reload: %d %q, want the running version", code, body)
	}
}
