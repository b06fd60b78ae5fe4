package workerproc

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/wsgiadapter"
)

// These tests run the real worker script under a real python3: the fork
// server's protocol has two sides, and only both together show it works.

type forkEnv struct {
	sp     *privdrop.Spawner
	cred   privdrop.Credential
	python string
	script string // pyhost_worker.py
	dir    string // holds the apps and the sockets
	env    []string
	out    *lines
}

func newForkEnv(t *testing.T, extraEnv ...string) *forkEnv {
	t.Helper()
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		p, err := exec.LookPath("python3")
		if err != nil {
			t.Skip("no python3 to run the fork server with")
		}
		python = p
	}
	sp, err := privdrop.NewSpawner()
	if err != nil {
		t.Fatal(err)
	}
	cred, err := privdrop.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "pyhost_worker.py")
	if err := os.WriteFile(script, wsgiadapter.WorkerScript, 0o644); err != nil {
		t.Fatal(err)
	}
	env := append([]string{"PATH=/usr/bin:/bin", "HOME=" + dir}, extraEnv...)
	return &forkEnv{sp: sp, cred: cred, python: python, script: script, dir: dir, env: env, out: &lines{}}
}

func (e *forkEnv) server(t *testing.T) *ForkServer {
	t.Helper()
	fs, err := StartForkServer(e.sp, ForkServerSpec{
		Path:   e.python,
		Args:   []string{"-u", e.script, "--fork-server", "--app", "test/app"},
		Dir:    e.dir,
		Env:    e.env,
		Cred:   e.cred,
		Output: e.out.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(fs.PID(), syscall.SIGKILL)
		<-fs.Exited()
	})
	within(t, fs.Ready(), "fork server ready")
	return fs
}

var seq int

// spawn forks one worker serving the app source src.
func (e *forkEnv) spawn(t *testing.T, fs *ForkServer, src string) (*Process, error) {
	t.Helper()
	seq++
	app := filepath.Join(e.dir, "app"+strconv.Itoa(seq)+".py")
	if err := os.WriteFile(app, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Start(e.sp, Spec{
		Socket:     filepath.Join(e.dir, "w"+strconv.Itoa(seq)+".sock"),
		SocketUID:  -1,
		SocketGID:  -1,
		Output:     e.out.add,
		ForkServer: fs,
		ForkArgs:   []string{"--script", app, "--directory", e.dir, "--threads", "2"},
	})
	if err == nil {
		t.Cleanup(func() {
			p.Kill()
			<-p.Exited()
		})
	}
	return p, err
}

const helloApp = `
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hi"]
`

// ready forks one worker serving src and waits until it is ready.
func (e *forkEnv) ready(t *testing.T, fs *ForkServer, src string) *Process {
	t.Helper()
	p, err := e.spawn(t, fs, src)
	if err != nil {
		t.Fatal(err)
	}
	within(t, p.Ready(), "forked worker ready")
	return p
}

// wantCleanExit fails unless p exited on its own with status 0 (a worker
// that died with its server would not).
func wantCleanExit(t *testing.T, p *Process, what string) {
	t.Helper()
	var ee *ExitError
	if !errors.As(p.ExitErr(), &ee) || ee.Code != 0 || ee.Signal != 0 {
		t.Errorf("%s %d: %v, want a graceful exit with status 0", what, p.PID(), p.ExitErr())
	}
}

// procStat returns (ppid, pgid) of pid.
func procStat(t *testing.T, pid int) (int, int) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatalf("stat of %d: %v", pid, err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ppid, _ := strconv.Atoi(f[1])
	pgid, _ := strconv.Atoi(f[2])
	return ppid, pgid
}

// gone reports whether pid no longer runs (absent, or a zombie left to
// an init that does not reap).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return f[0] == "Z" || f[0] == "X"
}

// waitGone waits until pid no longer runs. Not our child (its fork
// server reaps it), so there is nothing to wait on but /proc.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !gone(pid) {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("process %d still runs after 10s", pid)
		}
	}
}

func TestForkServerSpawnsAndReaps(t *testing.T) {
	e := newForkEnv(t)
	fs := e.server(t)
	p := e.ready(t, fs, helloApp)
	if ppid, pgid := procStat(t, p.PID()); ppid != fs.PID() || pgid != p.PID() {
		t.Errorf("worker %d: parent %d, group %d; want parent %d (the fork server), its own group", p.PID(), ppid, pgid, fs.PID())
	}
	cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(p.PID()) + "/cmdline")
	if !strings.HasPrefix(string(cmdline), "python3 pyhost_worker.py --app test/app --script ") {
		t.Errorf("worker's command line %q does not say it is a worker of test/app", cmdline)
	}
	if _, err := os.Stat(p.Socket()); err != nil {
		t.Errorf("socket: %v", err)
	}
	p.Stop(10 * time.Second)
	within(t, p.Exited(), "worker exit")
	wantCleanExit(t, p, "worker")
	if !gone(p.PID()) {
		t.Errorf("worker %d still runs after its exit was reported", p.PID())
	}
}

