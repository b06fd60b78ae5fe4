package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Second attack on issue 13's review leftovers: where two commands meet
// one state and one said yes where the other said no.

// serve's --processes may not raise an app file's workers past the
// file's own tasks_max: the same file with that processes is refused,
// and serve took it (its workers would then fail their thread starts
// under the app's pids.max, a crash loop).
func TestAttack13bServeFlagsHeldToTasksMax(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{
		"wsgi.py":   nameApp("tm"),
		"blog.toml": "script = \"wsgi.py\"\ntasks_max = 100\n",
	})
	s := launch(t, dir, serveArgs("--processes", "64", "blog.toml")...)
	err := s.waitExit(30 * time.Second)
	const want = "tasks_max: 100 is fewer tasks than the app needs to run: processes 64 x (threads 4 + 2) + 1"
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(s.out.String(), want) {
		t.Errorf("pyhostd serve --processes 64 blog.toml (tasks_max = 100): %v, want a usage error (exit 2) saying %q:\n%s", err, want, s.out)
	}
}

// pyhostd check reports a [defaults] tasks_max that the defaults' own
// processes and threads do not fit in, at its line of pyhost.toml; it
// said ok, and every app file that sets none of the three was refused
// naming a key it does not hold.
func TestAttack13bDefaultsTasksMaxChecked(t *testing.T) {
	t.Parallel()
	d := newSysd(t, "[defaults]\ntasks_max = 5\n")
	out, err := d.check()
	if rvExit(err) != 1 || !strings.Contains(out, d.admin+":") || !strings.Contains(out, "defaults.tasks_max: 5 is fewer tasks than an app of the defaults needs to run") {
		t.Errorf("pyhostd check with [defaults] tasks_max = 5: exit %d, want 1 naming pyhost.toml's line:\n%s", rvExit(err), out)
	}
}

// A tenant's pyctl check of another tenant's file says whose it is and
// that it is theirs to check (access denied, exit 1), not "the daemon
// would refuse this file": the daemon runs it, for its owner, who and
// root get ok for it.
func TestAttack13bCheckOfAnotherTenantsFile(t *testing.T) {
	t.Parallel()
	a, b := makeUser(t, "at13ba"), makeUser(t, "at13bb")
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"a.at13b\"]\n\n[users.%s]\ndomains = [\"b.at13b\"]\n", a.name, b.name))
	deployNamed(t, b, "shop", "shop", `"b.at13b"`, "")
	os.Chmod(b.home, 0o755) // alice may read it: the check is not refused for that
	d.start()
	file := filepath.Join(userApps(b), "shop.toml")
	out, err := d.pyctl(a.name, "check", file)
	t.Logf("%s's pyctl check of %s's file:\n%s", a.name, b.name, out)
	if rvExit(err) != 1 || !strings.Contains(out, "is not owned by the app's owner (you, uid ") || !strings.Contains(out, "but by "+b.name) || !strings.Contains(out, "it is "+b.name+"'s to check") || strings.Contains(out, "would refuse") {
		t.Errorf("%s's check of %s's file: exit %d, want 1 saying it is %s's to check:\n%s", a.name, b.name, rvExit(err), b.name, out)
	}
	for _, who := range []string{b.name, "root"} {
		if out, err := d.pyctl(who, "check", file); err != nil {
			t.Errorf("%s's pyctl check of %s's file: %v\n%s", who, b.name, err, out)
		}
	}
	if code, body := d.get("b.at13b", "/"); code != 200 || !strings.HasPrefix(body, "shop ") {
		t.Errorf("the file the check was refused for serves: %d %q", code, body)
	}
}

// holdApp is a WSGI app whose import waits, while the file "hold" is in
// its directory, until "go" is there too (at most 60 s): a roll onto it
// stays under way for as long as a test needs.
const holdApp = `import os, time
here = os.path.dirname(os.path.abspath(__file__))
if os.path.exists(os.path.join(here, "hold")):
    for _ in range(600):
        if os.path.exists(os.path.join(here, "go")):
            break
        time.sleep(0.1)
def application(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`

