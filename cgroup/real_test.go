package cgroup

// Tests on this machine's real kernel, as root. Each builds its own tree
// at the hierarchies' roots under a unique name, pyhost-test-PID-N, and
// removes it in t.Cleanup; no group it did not make is touched. A part
// the host does not have is skipped, and the skip says which.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var treeSeq atomic.Int64

// realHost detects the host, skipping unless root on a host with cgroups.
func realHost(t testing.TB) Host {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates cgroups")
	}
	h, err := Detect()
	if err != nil {
		t.Fatal(err)
	}
	if h.Mode == ModeNone {
		t.Skip("this host has no cgroups")
	}
	return h
}

// realTree opens a test tree on h and removes it when the test ends.
func realTree(t testing.TB, h Host) *Tree {
	t.Helper()
	return realTreeWith(t, h, realKernel)
}

func realTreeWith(t testing.TB, h Host, k kernel) *Tree {
	t.Helper()
	name := fmt.Sprintf("pyhost-test-%d-%d", os.Getpid(), treeSeq.Add(1))
	tr, err := open(k, h, TreeOptions{Parent: "/", Name: name, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tr.Kill(ctx); err != nil {
			t.Errorf("cleanup: kill: %v", err)
		}
		if err := tr.Remove(ctx); err != nil {
			t.Errorf("cleanup: remove: %v", err)
		}
		for _, d := range tr.bases() {
			if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("cleanup: %s is still there (%v)", d, err)
			}
		}
	})
	return tr
}

// bases are the tree's base directories in every hierarchy.
func (t *Tree) bases() []string {
	var out []string
	for _, h := range t.hiers() {
		out = append(out, h.base)
	}
	return out
}

// onSpawnThread runs fn on a locked OS thread that is not the main one,
// as privdrop's spawner thread is.
func onSpawnThread(fn func()) {
	done := make(chan struct{})
	var run func()
	run = func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if unix.Gettid() == os.Getpid() {
			// The main thread is locked by this goroutine now, so a new
			// goroutine runs elsewhere.
			inner := make(chan struct{})
			go func() { run(); close(inner) }()
			<-inner
			return
		}
		fn()
	}
	go func() { run(); close(done) }()
	<-done
}

// start starts cmd in g from a spawner-like thread and checks that the
// thread went back to the daemon's groups.
func start(t *testing.T, g *Group, cmd *exec.Cmd) {
	t.Helper()
	var err error
	var before, after []byte
	onSpawnThread(func() {
		self := fmt.Sprintf("/proc/self/task/%d/cgroup", unix.Gettid())
		before, _ = os.ReadFile(self)
		err = g.Start(cmd)
		after, _ = os.ReadFile(self)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	if string(before) != string(after) {
		t.Fatalf("the spawner thread did not go home:\nbefore:\n%safter:\n%s", before, after)
	}
}

// cgroupsOf parses /proc/PID/cgroup: hierarchy key ("" for v2, else the
// controller list) to path.
func cgroupsOf(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	return parseProcCgroup(b)
}

// in checks that pid is in g in every hierarchy it should be.
func in(t *testing.T, pid int, g *Group) {
	t.Helper()
	cg := cgroupsOf(t, pid)
	if g.v2 != "" {
		if want := g.t.v2.cgPath(g.v2); cg[""] != want {
			t.Errorf("pid %d: v2 cgroup %q, want %q", pid, cg[""], want)
		}
	}
	for _, d := range g.place {
		key := ""
		for k := range cg {
			if k != "" && slices.Contains(strings.Split(k, ","), d.h.ctrls[0]) {
				key = k
			}
		}
		if want := d.h.cgPath(d.dir); cg[key] != want {
			t.Errorf("pid %d: %s cgroup %q, want %q", pid, key, cg[key], want)
		}
	}
}

// python returns the real interpreter (not a pyenv shim script, whose
// bash would be one more process), or skips.
func python(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Skip("no python3")
	}
	return strings.TrimSpace(string(out))
}

// readLine reads one line of r, or fails after d.
func readLine(t *testing.T, r *bufio.Reader, d time.Duration) string {
	t.Helper()
	ch := make(chan string, 1)
	go func() {
		s, _ := r.ReadString('\n')
		ch <- strings.TrimSpace(s)
	}()
	select {
	case s := <-ch:
		return s
	case <-time.After(d):
		t.Fatalf("no line from the child in %v", d)
		return ""
	}
}

// wait waits for cmd to exit, or fails after d.
func wait(t *testing.T, cmd *exec.Cmd, d time.Duration) error {
	t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- cmd.Wait() }()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		t.Fatalf("%s still running after %v", cmd.Path, d)
		return nil
	}
}