func TestForkServerReportsSignals(t *testing.T) {
	e := newForkEnv(t)
	fs := e.server(t)
	ours, err := e.spawn(t, fs, helloApp)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := e.spawn(t, fs, helloApp)
	if err != nil {
		t.Fatal(err)
	}
	within(t, ours.Ready(), "ready")
	within(t, theirs.Ready(), "ready")
	ours.Kill()
	syscall.Kill(theirs.PID(), syscall.SIGKILL) // as the OOM killer would
	within(t, ours.Exited(), "exit")
	within(t, theirs.Exited(), "exit")
	var ee *ExitError
	if !errors.As(ours.ExitErr(), &ee) || ee.Signal != syscall.SIGKILL || ee.External {
		t.Errorf("killed by pyhost: %v", ours.ExitErr())
	}
	if !errors.As(theirs.ExitErr(), &ee) || ee.Signal != syscall.SIGKILL || !ee.External {
		t.Errorf("killed by someone else: %v, want it named as not sent by pyhost", theirs.ExitErr())
	}
}

func TestForkServerImportError(t *testing.T) {
	e := newForkEnv(t)
	fs := e.server(t)
	p, err := e.spawn(t, fs, "raise RuntimeError('not today')\n")
	if err != nil {
		t.Fatal(err)
	}
	within(t, p.Exited(), "exit")
	ie := p.ImportErr()
	if ie == nil || ie.Message != "RuntimeError: not today" || !strings.Contains(ie.Traceback, "Traceback (most recent call last)") {
		t.Fatalf("import error %+v", ie)
	}
	var ee *ExitError
	if !errors.As(p.ExitErr(), &ee) || ee.Code != 3 {
		t.Fatalf("exit %v, want status 3", p.ExitErr())
	}
	// The server is unharmed.
	e.ready(t, fs, helloApp)
}

func TestForkServerDeathTakesItsWorkers(t *testing.T) {
	e := newForkEnv(t)
	fs := e.server(t)
	var ps []*Process
	for i := 0; i < 2; i++ {
		p := e.ready(t, fs, helloApp)
		ps = append(ps, p)
	}
	syscall.Kill(fs.PID(), syscall.SIGKILL)
	for _, p := range ps {
		within(t, p.Exited(), "worker's exit after its fork server died")
		if !errors.Is(p.ExitErr(), ErrForkServer) {
			t.Errorf("exit %v, want it to name the fork server", p.ExitErr())
		}
	}
	for _, p := range ps {
		waitGone(t, p.PID())
	}
	if _, err := e.spawn(t, fs, helloApp); !errors.Is(err, ErrForkServer) {
		t.Errorf("spawn from a dead server: %v", err)
	}
}

func TestForkServerRetiresAfterItsLastWorker(t *testing.T) {
	e := newForkEnv(t)
	fs := e.server(t)
	p := e.ready(t, fs, helloApp)
	fs.Retire()
	if _, err := e.spawn(t, fs, helloApp); !errors.Is(err, ErrForkServer) {
		t.Errorf("spawn from a retired server: %v", err)
	}
	// The worker still serves out its life: stopped gracefully, it exits
	// 0, which it would not had its server gone (parent-death signal).
	p.Stop(10 * time.Second)
	within(t, p.Exited(), "worker exit")
	wantCleanExit(t, p, "worker of a retired server")
	within(t, fs.Exited(), "retired server's exit after its last worker")
}

