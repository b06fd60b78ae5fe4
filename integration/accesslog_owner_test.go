package integration

import (
	"bytes"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fileState is what a refusal must leave of a file: owner, mode, content.
type fileState struct {
	uid, gid uint32
	mode     os.FileMode
	content  string
}

func stateOf(t *testing.T, path string) fileState {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fileState{st.Uid, st.Gid, fi.Mode(), string(b)}
}

// runRefused runs pyhostd with args and wants it to exit 1 at once, its
// last line on stderr containing each of want.
func runRefused(t *testing.T, dir string, args []string, want ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "pyhostd"), args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("pyhostd %v still running after 30s:\n%s", args, stderr.String())
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("pyhostd %v: %v, want exit status 1:\n%s", args, err, stderr.String())
	}
	last := lastLine(stderr.String())
	for _, w := range want {
		if !strings.Contains(last, w) {
			t.Errorf("pyhostd %v said %q, want %q in it", args, last, w)
		}
	}
}

// Issue 9 review, item 1: an access_log path naming an existing file of
// root's (a mistake such as /etc/shadow; here a scratch stand-in, never
// a real system file) is refused by pyhostd check and by pyhostd run,
// and the file keeps its owner, mode and content. Before, run chowned it
// to the proxy's user. A file the proxy's user owns already (a previous
// run's) is used.
func TestAccessLogOfRootIsRefused(t *testing.T) {
	t.Parallel()
	d := newSysd(t, "")
	u := makeUser(t, "pyh-al-cat")
	users := "[users.pyh-al-cat]\ndomains = [\"cat.test\"]\n"
	d.writeAdmin(users)
	deployNamed(t, u, "site", "cat-v1", `"cat.test"`, "")

	// The default access_log, LOG_DIR/access.log: a root-owned secret.
	logPath := filepath.Join(d.base, "log", "access.log")
	os.MkdirAll(filepath.Dir(logPath), 0o755)
	writeFile(t, logPath, "root:$6$not-a-real-hash:19000:0:99999:7:::\n")
	os.Chmod(logPath, 0o600)
	before := stateOf(t, logPath)
	if before.uid != 0 || before.mode.Perm() != 0o600 {
		t.Fatalf("the stand-in is not root's 0600: %+v", before)
	}

	out, err := d.check()
	if err == nil || !strings.Contains(out, "proxy.access_log: "+logPath+" exists and is owned by uid 0 (root), not by "+testUser) {
		t.Errorf("pyhostd check: %v\n%s", err, out)
	}
	runRefused(t, d.base, []string{"run", "--config", d.admin}, "proxy.access_log", logPath+" exists and is owned by uid 0 (root)")
	if after := stateOf(t, logPath); after != before {
		t.Errorf("the refused file changed: %+v, was %+v", after, before)
	}

	// pyhost serve as root (--user) hands its access log to that user the
	// same way: its master refuses the file too.
	dir := writeApp(t, map[string]string{"wsgi.py": validated(basicApp)})
	runRefused(t, dir, serveArgs("--access-log", logPath, "wsgi.py"), "access log", "owned by uid 0 (root)")
	if after := stateOf(t, logPath); after != before {
		t.Errorf("the file refused by serve changed: %+v, was %+v", after, before)
	}

	// The proxy's user's own file, as a previous run leaves it, is used.
	pu, err := user.Lookup(testUser)
	if err != nil {
		t.Fatal(err)
	}
	puid, _ := strconv.Atoi(pu.Uid)
	pgid, _ := strconv.Atoi(pu.Gid)
	os.WriteFile(logPath, nil, 0o600)
	os.Chown(logPath, puid, pgid)
	os.Chmod(logPath, 0o640)
	if out, err := d.check(); err != nil {
		t.Errorf("pyhostd check with the proxy's own access log: %v\n%s", err, out)
	}
	d.start()
	if code, body := d.get("cat.test", "/"); code != 200 || !strings.HasPrefix(body, "cat-v1") {
		t.Fatalf("GET: %d %q", code, body)
	}
	checkAccessLog(t, logPath, testUser, regexp.MustCompile(`"GET / HTTP/1\.1" 200 .* pyh-al-cat/site `))
}
