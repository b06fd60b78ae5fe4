// Package integration runs the real pyhostd and pyctl binaries against
// real python3 workers over real sockets. As root, apps run as a test
// user the suite creates; otherwise as the caller.
//
// Tests run in parallel (t.Parallel, at most parallelTests at once unless
// -parallel says otherwise): most of a test's time is spent waiting on
// processes, not on the CPU. A test may call t.Parallel when it shares
// nothing mutable with another test that may run with it:
//
//   - ports: listen on 127.0.0.1:0 (startServe does) or take one from
//     freePort, which never hands out the same port twice;
//   - directories: writeApp, newSysd, t.TempDir or os.MkdirTemp(baseDir, …),
//     never a fixed path;
//   - users: makeUser resets the user's ~/.config, so a user name
//     (pyh-PREFIX-NAME, the prefix the test's own) belongs to one
//     parallel test; tests that share names stay serial or only one of
//     them is parallel (a serial test never overlaps a parallel one);
//     makeUser also holds the name machine-wide until the test ends, so
//     another run of the suite on the machine waits for it (holdUser);
//     testUser is shared but never changed;
//   - the environment: no os.Setenv or t.Setenv (which panics after
//     t.Parallel); pass env to startServeEnv or sysd.env instead;
//   - the machine: a test that installs pyhost or creates the pyhost
//     user does it in a throwaway copy of the machine (sandbox, in
//     deb_test.go), which needs no lock; only where the kernel gives no
//     such copy does it change the machine itself, after holdMachine,
//     which runs those tests one at a time. An installed pyhostd runs
//     under lockMachine (startInstalled): every copy's names the same
//     cgroup tree.
//
// Serial tests run first, then the parallel ones together.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testUser runs the apps when the suite runs as root.
const testUser = "pyhost-test"

