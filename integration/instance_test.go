package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// O6 and issue 9 item 5: a second pyhostd run on the same state
// directory exits with one clear line and changes nothing; the first
// keeps starting and replacing workers.
func TestSecondInstanceChangesNothing(t *testing.T) {
	d := newSysd(t, "")
	u := makeUser(t, "pyh-in-ann")
	d.writeAdmin("[users.pyh-in-ann]\ndomains = [\"ann.test\"]\n")
	deployNamed(t, u, "site", "ann-v1", `"ann.test"`, "")
	d.start()
	if code, body := d.get("ann.test", "/"); code != 200 || !strings.HasPrefix(body, "ann-v1") {
		t.Fatalf("before: %d %q", code, body)
	}
	secondRunRefused(t, d, "[users.pyh-in-ann]\ndomains = [\"ann.test\"]\n")

	// The first daemon can still replace workers and roll new code: its
	// worker sockets and script are untouched.
	deployNamed(t, u, "site", "ann-v2", `"ann.test"`, "")
	if out, err := d.pyctl("", "reload", "pyh-in-ann/site"); err != nil {
		t.Fatalf("reload after the second instance: %v\n%s", err, out)
	}
	if code, body := d.get("ann.test", "/"); code != 200 || !strings.HasPrefix(body, "ann-v2") {
		t.Errorf("after: %d %q", code, body)
	}
}

// Issue 9 review, item 2a: removing the files in the state directory
// (the lock file once was one; now the pid file) does not let a second
// daemon in: the lock is on the directory. Before, the second took a
// fresh lock file and, on its way out, removed the live daemon's
// workers/, so no worker could start again.
func TestSecondInstanceAfterRmLockFile(t *testing.T) {
	d := newSysd(t, "")
	u := makeUser(t, "pyh-in-bea")
	users := "[users.pyh-in-bea]\ndomains = [\"bea.test\"]\n"
	d.writeAdmin(users)
	deployNamed(t, u, "site", "bea-v1", `"bea.test"`, "")
	d.start()
	if code, body := d.get("bea.test", "/"); code != 200 || !strings.HasPrefix(body, "bea-v1") {
		t.Fatalf("before: %d %q", code, body)
	}
	run := filepath.Join(d.base, "run")
	for _, name := range []string{"pyhostd.lock", "pyhostd.pid"} {
		os.Remove(filepath.Join(run, name))
	}
	secondRunRefused(t, d, users)
	if _, err := os.Stat(filepath.Join(run, "workers")); err != nil {
		t.Errorf("the live daemon's worker sockets: %v", err)
	}

	// The live daemon still starts workers on new code.
	deployNamed(t, u, "site", "bea-v2", `"bea.test"`, "")
	if out, err := d.pyctl("", "reload", "pyh-in-bea/site"); err != nil {
		t.Fatalf("reload after the second instance: %v\n%s", err, out)
	}
	if code, body := d.get("bea.test", "/"); code != 200 || !strings.HasPrefix(body, "bea-v2") {
		t.Errorf("after: %d %q", code, body)
	}
}

// secondRunRefused runs a second pyhostd run on d's config with only the
// port changed (users is the admin file's [users]) and wants it to exit
// at once with one line naming the running daemon.
func secondRunRefused(t *testing.T, d *sysd, users string) {
	t.Helper()
	second := filepath.Join(d.base, "second.toml")
	cfg := strings.Replace(d.adminConfig(users), d.addr, freePort(t), 1)
	writeFile(t, second, cfg)
	cmd := exec.Command(filepath.Join(binDir, "pyhostd"), "run", "--config", second)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("the second pyhostd run did not exit:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err == nil || len(lines) != 1 || !strings.Contains(lines[0], "another pyhostd is running") || !strings.Contains(lines[0], "pid ") {
		t.Errorf("second instance: %v, said:\n%s\nwant one line naming the running daemon", err, out)
	}
}
