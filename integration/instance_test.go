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
	t.Parallel()
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
	t.Parallel()
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

// Issue 9 review, item 2b: two daemons sharing data_dir (the claims
// ledger) but not state_dir would overwrite each other's claims: the
// second is refused on data_dir, changing nothing, and the first goes
// on. Needs pyhostd run to lock data_dir (instance.AcquireMode).
func TestSecondInstanceSharingDataDir(t *testing.T) {
	t.Parallel()
	d := newSysd(t, "")
	u := makeUser(t, "pyh-in-cid")
	users := "[users.pyh-in-cid]\ndomains = [\"cid.test\"]\n"
	d.writeAdmin(users)
	deployNamed(t, u, "site", "cid-v1", `"cid.test"`, "")
	d.start()
	ledger := filepath.Join(d.base, "lib", "claims.json")
	before, err := os.ReadFile(ledger)
	if err != nil {
		t.Fatal(err)
	}

	// Its own state_dir and port; the same data_dir.
	other := filepath.Join(d.base, "other")
	cfg := strings.Replace(d.adminConfig(users), d.addr, freePort(t), 1)
	cfg = strings.Replace(cfg, "state_dir = \""+d.base+"/run\"", "state_dir = \""+other+"/run\"", 1)
	secondRunRefusedWith(t, d, cfg, "on "+filepath.Join(d.base, "lib"))
	if after, _ := os.ReadFile(ledger); string(after) != string(before) {
		t.Errorf("the ledger changed:\n%s\nwas\n%s", after, before)
	}
	if _, err := os.Stat(filepath.Join(other, "run", "control.sock")); err == nil {
		t.Errorf("the second daemon made its control socket")
	}
	if code, body := d.get("cid.test", "/"); code != 200 || !strings.HasPrefix(body, "cid-v1") {
		t.Errorf("the first daemon after: %d %q", code, body)
	}
}

// secondRunRefused runs a second pyhostd run on d's config with only the
// port changed (users is the admin file's [users]) and wants it to exit
// at once with one line naming the running daemon.
func secondRunRefused(t *testing.T, d *sysd, users string) {
	t.Helper()
	secondRunRefusedWith(t, d, strings.Replace(d.adminConfig(users), d.addr, freePort(t), 1), "")
}

// secondRunRefusedWith runs pyhostd run on the admin config cfg, beside
// d, and wants it to exit at once with one line naming the running
// daemon and containing want.
func secondRunRefusedWith(t *testing.T, d *sysd, cfg, want string) {
	t.Helper()
	second := filepath.Join(d.base, "second.toml")
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
	if err == nil || len(lines) != 1 || !strings.Contains(lines[0], "another pyhostd is running") || !strings.Contains(lines[0], "pid ") || !strings.Contains(lines[0], want) {
		t.Errorf("second instance: %v, said:\n%s\nwant one line naming the running daemon (and %q)", err, out, want)
	}
}