var (
	binDir  string // pyhostd and pyctl, built once
	baseDir string // world-readable scratch space for apps
	python  = "/usr/bin/python3"
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

// parallelTests is how many parallel tests run at once when -parallel
// is not given; the default (GOMAXPROCS, 2 on the project's machine)
// would leave the CPUs idle while tests wait for workers to start. 6:
// the package took 130 s on a quiet machine against 160 s at 4 (session 7).
const parallelTests = 6

func testMain(m *testing.M) int {
	flag.Parse()
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		flag.Set("test.parallel", strconv.Itoa(parallelTests))
	}
	var err error
	baseDir, err = os.MkdirTemp("", "pyhost-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(baseDir)
	// The app user must read apps and run the binaries from here.
	os.Chmod(baseDir, 0o755)
	binDir = filepath.Join(baseDir, "bin")
	// pyhost-sandbox beside pyhostd: sandboxed starts take its fast path.
	build := exec.Command("go", "build", "-o", binDir+"/", "../cmd/pyhostd", "../cmd/pyctl", "../cmd/pyhost-sandbox")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		return 1
	}
	if _, err := os.Stat(python); err != nil {
		python = "python3"
	}
	if os.Geteuid() == 0 {
		if err := ensureUser(testUser); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	// The slowest builds, started now for the tests that will want them
	// (the .deb, bin/ of the checkout): a test then only waits for what
	// is left of them, not for all of it from its own start on.
	for _, b := range []*prebuild{debBuild, checkoutBuild} {
		if runs(b.tests...) {
			go b.wait()
		}
	}
	return m.Run()
}

// prebuild is a build several tests share, run once: at the first wait,
// or from TestMain in the background.
type prebuild struct {
	tests []string // the tests that wait for it
	run   func() error
	once  sync.Once
	err   error
}

func (p *prebuild) wait() error {
	p.once.Do(func() { p.err = p.run() })
	return p.err
}

// checkoutBuild is `make build` in the checkout, whose bin/ make install
// and scripts/install.sh install: a bin/ left by an older build may lack
// a binary (Go's build cache makes this cheap when nothing changed).
var checkoutBuild = &prebuild{
	tests: []string{"TestInstallStaged", "TestMakeInstallUninstall"},
	run: func() error {
		if out, err := exec.Command("make", "-C", "..", "build").CombinedOutput(); err != nil {
			return fmt.Errorf("make build: %v\n%s", err, out)
		}
		return nil
	},
}

// runs reports whether -test.run and -test.skip select one of the
// top-level tests named.
func runs(names ...string) bool {
	match := func(flagName, name string) (set, matched bool) {
		f := flag.Lookup(flagName)
		if f == nil || f.Value.String() == "" {
			return false, false
		}
		re, err := regexp.Compile(strings.Split(f.Value.String(), "/")[0])
		return true, err != nil || re.MatchString(name)
	}
	for _, n := range names {
		set, ok := match("test.run", n)
		if set && !ok {
			continue
		}
		if skipSet, skip := match("test.skip", n); skipSet && skip {
			continue
		}
		return true
	}
	return false
}

// holdMachine makes t the only test of those that change the machine
// itself (install pyhost when the kernel gives no throwaway copy of it,
// create the pyhost user) until t and its cleanups are done, in this
// process and in any other run of the suite on the machine. Call it
// before changing anything.
func holdMachine(t *testing.T) {
	t.Cleanup(lockMachine(t, "machine")) // registered first: runs last
}

// lockMachine takes a lock every run of the suite on this machine shares
// (flock on a file in /run/lock), for what one process cannot keep to
// itself: the pyhost user, the installed package, and the cgroup tree an
// installed pyhostd names after /run/pyhost (see startInstalled). Each
// call opens the file anew, so two goroutines exclude each other too.
func lockMachine(t *testing.T, name string) (release func()) {
	t.Helper()
	dir := "/run/lock"
	if _, err := os.Stat(dir); err != nil {
		dir = os.TempDir()
	}
	f, err := os.OpenFile(filepath.Join(dir, "pyhost-it-"+name+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	// Bounded: runs that take two such locks in opposite orders would
	// otherwise wait for each other for ever.
	for deadline := time.Now().Add(5 * time.Minute); ; {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if err != syscall.EWOULDBLOCK || time.Now().After(deadline) {
			f.Close()
			t.Fatalf("lock %s: %v (held for over 5 minutes by another test, maybe of another run)", f.Name(), err)
		}
		time.Sleep(50 * time.Millisecond) // polling the lock: flock has no timeout
	}
	return func() { f.Close() } // closing the last descriptor unlocks
}

// ensureUser creates a system user without a home or login, if missing.
func ensureUser(name string) error {
	if exec.Command("id", "-u", name).Run() == nil {
		return nil
	}
	out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
	if err != nil && exec.Command("id", "-u", name).Run() != nil {
		return fmt.Errorf("useradd %s: %v: %s", name, err, out)
	}
	return nil
}

// writeApp writes files (name → content) into a fresh readable directory.
func writeApp(t *testing.T, files map[string]string) string {
	t.Helper()
	dir, err := os.MkdirTemp(baseDir, "app-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// validated wraps a test app's source so that every request goes through
// the standard library's PEP 3333 checker: any violation by pyhost (or the
// app) raises, fails the request, and so fails the test.
func validated(src string) string {
	return src + "\n\nfrom wsgiref.validate import validator as _validator\napplication = _validator(application)\n"
}

// server is a running `pyhostd serve`.
type server struct {
	t       *testing.T
	cmd     *exec.Cmd
	URL     string // http://127.0.0.1:PORT
	Addr    string
	Control string
	out     *lockedBuffer
	exited  chan struct{}
	exitErr error
}

type lockedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func (b *lockedBuffer) add(line string) {
	b.mu.Lock()
	b.buf.WriteString(line + "\n")
	b.mu.Unlock()
	select {
	case b.lines <- line:
	default:
	}
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var servingRE = regexp.MustCompile(`on http://([0-9.:]+)/`)

// daemonServing reports whether line is the one pyhostd run logs once it
// is ready ("pyhostd: serving: apps=…"): every app started, the proxy
// routing to them, touches of app files and reload triggers watched. The
// proxy's own "pyhostd.proxy: proxy serving: …" comes earlier, before
// any app is up, and must not pass for it: a test that took it touched
// an app file before the watch was set up, and the touch was lost
// (TestTouchRightAfterStart).
func daemonServing(line string) bool { return daemonServingRE.MatchString(line) }

var daemonServingRE = regexp.MustCompile(`(^|[\s\]])pyhostd: serving:`)

var controlRE = regexp.MustCompile(`control socket (\S+)`)

// serveArgs are the arguments common to every serve in the suite.
func serveArgs(extra ...string) []string {
	args := []string{"serve", "--listen", "127.0.0.1:0", "--python", python}
	if os.Geteuid() == 0 {
		args = append(args, "--user", testUser)
	}
	return append(args, extra...)
}

// startServe starts pyhostd serve and waits until it prints that it
// serves. The server is stopped (SIGTERM, then SIGKILL) at test end.
func startServe(t *testing.T, dir string, args ...string) *server {
	t.Helper()
	return startServeEnv(t, dir, nil, args...)
}

// startServeEnv is startServe with extra environment variables.
func startServeEnv(t *testing.T, dir string, env []string, args ...string) *server {
	t.Helper()
	s := launchEnv(t, dir, env, serveArgs(args...)...)
	deadline := time.After(30 * time.Second)
	for s.URL == "" || s.Control == "" {
		select {
		case line := <-s.out.lines:
			if m := servingRE.FindStringSubmatch(line); m != nil {
				s.Addr = m[1]
				s.URL = "http://" + m[1]
			}
			if m := controlRE.FindStringSubmatch(line); m != nil {
				s.Control = m[1]
			}
		case <-s.exited:
			t.Fatalf("pyhostd exited before serving: %v\n%s", s.exitErr, s.out)
		case <-deadline:
			t.Fatalf("pyhostd did not report serving within 30s:\n%s", s.out)
		}
	}
	return s
}

// launch starts pyhostd with args in dir without waiting for anything.
func launch(t *testing.T, dir string, args ...string) *server {
	t.Helper()
	return launchEnv(t, dir, nil, args...)
}

// launchEnv is launch with extra environment variables.
func launchEnv(t *testing.T, dir string, env []string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "pyhostd"), args...)
	cmd.Dir = dir
	// Run directories go under the suite's own scratch space, so even a
	// daemon killed with SIGKILL leaves nothing behind in /tmp.
	cmd.Env = append(append(os.Environ(), "PYHOST_LOG_LEVEL=debug", "TMPDIR="+baseDir), env...)
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	s := &server{t: t, cmd: cmd, out: &lockedBuffer{lines: make(chan string, 1024)}, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				s.out.add(sc.Text())
			}
		}()
	}
	go func() {
		wg.Wait()
		s.exitErr = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.stop(10 * time.Second)
		if t.Failed() {
			t.Logf("pyhostd output:\n%s", s.out)
		}
	})
	return s
}

// stop sends SIGTERM and waits; after timeout it kills. It returns the
// exit error (nil for status 0).
func (s *server) stop(timeout time.Duration) error {
	select {
	case <-s.exited:
		return s.exitErr
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(timeout):
		s.cmd.Process.Kill()
		<-s.exited
		s.t.Errorf("pyhostd did not exit within %v of SIGTERM", timeout)
	}
	return s.exitErr
}

// waitExit waits for the process to end on its own.
func (s *server) waitExit(timeout time.Duration) error {
	select {
	case <-s.exited:
		return s.exitErr
	case <-time.After(timeout):
		s.t.Fatalf("pyhostd still running after %v:\n%s", timeout, s.out)
		return nil
	}
}

// waitLine waits until a line of output matches re.
func (s *server) waitLine(re *regexp.Regexp, timeout time.Duration) string {
	s.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line := <-s.out.lines:
			if re.MatchString(line) {
				return line
			}
		case <-deadline:
			s.t.Fatalf("no output line matching %s within %v:\n%s", re, timeout, s.out)
		}
	}
}

// status runs `pyctl status --json`.
func (s *server) status() []appStatus {
	s.t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "pyctl"), "--socket", s.Control, "status", "--json").Output()
	if err != nil {
		s.t.Fatalf("pyctl status: %v", err)
	}
	var st []appStatus
	if err := json.Unmarshal(out, &st); err != nil {
		s.t.Fatalf("pyctl status --json: %v: %s", err, out)
	}
	return st
}

type appStatus struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	Restarts int    `json:"restarts"`
	Workers  []struct {
		PID   int    `json:"pid"`
		State string `json:"state"`
	} `json:"workers"`
}

func (s *server) workerPIDs() []int {
	var pids []int
	for _, a := range s.status() {
		for _, w := range a.Workers {
			pids = append(pids, w.PID)
		}
	}
	return pids
}

// get fetches path and returns status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// descendants lists the pids whose ancestry leads to pid, from /proc.
func descendants(pid int) []int {
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The comm field may contain spaces; ppid follows the last ')'.
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[p] = pp
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z" // a zombie is dead, just not reaped
}

// eventually polls cond every 20ms until it holds or timeout passes. It is
// for conditions only observable from outside (a process gone, a pid
// changed), never a stand-in for a signal we could wait on.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		<-tick.C
	}
}