func killedBy(err error) syscall.Signal {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return ws.Signal()
		}
	}
	return 0
}

func TestRealDetect(t *testing.T) {
	h, err := Detect()
	if err != nil {
		t.Fatal(err)
	}
	t.Log(h)
	if h.V2 != nil {
		if _, err := os.Stat(filepath.Join(h.V2.Dir, "cgroup.procs")); err != nil {
			t.Errorf("v2 dir %s: %v", h.V2.Dir, err)
		}
	}
	for _, v := range h.V1 {
		if _, err := os.Stat(filepath.Join(v.Dir, "cgroup.procs")); err != nil {
			t.Errorf("v1 %v dir %s: %v", v.Controllers, v.Dir, err)
		}
	}
}

// A child started with Start is in the app's group from its first
// instruction, in cgroup2 and in every v1 hierarchy; a worker's leaf
// takes its child in cgroup2 and leaves it in the app's v1 groups; and
// killing the leaf spares the app's other processes.
func TestRealPlacement(t *testing.T) {
	tr := realTree(t, realHost(t))
	t.Log(tr)
	app, err := tr.App("alice", "blog")
	if err != nil {
		t.Fatal(err)
	}
	server := exec.Command("sleep", "30")
	start(t, app, server)
	in(t, server.Process.Pid, app)

	// A kernel before 5.7 has no CLONE_INTO_CGROUP: the child joins its
	// v2 group right after the start.
	old, err := tr.App("alice", "old-kernel")
	if err != nil {
		t.Fatal(err)
	}
	tr.cloneInto = false
	late := exec.Command("sleep", "30")
	start(t, old, late)
	tr.cloneInto = true
	if late.SysProcAttr != nil && late.SysProcAttr.UseCgroupFD {
		t.Error("CLONE_INTO_CGROUP used on a kernel taken as before 5.7")
	}
	in(t, late.Process.Pid, old)

	if tr.v2 == nil {
		t.Skip("no cgroup2 on this host: no worker leaves")
	}
	w, err := app.Worker("w1")
	if err != nil {
		t.Fatal(err)
	}
	worker := exec.Command("sleep", "30")
	start(t, w, worker)
	in(t, worker.Process.Pid, w)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if sig := killedBy(wait(t, worker, 5*time.Second)); sig != syscall.SIGKILL {
		t.Errorf("worker: killed by %v, want SIGKILL", sig)
	}
	if err := unix.Kill(server.Process.Pid, 0); err != nil {
		t.Errorf("killing the worker's leaf took the app's other process: %v", err)
	}
	if err := w.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(w.v2); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("worker leaf still there: %v", err)
	}

	// Attach: a process born in the app (as a fork server's child is)
	// moves into its worker's leaf.
	w2, err := app.Worker("w2")
	if err != nil {
		t.Fatal(err)
	}
	forked := exec.Command("sleep", "30")
	start(t, app, forked)
	if err := w2.Attach(forked.Process.Pid); err != nil {
		t.Fatal(err)
	}
	in(t, forked.Process.Pid, w2)
}

// selfMove is a forked worker placing itself in its leaf, as the first
// thing it does; then it tries to leave the app's group for the tree's
// base, which must be refused.
const selfMove = `echo 0 > "$1/cgroup.procs" || exit 1
cat /proc/self/cgroup | grep '^0::'
if echo 0 > "$2/cgroup.procs" 2>/dev/null; then echo escaped; else echo refused; fi`

