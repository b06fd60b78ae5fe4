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
	if rvExit(err) != 1 || !strings.Contains(out, "owned by "+b.name) || !strings.Contains(out, "not by you") || strings.Contains(out, "would refuse") {
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
