package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// rotApp writes one line to its app log per request, naming the path:
// in one write, since print's two (text, then newline) interleave
// between threads.
const rotApp = `import sys
def application(environ, start_response):
    sys.stderr.write("req " + environ["PATH_INFO"] + "\n")
    sys.stderr.flush()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
`

// packagedRule is systemd/pyhost.logrotate with its paths pointed at this
// daemon: its log_dir and the pyctl under test. The postrotate command
// is the packaged one; the test fails if the paths it replaces moved.
func packagedRule(t *testing.T, logDir string) string {
	t.Helper()
	b, err := os.ReadFile("../systemd/pyhost.logrotate")
	if err != nil {
		t.Fatal(err)
	}
	rule := string(b)
	for _, want := range []string{"/var/log/pyhost/", "/usr/local/bin/pyctl reopen-logs --if-running"} {
		if !strings.Contains(rule, want) {
			t.Fatalf("the packaged rule no longer says %q; update this test", want)
		}
	}
	rule = strings.ReplaceAll(rule, "/var/log/pyhost/", logDir+"/")
	return strings.ReplaceAll(rule, "/usr/local/bin/pyctl", filepath.Join(binDir, "pyctl"))
}

// logrotate runs logrotate -f on rule as cron would, with the daemon's
// socket in PYHOST_SOCKET (the rule's pyctl would otherwise ask
// /run/pyhost/control.sock), and returns its output.
func logrotate(t *testing.T, dir, rule, socket string) (string, error) {
	t.Helper()
	conf := filepath.Join(dir, "pyhost.logrotate")
	// logrotate ignores a rule file others may write.
	if err := os.WriteFile(conf, []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("logrotate", "-f", "-s", filepath.Join(dir, "logrotate.status"), conf)
	cmd.Env = append(os.Environ(), "PYHOST_SOCKET="+socket)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var (
	accessReq = regexp.MustCompile(`"GET /r/(\d+) HTTP/1\.1" 200 `)
	appReq    = regexp.MustCompile(`\] req /r/(\d+)$`)
)

// countIDs counts, per request id, the lines of text that re matches.
func countIDs(text string, re *regexp.Regexp) map[string]int {
	n := map[string]int{}
	for _, line := range strings.Split(text, "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			n[m[1]]++
		}
	}
	return n
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// O4, issue 15: the packaged logrotate rule, run by real logrotate under
// load against a daemon started without systemd, rotates the access log
// and the app log with no line lost, none written to the rotated files
// after logrotate returned, and `pyctl logs -f` following across the
// rotation; with the daemon stopped, the rule still succeeds, silently.
func TestLogrotateWithoutSystemd(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("logrotate"); err != nil {
		t.Skip("logrotate is not installed (scripts/install-test-deps.sh installs it)")
	}
	u := makeUser(t, "pyh-rt-ann")
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"rot.test\"]\n", u.name))
	writeOwned(t, u, filepath.Join(u.home, "rot", "wsgi.py"), rotApp, 0o644)
	writeOwned(t, u, filepath.Join(userApps(u), "rot.toml"),
		"domains = [\"rot.test\"]\nscript = \"wsgi.py\"\ndirectory = \"~/rot\"\nprocesses = 2\nthreads = 4\n", 0o644)
	d.start()
	logDir := filepath.Join(d.base, "log")
	accessLog := filepath.Join(logDir, "access.log")
	appLog := filepath.Join(logDir, u.name, "rot.log")

	// The owner follows the app log from its first line, before the load.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// As the owner's own process (not under runuser, which a kill would
	// not pass on to its child).
	follow := exec.CommandContext(ctx, filepath.Join(binDir, "pyctl"), "--socket", d.ctl, "logs", "rot", "-f", "-n", "100000")
	follow.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}}
	follow.WaitDelay = 5 * time.Second
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var followErr bytes.Buffer
	follow.Stderr = &followErr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pyctl logs -f stderr: %s", followErr.String())
		}
	})
	var followMu sync.Mutex
	followed := map[string]int{}
	followDone := make(chan struct{})
	go func() {
		defer close(followDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := appReq.FindStringSubmatch(sc.Text()); m != nil {
				followMu.Lock()
				followed[m[1]]++
				followMu.Unlock()
			}
		}
	}()
	defer func() {
		cancel()
		<-followDone
		follow.Wait()
	}()

	// Load until the rotation is done and as many requests again went to
	// the new files; bounded in count and in time.
	const before, after, most = 200, 200, 20000
	var rotatedAt atomic.Int64 // requests sent when logrotate returned; 0 before
	load := startNumberedLoad(t, d.addr, "rot.test", 4, most, time.Now().Add(60*time.Second))

	load.waitOK(before)
	out, err := logrotate(t, d.base, packagedRule(t, logDir), d.ctl)
	rotatedAt.Store(load.sent.Load())
	if err != nil {
		t.Fatalf("logrotate: %v\n%s", err, out)
	}
	// What the rotated files hold as logrotate returns: nothing may be
	// added to them after this.
	oldAccess, oldApp := readFile(t, accessLog+".1"), readFile(t, appLog+".1")
	load.waitOK(rotatedAt.Load() + after)
	load.stop()
	if err := load.err.Load(); err != nil {
		t.Fatalf("load: %v", err)
	}
	total := int(load.ok.Load())
	t.Logf("%d requests, %d before logrotate returned", total, rotatedAt.Load())

	// The proxy flushes its lines every 200 ms; the worker's go through
	// the master: wait until every request is in one file or the other.
	var newAccess, newApp string
	for end := time.Now().Add(10 * time.Second); ; {
		newAccess, newApp = readFile(t, accessLog), readFile(t, appLog)
		if len(countIDs(oldAccess+newAccess, accessReq)) >= total && len(countIDs(oldApp+newApp, appReq)) >= total {
			break
		}
		if time.Now().After(end) {
			// The checks below say which lines are missing.
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := readFile(t, accessLog+".1"); got != oldAccess {
		t.Errorf("%d bytes were written to the rotated access log after logrotate returned", len(got)-len(oldAccess))
	}
	if got := readFile(t, appLog+".1"); got != oldApp {
		t.Errorf("%d bytes were written to the rotated app log after logrotate returned: %q", len(got)-len(oldApp), got[len(oldApp):])
	}
	for _, f := range []struct {
		name     string
		old, new string
		re       *regexp.Regexp
	}{{"access log", oldAccess, newAccess, accessReq}, {"app log", oldApp, newApp, appReq}} {
		inOld, inNew := countIDs(f.old, f.re), countIDs(f.new, f.re)
		if len(inOld) == 0 || len(inNew) == 0 {
			t.Errorf("%s: %d requests in the rotated file, %d in the new one: the rotation was not under load", f.name, len(inOld), len(inNew))
		}
		for id := 1; id <= total; id++ {
			k := fmt.Sprint(id)
			if n := inOld[k] + inNew[k]; n != 1 {
				t.Errorf("%s: request %s has %d lines (rotated %d, new %d), want 1", f.name, k, n, inOld[k], inNew[k])
			}
		}
	}

	// pyctl logs -f saw every request's line once, across the rotation.
	eventually(t, 10*time.Second, "pyctl logs -f to follow every request", func() bool {
		followMu.Lock()
		defer followMu.Unlock()
		return len(followed) >= total
	})
	followMu.Lock()
	for k, n := range followed {
		if n != 1 {
			t.Errorf("pyctl logs -f printed request %s %d times", k, n)
		}
	}
	followMu.Unlock()
	cancel()
	<-followDone

	// Stopped, the daemon cannot reopen anything, and that is no error.
	d.stop()
	os.WriteFile(accessLog, []byte("x\n"), 0o640) // notifempty
	out, err = logrotate(t, d.base, packagedRule(t, logDir), d.ctl)
	if err != nil || out != "" {
		t.Errorf("logrotate with the daemon stopped: %v, output %q", err, out)
	}
	if _, err := os.Stat(accessLog + ".1"); err != nil {
		t.Errorf("with the daemon stopped the access log was not rotated: %v", err)
	}
}

// numberedLoad is a bounded load of GET /r/1, /r/2, ... on addr with
// Host host, from workers clients, for the rotation tests that then look
// for every number in the logs: at most most requests and until
// deadline. The first error or non-200 ends it and fails the next wait.
type numberedLoad struct {
	t       *testing.T
	sent    atomic.Int64 // numbers taken, answered or not
	ok      atomic.Int64 // requests answered 200
	err     atomic.Value
	stopC   chan struct{}
	stopped sync.Once
	done    chan struct{}
}

func startNumberedLoad(t *testing.T, addr, host string, workers int, most int64, deadline time.Time) *numberedLoad {
	l := &numberedLoad{t: t, stopC: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-l.stopC:
					return
				default:
				}
				id := l.sent.Add(1)
				if id > most || time.Now().After(deadline) {
					return
				}
				req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/r/%d", addr, id), nil)
				req.Host = host
				resp, err := client.Do(req)
				if err != nil {
					l.err.CompareAndSwap(nil, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					l.err.CompareAndSwap(nil, fmt.Errorf("GET /r/%d: %s", id, resp.Status))
					return
				}
				l.ok.Add(1)
			}
		}()
	}
	go func() { wg.Wait(); close(l.done) }()
	t.Cleanup(l.stop)
	return l
}

// waitOK waits until n requests in all were answered 200.
func (l *numberedLoad) waitOK(n int64) {
	l.t.Helper()
	eventually(l.t, 60*time.Second, fmt.Sprintf("%d requests answered", n), func() bool {
		if err := l.err.Load(); err != nil {
			l.t.Fatalf("load: %v", err)
		}
		select {
		case <-l.done:
			l.t.Fatalf("the load ended early, after %d requests", l.ok.Load())
		default:
		}
		return l.ok.Load() >= n
	})
}

// stop ends the load and waits for its clients; idempotent.
func (l *numberedLoad) stop() {
	l.stopped.Do(func() { close(l.stopC) })
	<-l.done
}
