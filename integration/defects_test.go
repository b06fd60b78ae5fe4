package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCheckFIFOPaths: pyctl check of an app file whose script and
// python_path entry are FIFOs answers (the paths are checked with
// access(2) and lstat(2) as the owner, which never open them), and the
// daemon goes on serving. A check that hangs (a path on a hung network
// mount) is bounded by config.PathCheckTimeout; its unit test is
// config's TestCheckPathsTimeout.
func TestCheckFIFOPaths(t *testing.T) {
	// Not parallel: the check tests share their users.
	d := newSysd(t, checkUsers)
	a := makeUser(t, ckAlice)
	deployNamed(t, a, "blog", "alice blog", `"blog.ck-alice.test"`, "")
	d.start()

	dir := filepath.Join(a.home, "piped")
	os.RemoveAll(dir) // a run before left its FIFOs
	writeOwned(t, a, filepath.Join(dir, "README"), "", 0o644)
	for _, name := range []string{"wsgi.py", "lib"} {
		p := filepath.Join(dir, name)
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chown(p, a.uid, a.gid)
	}
	// Outside the apps directory: checked, never loaded.
	file := filepath.Join(a.home, "drafts", "piped.toml")
	writeOwned(t, a, file, "domains = [\"piped.ck-alice.test\"]\nscript = \"wsgi.py\"\ndirectory = \"~/piped\"\npython_path = [\"~/piped/lib\"]\n", 0o644)

	// Bounded here too, so that a hang fails the test rather than the
	// suite's timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "runuser", "-u", ckAlice, "--", filepath.Join(binDir, "pyctl"), "--socket", d.ctl, "check", file)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("pyctl check of an app file with FIFOs for paths gave no answer: %s", out)
	}
	// The FIFO in python_path cannot be entered. (The FIFO script passes:
	// the helper checks that it is readable and trusted, not that it is
	// a regular file.)
	if err == nil || !strings.Contains(string(out), "python_path[0]: as user "+ckAlice+": cannot open "+filepath.Join(dir, "lib")) {
		t.Errorf("pyctl check: %v\n%s", err, out)
	}
	if code, body := d.get("blog.ck-alice.test", "/"); code != 200 || !strings.HasPrefix(body, "alice blog") {
		t.Errorf("after the check: %d %q, want alice's blog", code, body)
	}
	if out, err := d.pyctl(ckAlice, "status"); err != nil || !strings.Contains(out, "blog") {
		t.Errorf("pyctl status after the check: %v\n%s", err, out)
	}
}