// A worker of an unprivileged user, born in the app's group, moves
// itself into its leaf (LetMove), and cannot move itself out of the app.
func TestRealLetMove(t *testing.T) {
	h := realHost(t)
	if h.V2 == nil {
		t.Skip("no cgroup2: no leaves")
	}
	tr := realTree(t, h)
	app, err := tr.App("nobody", "site")
	if err != nil {
		t.Fatal(err)
	}
	w, err := app.Worker("w1")
	if err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	for _, g := range []*Group{app, w} {
		if err := g.LetMove(nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("/bin/sh", "-c", selfMove, "sh", w.v2, tr.v2.base)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	start(t, app, cmd)
	if got, want := readLine(t, r, 10*time.Second), "0::"+tr.v2.cgPath(w.v2); got != want {
		t.Errorf("the worker is in %q, want %q", got, want)
	}
	if got := readLine(t, r, 10*time.Second); got != "refused" {
		t.Errorf("the user's process moved out of its app: %q", got)
	}
	if err := wait(t, cmd, 10*time.Second); err != nil {
		t.Errorf("child: %v", err)
	}
	if err := tr.apps().LetMove(0, 0); err == nil {
		t.Error("LetMove on base/apps succeeded")
	}
}

// doubleFork is a child that leaves its process group and session the
// way a daemonizing app does (os.fork(); os.setsid(); os.fork()) and
// prints the grandchild's pid.
const doubleFork = `
import os, sys, time
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, b"%d\n" % os.getpid())
        time.sleep(60)
    os._exit(0)
os.wait()
sys.stdout.write(os.read(r, 64).decode())
sys.stdout.flush()
time.sleep(60)
`

// Kill reaches a grandchild that setsid() and double-forked away from
// the process the daemon started: with cgroup.kill, with the fallback
// (freeze, signal, thaw) on cgroup2, and with the v1 freezer on a host
// seen as v1-only.
func TestRealKillDoubleFork(t *testing.T) {
	h := realHost(t)
	py := python(t)
	run := func(t *testing.T, tr *Tree, leaf bool) {
		app, err := tr.App("alice", "daemonizer")
		if err != nil {
			t.Fatal(err)
		}
		if leaf { // a worker's leaf: cgroup.kill, where the kernel has it
			if app, err = app.Worker("w1"); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(py, "-c", doubleFork)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		start(t, app, cmd)
		gpid, err := strconv.Atoi(readLine(t, bufio.NewReader(out), 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if sid, _ := unix.Getsid(gpid); sid == cmd.Process.Pid {
			t.Fatalf("grandchild %d is in the child's session", gpid)
		}
		in(t, gpid, app)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := app.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		if sig := killedBy(wait(t, cmd, 5*time.Second)); sig != syscall.SIGKILL {
			t.Errorf("child: killed by %v, want SIGKILL", sig)
		}
		if alive(gpid) {
			t.Errorf("grandchild %d survived Kill", gpid)
		}
		if err := app.Remove(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("cgroup.kill", func(t *testing.T) {
		if h.V2 == nil {
			t.Skip("no cgroup2: no cgroup.kill")
		}
		run(t, realTree(t, h), true)
	})
	t.Run("app-freeze-v2", func(t *testing.T) {
		if h.V2 == nil {
			t.Skip("no cgroup2")
		}
		run(t, realTree(t, h), false) // an app's group is killed by freezing, see Kill
	})
	t.Run("freeze-v2", func(t *testing.T) {
		if h.V2 == nil {
			t.Skip("no cgroup2")
		}
		k := realKernel
		k.write = func(path, value string) error {
			if filepath.Base(path) == "cgroup.kill" {
				return &fs.PathError{Op: "open", Path: path, Err: unix.ENOENT} // as before Linux 5.14
			}
			return realKernel.write(path, value)
		}
		run(t, realTreeWith(t, h, k), true)
	})
	t.Run("freezer-v1", func(t *testing.T) {
		v1 := v1Only(t)
		if v1.v1("freezer") == nil {
			t.Skip("no v1 freezer hierarchy")
		}
		run(t, realTree(t, v1), false)
	})
}

// An app's group takes new children after it was killed (its next fork
// server, after pyctl stop and start). Through cgroup.kill it would not,
// on kernels with per-group kill counts: the child is SIGKILLed at birth
// (seen on 6.18), which is why Kill freezes an app's group instead.
func TestRealStartAfterKill(t *testing.T) {
	h := realHost(t)
	tr := realTree(t, h)
	app, err := tr.App("alice", "again")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		cmd := exec.Command("/bin/sleep", "0.1")
		start(t, app, cmd)
		if err := wait(t, cmd, 10*time.Second); err != nil {
			t.Fatalf("start %d, after %d kills: %v", i+1, i, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := app.Kill(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// v1Only detects the host as if it had no cgroup2 mount.
func v1Only(t *testing.T) Host {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, l := range strings.Split(string(mi), "\n") {
		if !strings.Contains(l, " - cgroup2 ") {
			keep = append(keep, l)
		}
	}
	f := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(f, []byte(strings.Join(keep, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := detect(realKernel, "/proc/self/cgroup", f)
	if err != nil {
		t.Fatal(err)
	}
	if h.Mode != ModeV1 {
		t.Skipf("no v1 hierarchies on this host (%s)", h)
	}
	return h
}

// alive reports whether pid runs: not gone, not a zombie waiting for
// init to reap it.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// hostHas skips unless the tree enforces key.
func hostHas(t *testing.T, tr *Tree, key string) {
	t.Helper()
	for _, lim := range limitKeys {
		if lim.key == key {
			if why := tr.missing(lim.controller); why != "" {
				t.Skipf("%s: %s", key, why)
			}
		}
	}
}

// allocate grows by 1 MiB (touched) a step up to 512 MiB, then exits 0;
// a kernel limit below that kills it first.
const allocate = `
import sys, time
held = []
end = time.time() + 10
while len(held) < 512 and time.time() < end:
    held.append(b"\x01" * (1 << 20))
sys.exit(0)
`

// An allocator past memory_max is OOM-killed by the kernel, and
// WatchOOM and Stats say so.
func TestRealMemoryMaxOOM(t *testing.T) {
	tr := realTree(t, realHost(t))
	hostHas(t, tr, "memory_max")
	py := python(t)
	app, err := tr.App("alice", "hog")
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Apply(Limits{MemoryMax: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ooms, err := app.WatchOOM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", allocate)
	start(t, app, cmd)
	err = wait(t, cmd, 15*time.Second)
	if sig := killedBy(err); sig != syscall.SIGKILL {
		t.Fatalf("the allocator ended with %v, want the OOM killer's SIGKILL", err)
	}
	select {
	case ev, ok := <-ooms:
		if !ok {
			t.Fatal("WatchOOM closed without an event")
		}
		if ev.Kills < 1 || ev.Total < 1 {
			t.Errorf("event %+v", ev)
		}
	case <-ctx.Done():
		t.Fatal("no OOM event")
	}
	st, err := app.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Have&HaveOOMKills == 0 || st.OOMKills < 1 {
		t.Errorf("stats: %+v, want an OOM kill", st)
	}
	if st.Have&HaveMemoryPeak != 0 && st.MemoryPeak > 64<<20 {
		t.Errorf("peak %d above memory_max", st.MemoryPeak)
	}
	t.Logf("stats after the OOM kill: %+v", st)
}

// forkLoop forks children that sleep, up to 200 or 5 s, and prints how
// many forks succeeded and how many the kernel refused.
const forkLoop = `
import os, sys, time
ok = failed = 0
end = time.time() + 5
while ok + failed < 200 and time.time() < end:
    try:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        ok += 1
    except OSError:
        failed += 1
        if failed >= 5:
            break
print(ok, failed, flush=True)
time.sleep(30)
`

// tasks_max stops a fork loop.
func TestRealTasksMax(t *testing.T) {
	tr := realTree(t, realHost(t))
	hostHas(t, tr, "tasks_max")
	py := python(t)
	app, err := tr.App("alice", "forker")
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Apply(Limits{TasksMax: 16}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", forkLoop)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start(t, app, cmd)
	var ok, failed int
	if _, err := fmt.Sscan(readLine(t, bufio.NewReader(out), 10*time.Second), &ok, &failed); err != nil {
		t.Fatal(err)
	}
	if failed == 0 || ok >= 16 {
		t.Errorf("forked %d, refused %d: want refusals before 16 tasks", ok, failed)
	}
	st, err := app.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Have&HaveTasks == 0 || st.Tasks > 16 {
		t.Errorf("tasks %d (have %v), want at most 16", st.Tasks, st.Have&HaveTasks != 0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := app.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	wait(t, cmd, 5*time.Second)
}

// spin burns CPU for at most 3 s, having said it started.
const spin = `
import time
print("spinning", flush=True)
end = time.time() + 3
while time.time() < end:
    pass
`

// cpu_max "20%" holds a spinner to about a fifth of one CPU, measured
// over one second of the kernel's own accounting. The bound is generous
// (30%): this checks the kernel enforces a cap, not its precision.
func TestRealCPUMax(t *testing.T) {
	tr := realTree(t, realHost(t))
	hostHas(t, tr, "cpu_max")
	py := python(t)
	app, err := tr.App("alice", "spinner")
	if err != nil {
		t.Fatal(err)
	}
	lim, err := ParseCPUMax("20%")
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Apply(Limits{CPUMax: lim}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", spin)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start(t, app, cmd)
	readLine(t, bufio.NewReader(out), 10*time.Second)
	s0, err := app.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s0.Have&HaveCPU == 0 {
		t.Skip("no CPU usage figure on this host")
	}
	t0 := time.Now()
	<-time.After(time.Second) // the measuring window
	s1, err := app.Stats()
	if err != nil {
		t.Fatal(err)
	}
	share := float64(s1.CPUUsage-s0.CPUUsage) / float64(time.Since(t0))
	t.Logf("spinner used %.1f%% of one CPU under cpu_max 20%%; throttled %v", 100*share, s1.Throttled)
	if share > 0.30 {
		t.Errorf("spinner used %.1f%% of a CPU, cap 20%%", 100*share)
	}
	if share < 0.02 {
		t.Errorf("spinner used %.1f%% of a CPU: did it run?", 100*share)
	}
	if s1.Have&HaveThrottled != 0 && s1.Throttled == 0 {
		t.Errorf("no throttled time under the cap")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := app.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	wait(t, cmd, 5*time.Second)
}

// Limits land in the kernel's files and read back as written, and
// zero lifts them again.
func TestRealApplyReadBack(t *testing.T) {
	tr := realTree(t, realHost(t))
	user, err := tr.User("bob")
	if err != nil {
		t.Fatal(err)
	}
	lim := Limits{MemoryMax: 256 << 20, MemoryHigh: 200 << 20, CPUWeight: 50, CPUMax: CPUMax{Quota: 50 * time.Millisecond, Period: 100 * time.Millisecond}, TasksMax: 64}
	if err := user.Apply(lim); err != nil && !errors.Is(err, ErrUnsupported) {
		t.Fatal(err)
	} else if err != nil {
		t.Logf("not enforced here: %v", err)
	}
	app, err := tr.App("bob", "shop")
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Apply(Limits{IOWeight: 200}); err != nil {
		if !errors.Is(err, ErrUnsupported) {
			t.Fatal(err)
		}
		t.Logf("io_weight: %v", err)
	}
	read := func(controller, v2file, v1file string) string {
		t.Helper()
		var file string
		if tr.hasV2(controller) {
			file = filepath.Join(user.v2, v2file)
		} else if d := user.v1dir(controller); d != "" {
			file = filepath.Join(d, v1file)
		} else {
			return ""
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	checks := []struct{ controller, v2file, v1file, v2want, v1want string }{
		{"memory", "memory.max", "memory.limit_in_bytes", "268435456", "268435456"},
		{"memory", "memory.high", "memory.soft_limit_in_bytes", "209715200", "209715200"},
		{"cpu", "cpu.weight", "cpu.shares", "50", "512"},
		{"cpu", "cpu.max", "cpu.cfs_quota_us", "50000 100000", "50000"},
		{"pids", "pids.max", "pids.max", "64", "64"},
	}
	for _, c := range checks {
		want := c.v1want
		if tr.hasV2(c.controller) {
			want = c.v2want
		}
		if got := read(c.controller, c.v2file, c.v1file); got != "" && got != want {
			t.Errorf("%s/%s: %q, want %q", c.v2file, c.v1file, got, want)
		}
	}
	if err := user.Apply(Limits{}); err != nil {
		t.Fatal(err)
	}
	lifted := map[string]string{"memory.max": "max", "memory.limit_in_bytes": "9223372036854771712", "cpu.max": "max 100000", "cpu.cfs_quota_us": "-1", "pids.max": "max"}
	for _, c := range checks {
		for _, f := range []string{c.v2file, c.v1file} {
			want, ok := lifted[f]
			if !ok {
				continue
			}
			if tr.hasV2(c.controller) != (f == c.v2file) && c.v2file != c.v1file {
				continue
			}
			if got := read(c.controller, c.v2file, c.v1file); got != "" && got != want {
				t.Errorf("after lifting, %s: %q, want %q", f, got, want)
			}
		}
	}
}

// Remove takes every directory of a group away, in every hierarchy, once
// it is empty; before that, rmdir's EBUSY is retried until the context
// ends.
func TestRealRemove(t *testing.T) {
	tr := realTree(t, realHost(t))
	app, err := tr.App("carol", "site")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "30")
	start(t, app, cmd)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err = app.Remove(ctx)
	cancel()
	if err == nil {
		t.Fatal("Remove of a group with a process in it succeeded")
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := app.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := app.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range append([]string{app.v2}, dirsOf(app.v1)...) {
		if d == "" {
			continue
		}
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still there: %v", d, err)
		}
	}
	wait(t, cmd, 5*time.Second)
}

func dirsOf(ds []v1dir) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.dir)
	}
	return out
}
