package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// withDaemonKeys is d's admin config with lines added to its [daemon]
// table (the sysd harness appends its extra after [apps]).
func withDaemonKeys(d *sysd, users, keys string) string {
	return strings.Replace(d.adminConfig(users), "[daemon]\n", "[daemon]\n"+keys+"\n", 1)
}

// O4/issue 15: [daemon] pid_file is written once the daemon serves,
// over a stale file a crash left; a second daemon refused by the
// instance lock leaves it alone; a clean exit removes it.
func TestPIDFileWrittenAndRemoved(t *testing.T) {
	t.Parallel()
	d := newSysd(t, "")
	u := makeUser(t, "pyh-pid-ann")
	users := "[users.pyh-pid-ann]\ndomains = [\"pid.test\"]\n"
	pidFile := filepath.Join(d.base, "pids", "pyhostd.pid")
	writeFile(t, d.admin, withDaemonKeys(d, users, "pid_file = "+strconv.Quote(pidFile)))
	deployNamed(t, u, "site", "pid-v1", `"pid.test"`, "")
	os.MkdirAll(filepath.Dir(pidFile), 0o755)
	writeFile(t, pidFile, "999999\n") // a crashed daemon's

	d.start()
	want := strconv.Itoa(d.cmd.Process.Pid) + "\n"
	if b, err := os.ReadFile(pidFile); err != nil || string(b) != want {
		t.Fatalf("pid file %q (%v), want %q", b, err, want)
	}
	secondRunRefusedWith(t, d, strings.Replace(withDaemonKeys(d, users, "pid_file = "+strconv.Quote(pidFile)), d.addr, freePort(t), 1), "")
	if b, err := os.ReadFile(pidFile); err != nil || string(b) != want {
		t.Errorf("after a refused second daemon the pid file is %q (%v), want %q", b, err, want)
	}

	// The daemon's line in pyctl status and pyctl version --json: the
	// same pid, the config file, the last reload.
	pid := strconv.Itoa(d.cmd.Process.Pid)
	if out, err := d.pyctl("", "status"); err != nil || !strings.HasPrefix(out, "pyhostd ") ||
		!strings.Contains(out, "(system, pid "+pid+", ") || !strings.Contains(out, "config "+d.admin+", not reloaded since start") {
		t.Errorf("pyctl status: %v\n%s", err, out)
	}
	if out, err := d.pyctl("", "reload-config"); err != nil {
		t.Fatalf("reload-config: %v\n%s", err, out)
	}
	out, err := d.pyctl(u.name, "version", "--json")
	var v struct {
		Client struct{ Version string } `json:"client"`
		Daemon *struct {
			PID        int    `json:"pid"`
			ConfigFile string `json:"config_file"`
			LastReload *struct {
				OK bool `json:"ok"`
			} `json:"last_reload"`
		} `json:"daemon"`
	}
	if err != nil || json.Unmarshal([]byte(out), &v) != nil || v.Daemon == nil || strconv.Itoa(v.Daemon.PID) != pid ||
		v.Daemon.ConfigFile != d.admin || v.Daemon.LastReload == nil || !v.Daemon.LastReload.OK {
		t.Errorf("pyctl version --json as %s: %v\n%s", u.name, err, out)
	}

	d.stop()
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file after a clean exit: %v", err)
	}
}

// O4/issue 15: log_format = "json" makes every line the daemon writes
// on stderr, the master's and the proxy's, one JSON object.
func TestDaemonLogJSON(t *testing.T) {
	t.Parallel()
	d := newSysd(t, "")
	u := makeUser(t, "pyh-json-bo")
	users := "[users.pyh-json-bo]\ndomains = [\"json.test\"]\n"
	writeFile(t, d.admin, withDaemonKeys(d, users, `log_format = "json"`))
	deployNamed(t, u, "site", "json-v1", `"json.test"`, "")

	cmd := exec.Command(filepath.Join(binDir, "pyhostd"), "run", "--config", d.admin)
	cmd.Env = append(os.Environ(), "PYHOST_LOG_LEVEL=debug")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 4096)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(os.Interrupt)
			cmd.Wait()
		}
	}
	defer stop()

	modules := map[string]bool{}
	check := func(l string) map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("not a JSON line: %q", l)
			return nil
		}
		if _, ok := m["@message"]; !ok {
			t.Errorf("no @message: %q", l)
		}
		mod, _ := m["@module"].(string)
		modules[mod] = true
		return m
	}
	deadline := time.After(30 * time.Second)
	for served := false; !served; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("pyhostd run exited before serving")
			}
			if m := check(l); m != nil && m["@message"] == "serving" {
				served = true
			}
		case <-deadline:
			t.Fatal("pyhostd run did not say it serves within 30s")
		}
	}
	if code, body := d.get("json.test", "/"); code != 200 || !strings.HasPrefix(body, "json-v1") {
		t.Errorf("GET: %d %q", code, body)
	}
	stop()
	for l := range lines {
		if strings.HasPrefix(l, "pyhost: stopped") {
			continue // the plain last word on stdout, which the harness merges here
		}
		check(l)
	}
	if !modules["pyhostd"] || !modules["pyhostd.proxy"] {
		t.Errorf("modules seen: %v, want the master's and the proxy's", modules)
	}
}

