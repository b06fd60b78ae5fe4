package integration

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sysd is one `pyhostd run` (system mode) in a scratch directory of its
// own: base holds pyhost.toml, run/ (state_dir), log/ (log_dir), lib/
// (data_dir) and apps.d/ (admin_dir). Tests that need several users build one with
// newSysd, write app files with writeOwned, then start it.
type sysd struct {
	t     *testing.T
	base  string
	addr  string // the proxy's listen address
	admin string // pyhost.toml
	ctl   string // control socket
	cmd   *exec.Cmd
	logs  *lockedBuffer
	done  chan error
	env   []string // more environment for pyhostd run
}

// newSysd writes an admin config listening on a free loopback port, with
// the proxy as the suite's test user, and users (TOML for [users.*] and
// anything else) appended. It skips the test when not root.
func newSysd(t *testing.T, users string) *sysd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("system mode runs apps as other users: needs root")
	}
	base, err := os.MkdirTemp(baseDir, "sysd-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o755)
	d := &sysd{t: t, base: base, addr: freePort(t), admin: filepath.Join(base, "pyhost.toml"), ctl: filepath.Join(base, "run", "control.sock")}
	os.MkdirAll(d.adminDir(), 0o755)
	d.writeAdmin(users)
	return d
}

func (d *sysd) adminDir() string { return filepath.Join(d.base, "apps.d") }

// adminConfig is the admin config with extra appended (users and more).
func (d *sysd) adminConfig(extra string) string {
	return fmt.Sprintf(`[proxy]
listen = [%q]
user = %q

[daemon]
state_dir = "%s/run"
log_dir = "%s/log"
data_dir = "%s/lib"

[apps]
admin_dir = %q

%s
`, d.addr, testUser, d.base, d.base, d.base, d.adminDir(), extra)
}

// writeAdmin replaces pyhost.toml (the next start or reload-config reads it).
func (d *sysd) writeAdmin(extra string) {
	d.t.Helper()
	if err := os.WriteFile(d.admin, []byte(d.adminConfig(extra)), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// start runs pyhostd run and waits until it says it serves.
func (d *sysd) start() {
	d.t.Helper()
	d.cmd = exec.Command(filepath.Join(binDir, "pyhostd"), "run", "--config", d.admin)
	d.cmd.Env = append(append(os.Environ(), "PYHOST_LOG_LEVEL=debug"), d.env...)
	stderr, _ := d.cmd.StderrPipe()
	d.cmd.Stdout = d.cmd.Stderr
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.logs = &lockedBuffer{lines: make(chan string, 4096)}
	d.done = make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			d.logs.add(sc.Text())
			if !once && daemonServing(sc.Text()) {
				once = true
				close(ready)
			}
		}
		d.done <- d.cmd.Wait()
	}()
	d.t.Cleanup(func() {
		d.stop()
		if d.t.Failed() {
			d.t.Logf("pyhostd run log:\n%s", d.logs)
		}
	})
	select {
	case <-ready:
	case err := <-d.done:
		d.done <- err
		d.t.Fatalf("pyhostd run exited before serving: %v\n%s", err, d.logs)
	case <-time.After(30 * time.Second):
		d.t.Fatalf("pyhostd run did not serve within 30s:\n%s", d.logs)
	}
}

// stop sends SIGTERM and waits for the daemon (SIGKILL after 20 s); a
// second call does nothing.
func (d *sysd) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
	d.cmd = nil
}

// restart stops the daemon and starts it again on the same config.
func (d *sysd) restart() {
	d.t.Helper()
	d.stop()
	d.start()
}

// pyctl runs pyctl against this daemon as the user who (root for ""),
// asking again while a roll it needs is busy (retryBusy).
func (d *sysd) pyctl(who string, args ...string) (string, error) {
	return retryBusy(args, func() (string, error) {
		var cmd *exec.Cmd
		full := append([]string{"--socket", d.ctl}, args...)
		if who == "" || who == "root" {
			cmd = exec.Command(filepath.Join(binDir, "pyctl"), full...)
		} else {
			cmd = exec.Command("runuser", append([]string{"-u", who, "--", filepath.Join(binDir, "pyctl")}, full...)...)
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	})
}

// retryBusy runs the pyctl command args (run runs it) again, for up to
// 30 s, while it reports that an app's roll was left to one already
// running. Writing an app file is a touch (reload_trigger), and the roll
// that touch starts may not be over when the test's own pyctl reload or
// reload-config comes, the later the busier the machine: the daemon then
// refuses the reload, or leaves the app to the running roll.
func retryBusy(args []string, run func() (string, error)) (string, error) {
	busy := ""
	if len(args) > 0 {
		switch args[0] {
		case "reload":
			busy = "a reload of this app is already running"
		case "reload-config":
			busy = "a pyctl reload of it is underway"
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := run()
		if busy == "" || !strings.Contains(out, busy) || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(100 * time.Millisecond) // polling the daemon, as eventually does
	}
}

// check runs pyhostd check on this daemon's config.
func (d *sysd) check() (string, error) {
	out, err := exec.Command(filepath.Join(binDir, "pyhostd"), "check", "--config", d.admin).CombinedOutput()
	return string(out), err
}

// get asks the proxy for path on host and returns the status and body.
func (d *sysd) get(host, path string) (int, string) {
	d.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+d.addr+path, nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// userApps is where u's app files go.
func userApps(u sysUser) string { return filepath.Join(u.home, ".config/pyhost/apps") }

// nameApp is a WSGI app that answers with NAME, so a test can tell which
// app (and which version) served a request.
func nameApp(name string) string {
	return fmt.Sprintf(`import os
def application(environ, start_response):
    body = (%q + " " + str(os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`, name)
}

// deployNamed writes u's app NAME: ~/NAME/wsgi.py answering with label,
// and the app file claiming domains (a TOML list body) plus extra keys.
func deployNamed(t *testing.T, u sysUser, name, label, domains, extra string) {
	t.Helper()
	writeOwned(t, u, filepath.Join(u.home, name, "wsgi.py"), nameApp(label), 0o644)
	writeOwned(t, u, filepath.Join(userApps(u), name+".toml"),
		fmt.Sprintf("domains = [%s]\nscript = \"wsgi.py\"\ndirectory = \"~/%s\"\nprocesses = 1\nthreads = 2\n%s\n", domains, name, extra), 0o644)
}

// writeFile writes a root-owned file, failing the test on error.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