func TestForkServerStaleAfterInstall(t *testing.T) {
	userBase := filepath.Join(t.TempDir(), "userbase")
	e := newForkEnv(t, "PYTHONUSERBASE="+userBase)
	fs := e.server(t)
	e.ready(t, fs, helloApp)
	// A pip install --user creates the user site directory: .pth files
	// there would be unknown to the server's forks.
	cmd := exec.Command(e.python, "-c", "import site; print(site.getusersitepackages())")
	cmd.Env = e.env
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	site := strings.TrimSpace(string(out))
	if !strings.HasPrefix(site, userBase) {
		t.Skipf("user site %q is not under PYTHONUSERBASE", site)
	}
	if err := os.MkdirAll(site, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = e.spawn(t, fs, helloApp)
	if !errors.Is(err, ErrForkServerStale) {
		t.Fatalf("spawn after an install into the user site: %v, want ErrForkServerStale", err)
	}
}

func TestForkServerKillRightAfterSpawn(t *testing.T) {
	e := newForkEnv(t)
	fs := e.server(t)
	// The master may stop a worker the moment it hears of it (a reload
	// aborted, say): its process group must exist by then.
	for i := 0; i < 5; i++ {
		p, err := e.spawn(t, fs, helloApp)
		if err != nil {
			t.Fatal(err)
		}
		p.Kill()
		within(t, p.Exited(), "exit of a worker killed at once")
		waitGone(t, p.PID())
	}
}

func TestForkServerIgnoresStraySigterm(t *testing.T) {
	e := newForkEnv(t)
	fs := e.server(t)
	p := e.ready(t, fs, helloApp)
	// Someone's `kill` of the server: its workers would die with it.
	syscall.Kill(fs.PID(), syscall.SIGTERM)
	q, err := e.spawn(t, fs, helloApp) // a round trip: the signal was handled by now
	if err != nil {
		t.Fatalf("spawn after SIGTERM: %v", err)
	}
	within(t, q.Ready(), "ready")
	// The workers' own SIGTERM (reset after the fork) is still their
	// graceful stop.
	for _, w := range []*Process{p, q} {
		w.Stop(10 * time.Second)
		within(t, w.Exited(), "worker exit")
		wantCleanExit(t, w, "worker")
	}
}

// stopServer SIGSTOPs fs for the rest of the test (SIGKILL at cleanup
// ends it either way).
func stopServer(t *testing.T, fs *ForkServer) {
	t.Helper()
	if err := syscall.Kill(fs.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(fs.PID(), syscall.SIGCONT) })
}

// Issue 11 item 7: a stopped fork server reaps nothing and reports
// nothing; its workers' exits are seen anyway (pidfd), and it forks no
// more.
func TestStoppedForkServerDoesNotHoldExits(t *testing.T) {
	e := newForkEnv(t)
	fs := e.server(t)
	killed := e.ready(t, fs, helloApp)
	stopped := e.ready(t, fs, helloApp)
	stopServer(t, fs)

	syscall.Kill(killed.PID(), syscall.SIGKILL) // someone's kill -9
	within(t, killed.Exited(), "exit of a killed worker under a stopped server")
	if !errors.Is(killed.ExitErr(), ErrNoReport) {
		t.Errorf("killed worker: %v, want ErrNoReport", killed.ExitErr())
	}
	if err := fs.Err(); err == nil {
		t.Error("a server that did not report an exit still counts as healthy")
	}

	// The master's own stop of the other worker (a reload, a recycle):
	// graceful_timeout holds without the server.
	stopped.Stop(10 * time.Second)
	within(t, stopped.Exited(), "exit of a worker stopped under a stopped server")
	if !errors.Is(stopped.ExitErr(), ErrNoReport) {
		t.Errorf("stopped worker: %v, want ErrNoReport", stopped.ExitErr())
	}
	// Retired with no child left, the stuck server is killed and reaped.
	fs.Retire()
	within(t, fs.Exited(), "exit of a stuck server with no child left")
}

func TestStoppedForkServerRefusesSpawnsInTime(t *testing.T) {
	e := newForkEnv(t)
	fs := e.server(t)
	worker := e.ready(t, fs, helloApp)
	stopServer(t, fs)
	start := time.Now()
	_, err := e.spawn(t, fs, helloApp)
	if !errors.Is(err, ErrForkServer) {
		t.Fatalf("spawn from a stopped server: %v, want ErrForkServer", err)
	}
	t.Logf("refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if fs.Err() == nil {
		t.Error("a server that missed a spawn still counts as healthy")
	}
	if _, err := e.spawn(t, fs, helloApp); !errors.Is(err, ErrForkServer) {
		t.Errorf("second spawn from a stuck server: %v", err)
	}
	// Its worker serves on; retired, the server waits for it, as a
	// healthy one would: killing it would take the worker along.
	fs.Retire()
	select {
	case <-fs.Exited():
		t.Fatal("a stuck server was killed while its worker still ran")
	default:
	}
	if gone(worker.PID()) {
		t.Fatal("the stuck server's worker died")
	}
	worker.Kill()
	within(t, worker.Exited(), "worker exit")
	within(t, fs.Exited(), "exit of the stuck server after its last worker")
}