// O4/issue 15: with access_log_per_app, each app's access lines land in
// log_dir/USER/APP.access.log, which its owner reads with pyctl logs
// --access (and directly) and another tenant cannot; the packaged
// logrotate rule, run under load against a daemon started without
// systemd, rotates it with no line lost and none written to the rotated
// file after logrotate returned.
func TestPerAppAccessLog(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("logrotate"); err != nil {
		t.Skip("logrotate is not installed (scripts/install-test-deps.sh installs it)")
	}
	ann, bob := makeUser(t, "pyh-pa-ann"), makeUser(t, "pyh-pa-bob")
	d := newSysd(t, "")
	users := fmt.Sprintf("[users.%s]\ndomains = [\"pa-ann.test\"]\n[users.%s]\ndomains = [\"pa-bob.test\"]\n", ann.name, bob.name)
	writeFile(t, d.admin, withDaemonKeys(d, users, "access_log_per_app = true"))
	writeOwned(t, ann, filepath.Join(ann.home, "site", "wsgi.py"), rotApp, 0o644)
	writeOwned(t, ann, filepath.Join(userApps(ann), "site.toml"),
		"domains = [\"pa-ann.test\"]\nscript = \"wsgi.py\"\ndirectory = \"~/site\"\nprocesses = 1\nthreads = 4\n", 0o644)
	deployNamed(t, bob, "shop", "bob-v1", `"pa-bob.test"`, "")
	d.start()
	logDir := filepath.Join(d.base, "log")
	annAccess := filepath.Join(logDir, ann.name, "site.access.log")

	// bob's requests stay out of ann's file (and, made before the
	// rotation, go to his own rotated one).
	for i := 0; i < 3; i++ {
		if code, _ := d.get("pa-bob.test", "/"); code != 200 {
			t.Fatalf("bob's app: %d", code)
		}
	}

	// Load on ann's app, bounded in count and time, while logrotate runs.
	const before, after, most = 100, 100, 5000
	load := startNumberedLoad(t, d.addr, "pa-ann.test", 2, most, time.Now().Add(60*time.Second))
	load.waitOK(before)
	// The rotated file must have had lines to rotate (notifempty).
	eventually(t, 10*time.Second, "ann's access log to have lines", func() bool {
		fi, err := os.Stat(annAccess)
		return err == nil && fi.Size() > 0
	})
	out, err := logrotate(t, d.base, packagedRule(t, logDir), d.ctl)
	if err != nil {
		t.Fatalf("logrotate: %v\n%s", err, out)
	}
	rotatedAt := load.ok.Load()
	oldAccess := readFile(t, annAccess+".1")
	load.waitOK(rotatedAt + after)
	load.stop()
	if err := load.err.Load(); err != nil {
		t.Fatalf("load: %v", err)
	}
	total := int(load.ok.Load())

	// Lines reach the file a flush (200 ms) and a channel hop later.
	var newAccess string
	eventually(t, 10*time.Second, "every request in ann's access logs", func() bool {
		newAccess = readFile(t, annAccess)
		return len(countIDs(oldAccess+newAccess, accessReq)) >= total
	})
	if got := readFile(t, annAccess+".1"); got != oldAccess {
		t.Errorf("%d bytes were written to the rotated per-app access log after logrotate returned", len(got)-len(oldAccess))
	}
	inOld, inNew := countIDs(oldAccess, accessReq), countIDs(newAccess, accessReq)
	if len(inOld) == 0 || len(inNew) == 0 {
		t.Errorf("%d requests in the rotated file, %d in the new one: the rotation was not under load", len(inOld), len(inNew))
	}
	for id := 1; id <= total; id++ {
		k := strconv.Itoa(id)
		if n := inOld[k] + inNew[k]; n != 1 {
			t.Errorf("request %s has %d lines (rotated %d, new %d), want 1", k, n, inOld[k], inNew[k])
		}
	}
	if strings.Contains(oldAccess+newAccess, "pa-bob.test") || strings.Contains(oldAccess+newAccess, bob.name+"/") {
		t.Error("bob's requests are in ann's access log")
	}

	// The file is ann's, like her app log; bob cannot read it, nor ask.
	fi, err := os.Stat(annAccess)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != ann.uid || fi.Mode().Perm() != 0o600 {
		t.Errorf("ann's access log is uid %d mode %v, want uid %d mode 0600", st.Uid, fi.Mode().Perm(), ann.uid)
	}
	annOut, err := d.pyctl(ann.name, "logs", "site", "--access", "-n", "5")
	if err != nil || strings.Count(annOut, "\n") != 5 || !strings.Contains(annOut, ann.name+"/site") {
		t.Errorf("ann's pyctl logs --access: %v\n%s", err, annOut)
	}
	if out, err := d.pyctl(bob.name, "logs", ann.name+"/site", "--access"); err == nil || strings.Contains(out, "/r/") {
		t.Errorf("bob read ann's access log through pyctl: %v\n%s", err, out)
	}
	if out, err := exec.Command("runuser", "-u", bob.name, "--", "cat", annAccess).CombinedOutput(); err == nil {
		t.Errorf("bob read ann's access log file:\n%s", out)
	}
	if code, _ := d.get("pa-bob.test", "/after"); code != 200 {
		t.Fatalf("bob's app: %d", code)
	}
	var bobOut string
	eventually(t, 10*time.Second, "bob's request in his access log", func() bool {
		bobOut, _ = d.pyctl(bob.name, "logs", "shop", "--access", "-n", "10")
		return strings.Contains(bobOut, "GET /after ")
	})
	if strings.Count(bobOut, "\n") != 1 || !strings.Contains(bobOut, bob.name+"/shop") {
		t.Errorf("bob's own access log after the rotation:\n%s", bobOut)
	}
}

