package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The leftovers of issue 13's review: what pyhostd serve and pyctl say
// where they disagreed with each other or told a wrong reason.

// One setting, one range: serve's flag and the app file's key are
// refused alike (serve took --request-timeout 25h, which the same app
// file refuses), and each error names where the value came from.
func TestLeftovers13ServeFlagsHeldToFileRanges(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{
		"wsgi.py":   nameApp("rng"),
		"blog.toml": "script = \"wsgi.py\"\nrequest_timeout = \"25h\"\n",
	})
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--request-timeout", "25h", "wsgi.py"}, `--request-timeout: must be 0 (no limit) or a duration from 100ms to 24h, like "30s", got 25h`},
		{[]string{"--max-body", "2TiB", "wsgi.py"}, `--max-body: must be 0 (no limit) or a size from 1B to 1TiB`},
		{[]string{"blog.toml"}, `request_timeout: must be 0 (no limit) or a duration from 100ms to 24h, like "30s", got "25h"`},
	} {
		s := launch(t, dir, serveArgs(c.args...)...)
		err := s.waitExit(30 * time.Second)
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 || !strings.Contains(s.out.String(), c.want) {
			t.Errorf("pyhostd serve %s: %v, want a refusal saying %q:\n%s", strings.Join(c.args, " "), err, c.want, s.out)
		}
	}
}

// pyctl start of a running app whose file says enabled = false leaves
// it alone and says so (it rolled it onto new workers); a tenant's
// pyctl check of the admin's file for them says it is the admin's to
// check (it said the file was "not owned by the app's owner").
func TestLeftovers13StartAndCheckOnASystemDaemon(t *testing.T) {
	t.Parallel()
	own := makeUser(t, "lo13own")
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"off.lo13\", \"adm.lo13\"]\n", own.name))
	deployNamed(t, own, "off", "off", `"off.lo13"`, "enabled = false")
	writeOwned(t, own, filepath.Join(own.home, "adm", "wsgi.py"), nameApp("adm"), 0o644)
	admFile := filepath.Join(d.adminDir(), "adm.toml")
	writeFile(t, admFile, fmt.Sprintf("user = %q\ndomains = [\"adm.lo13\"]\nscript = \"wsgi.py\"\ndirectory = %q\n", own.name, filepath.Join(own.home, "adm")))
	d.start()

	pids := func() []int {
		t.Helper()
		out, err := d.pyctl(own.name, "status", "off", "--json")
		var rows []struct {
			State   string `json:"state"`
			Workers []struct {
				PID int `json:"pid"`
			} `json:"workers"`
		}
		if err != nil || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 {
			t.Fatalf("pyctl status off --json: %v\n%s", err, out)
		}
		var p []int
		for _, w := range rows[0].Workers {
			p = append(p, w.PID)
		}
		return p
	}
	if out, err := d.pyctl(own.name, "start", "off"); err != nil || !strings.Contains(out, "it stays disabled") {
		t.Fatalf("pyctl start off (stopped, disabled): %v\n%s", err, out)
	}
	before := pids()
	out, err := d.pyctl(own.name, "start", "off")
	if err != nil || !strings.Contains(out, "already running; nothing to do") {
		t.Errorf("pyctl start off (running, disabled): %v, want \"already running; nothing to do\":\n%s", err, out)
	}
	if after := pids(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("pyctl start of the running app replaced its workers: %v, then %v", before, after)
	}

	out, err = d.pyctl(own.name, "check", admFile)
	t.Logf("the tenant's pyctl check of %s:\n%s", admFile, out)
	if rvExit(err) != 1 || !strings.Contains(out, "a file of admin_dir") || !strings.Contains(out, "only root checks it") || strings.Contains(out, "not owned") {
		t.Errorf("the tenant's pyctl check of the admin's file for them: exit %d, want 1 saying it is admin_dir's:\n%s", rvExit(err), out)
	}
	if out, err := d.pyctl("root", "check", admFile); err != nil {
		t.Errorf("root's pyctl check of the admin's file: %v\n%s", err, out)
	}
}

// pyctl check on an express daemon, asked by a uid with no passwd
// entry (a container's), answers what it answers everyone: express mode
// has no policy to check by (it answered with the failed user lookup).
func TestLeftovers13ExpressCheckWithoutPasswd(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to ask as a uid with no passwd entry")
	}
	const uid = "4242424"
	if _, err := user.LookupId(uid); err == nil {
		t.Skip("uid " + uid + " has a passwd entry here")
	}
	dir := writeApp(t, map[string]string{"wsgi.py": nameApp("x")})
	s := startServe(t, dir, "wsgi.py")
	os.Chmod(filepath.Dir(s.Control), 0o755)
	os.Chmod(s.Control, 0o777)
	out, err := exec.Command("setpriv", "--reuid="+uid, "--regid="+uid, "--clear-groups",
		filepath.Join(binDir, "pyctl"), "--socket", s.Control, "check", filepath.Join(dir, "x.toml")).CombinedOutput()
	t.Logf("pyctl check as uid %s:\n%s", uid, out)
	if rvExit(err) != 1 || !strings.Contains(string(out), "this daemon runs one app in express mode") || strings.Contains(string(out), "unknown userid") {
		t.Errorf("pyctl check as uid %s: exit %d, want 1 saying express mode has no policy:\n%s", uid, rvExit(err), out)
	}
}