// pyctl start in the middle of a roll (pyctl restart) says the app
// runs and a roll is under way, exit 0, and replaces nothing; it said
// "starting", then "start done", of a start that never happened.
func TestAttack13bStartDuringARoll(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": holdApp})
	s := startServe(t, dir, "wsgi.py")
	pyctl := func(args ...string) (string, error) {
		out, err := exec.Command(filepath.Join(binDir, "pyctl"), append([]string{"--socket", s.Control}, args...)...).CombinedOutput()
		return string(out), err
	}
	_, before := get(t, s.URL+"/")
	writeFile(t, filepath.Join(dir, "hold"), "")
	rolled := make(chan string, 1)
	go func() { out, _ := pyctl("restart"); rolled <- out }()
	eventually(t, 30*time.Second, "the restart under way", func() bool {
		out, _ := pyctl("status", "--json")
		return strings.Contains(out, `"reloading"`)
	})
	out, err := pyctl("start")
	if rvExit(err) != 0 || !strings.Contains(out, "already running, and a roll of it is under way; nothing to do") || strings.Contains(out, "starting") {
		t.Errorf("pyctl start mid-roll: exit %d, want 0 saying a roll is under way:\n%s", rvExit(err), out)
	}
	if _, now := get(t, s.URL+"/"); now != before {
		t.Errorf("mid-roll, the old worker %s should serve, got %s", before, now)
	}
	writeFile(t, filepath.Join(dir, "go"), "")
	if out := <-rolled; !strings.Contains(out, "restart done") {
		t.Errorf("the restart:\n%s", out)
	}
	if _, now := get(t, s.URL+"/"); now == before {
		t.Errorf("after the restart the old worker %s still serves", before)
	}
}

// A link in a tenant's user_dir to the admin's file for them is one of
// their app files: the daemon refuses it there (pyctl status shows it
// refused) and serves the admin's file; their pyctl check of the link
// says what the daemon says, as it does of their other files.
func TestAttack13bLinkToAdminDirInUserDir(t *testing.T) {
	t.Parallel()
	a := makeUser(t, "at13bl")
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"l.at13b\", \"m.at13b\"]\n", a.name))
	deployNamed(t, a, "mine", "mine", `"m.at13b"`, "")
	writeOwned(t, a, filepath.Join(a.home, "adm", "wsgi.py"), nameApp("adm"), 0o644)
	admFile := filepath.Join(d.adminDir(), "adm.toml")
	writeFile(t, admFile, fmt.Sprintf("user = %q\ndomains = [\"l.at13b\"]\nscript = \"wsgi.py\"\ndirectory = %q\n", a.name, filepath.Join(a.home, "adm")))
	link := filepath.Join(userApps(a), "linked.toml")
	if err := os.Symlink(admFile, link); err != nil {
		t.Fatal(err)
	}
	os.Lchown(link, a.uid, a.gid)
	d.start()
	out, err := d.pyctl(a.name, "status", "linked")
	if err != nil || !strings.Contains(out, "refused") || !strings.Contains(out, "not owned by the app's owner") {
		t.Errorf("pyctl status linked: %v, want it refused as not the owner's:\n%s", err, out)
	}
	out, err = d.pyctl(a.name, "check", link)
	t.Logf("pyctl check of the link:\n%s", out)
	if rvExit(err) != 1 || !strings.Contains(out, "not owned by the app's owner") || strings.Contains(out, "admin_dir") {
		t.Errorf("pyctl check of the link in the user_dir: exit %d, want 1 saying what the daemon says:\n%s", rvExit(err), out)
	}
	if out, err := d.pyctl("root", "check", link); rvExit(err) != 1 || !strings.Contains(out, "not owned by the app's owner") {
		t.Errorf("root's pyctl check of the link in the user_dir: exit %d, want 1 as the daemon refuses it:\n%s", rvExit(err), out)
	}
	if out, err := d.pyctl("root", "check", admFile); err != nil {
		t.Errorf("root's pyctl check of the admin's file: %v\n%s", err, out)
	}
	if code, body := d.get("l.at13b", "/"); code != 200 || !strings.HasPrefix(body, "adm ") {
		t.Errorf("the admin's file for the tenant: %d %q, want it served", code, body)
	}
}