// O5/issue 15: pyctl top in a real terminal (tmux): it draws the apps
// the caller sees with their figures, redraws, and quits on q, leaving
// the terminal as it found it.
func TestTopInTmux(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (apt-get install tmux)")
	}
	ann := makeUser(t, "pyh-top-ann")
	d := newSysd(t, "")
	users := fmt.Sprintf("[users.%s]\ndomains = [\"top.test\"]\n", ann.name)
	writeFile(t, d.admin, withDaemonKeys(d, users, "metrics_listen = "+strconv.Quote(freePort(t))))
	deployNamed(t, ann, "site", "top-v1", `"top.test"`, "")
	d.start()
	for i := 0; i < 5; i++ {
		if code, _ := d.get("top.test", "/"); code != 200 {
			t.Fatalf("GET: %d", code)
		}
	}

	session := fmt.Sprintf("pyhost-top-%d", os.Getpid())
	tmux := func(args ...string) (string, error) {
		out, err := exec.Command("tmux", append([]string{"-L", session}, args...)...).CombinedOutput()
		return string(out), err
	}
	// As ann, in a terminal of 120x30; a shell keeps the pane after pyctl
	// exits, so the test can see what it left.
	cmd := fmt.Sprintf("runuser -u %s -- %s --socket %s top --interval 200ms; echo top-exited-$?; sleep 60",
		ann.name, filepath.Join(binDir, "pyctl"), d.ctl)
	if out, err := tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "30", cmd); err != nil {
		t.Fatalf("tmux: %v %s", err, out)
	}
	defer tmux("kill-server")
	screen := func() string {
		out, _ := tmux("capture-pane", "-p", "-t", session)
		return out
	}
	// Two frames: the second has a rate where the first had "-".
	eventually(t, 20*time.Second, "pyctl top to draw ann's app with a rate", func() bool {
		for _, l := range strings.Split(screen(), "\n") {
			if f := strings.Fields(l); len(f) == 9 && f[0] == "site" && f[1] != "-" {
				return true
			}
		}
		return false
	})
	if s := screen(); !strings.Contains(s, "APP") || !strings.Contains(s, "q quits") {
		t.Errorf("screen:\n%s", s)
	}
	if out, err := tmux("send-keys", "-t", session, "q"); err != nil {
		t.Fatalf("send-keys: %v %s", err, out)
	}
	eventually(t, 10*time.Second, "pyctl top to quit on q", func() bool {
		return strings.Contains(screen(), "top-exited-0")
	})
}
