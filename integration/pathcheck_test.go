package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Users of the path check tests only, so they run beside the other
// system tests.
const (
	pcAlice = "pyh-pc-alice"
	pcBob   = "pyh-pc-bob"
)

const pathCheckUsers = `
[users."pyh-pc-alice"]
domains = ["pc-alice.test"]

[users."pyh-pc-bob"]
domains = ["pc-bob.test"]
`

// A FIFO named as an app's script passed every check (the owner may read
// it, no one else may write it), and the worker then hung reading it
// until startup_timeout. pyhostd check, the daemon's scan and pyctl
// check refuse it, saying what it is; the other user's app loads.
func TestPathCheckScriptFIFO(t *testing.T) {
	d := newSysd(t, pathCheckUsers)
	a, b := makeUser(t, pcAlice), makeUser(t, pcBob)
	script := filepath.Join(a.home, "fifo", "wsgi.py")
	// The users' homes outlive a run: deployNamed would block writing
	// to the FIFO an earlier one left.
	os.Remove(script)
	t.Cleanup(func() { os.Remove(script) })
	deployNamed(t, a, "fifo", "alice", `"pc-alice.test"`, "")
	deployNamed(t, b, "site", "bob's app", `"pc-bob.test"`, "")
	if err := os.Remove(script); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(script, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(script, a.uid, a.gid); err != nil {
		t.Fatal(err)
	}
	appFile := filepath.Join(userApps(a), "fifo.toml")
	refusal := script + " is a FIFO, not a regular file"

	out, err := d.check()
	if err == nil || !strings.Contains(out, refusal) {
		t.Errorf("pyhostd check with a FIFO as the script: %v\n%s\nwant %q", err, out, refusal)
	}
	if !strings.Contains(out, "ok: "+pcBob+"/site") {
		t.Errorf("pyhostd check refused bob's app too:\n%s", out)
	}

	d.start()
	defer d.stop()
	if code, body := d.get("pc-bob.test", "/"); code != 200 || !strings.HasPrefix(body, "bob's app") {
		t.Errorf("bob's app does not serve beside the refused one: %d %q", code, body)
	}
	if !strings.Contains(d.logs.String(), refusal) {
		t.Errorf("the daemon's log does not say why alice's app was refused (%q)", refusal)
	}
	// pyctl check names the key: script is on the file's second line.
	want := fmt.Sprintf("%s:2: script: ", appFile)
	if out, err := d.pyctl(pcAlice, "check", appFile); err == nil || !strings.Contains(out, want) || !strings.Contains(out, refusal) {
		t.Errorf("pyctl check with a FIFO as the script: %v\n%s\nwant %q…%q", err, out, want, refusal)
	}
}
