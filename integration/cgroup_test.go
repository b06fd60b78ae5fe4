package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/control"
)

// Containment (issue 14): root, real users, the real kernel. On this
// project's hybrid hosts the limits are v1 controllers and membership
// and kill are the cgroup2 hierarchy's; each test skips, saying why,
// where the host lacks what it needs.
//
// Each test's daemon has its own cgroup tree (named after its state
// dir), port, dirs and users (pyh-cgPREFIX-NAME), so the tests run in
// parallel (harness_test.go), but for TestCgroupCPUMax: see there.

// needCgroups skips t unless the host's cgroups would enforce l (and
// give worker leaves, for what needs cgroup.kill).
func needCgroups(t *testing.T, l cgroup.Limits, leaves bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("cgroups are written by a root daemon: needs root")
	}
	h, err := cgroup.Detect()
	if err != nil {
		t.Skipf("cannot read the host's cgroups: %v", err)
	}
	if h.Mode == cgroup.ModeNone || !h.Writable {
		t.Skipf("no writable cgroup hierarchy here: %s", h)
	}
	if err := h.Check(l); err != nil {
		t.Skipf("this host cannot enforce it: %v", err)
	}
	if leaves && h.V2 == nil {
		t.Skipf("no cgroup2 hierarchy for worker leaves and cgroup.kill: %s", h)
	}
}

// containApp answers / with its name and pid, and misbehaves on demand:
// /eat allocates until something stops it, /bomb forks until fork fails,
// /spin burns CPU for ?s= seconds, /daemonize double-forks a child that
// leaves the worker's process group and session and sleeps, and answers
// with its pid, /hang sleeps past any request_timeout.
const containApp = `import os, sys, time

def _daemonize():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(w, str(os.getpid()).encode())
            os.close(w)
            for fd in (0, 1, 2):
                try:
                    os.close(fd)
                except OSError:
                    pass
            time.sleep(600)
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    got = os.read(r, 64)
    os.close(r)
    return got.decode()

def _bomb():
    r, w = os.pipe()
    kids, why = [], "no limit met"
    for _ in range(5000):
        try:
            pid = os.fork()
        except OSError as e:
            why = "stopped: " + type(e).__name__
            break
        if pid == 0:
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        kids.append(pid)
    os.close(w)
    os.close(r)
    for pid in kids:
        os.waitpid(pid, 0)
    return "%s after %d forks" % (why, len(kids))

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/eat":
        hog = []
        for _ in range(4096):
            hog.append(bytearray(1 << 20))
        body = "ate %d MiB" % len(hog)
    elif path == "/bomb":
        body = _bomb()
    elif path == "/spin":
        secs = float(environ.get("QUERY_STRING", "s=1").split("=")[1])
        end = time.time() + secs
        n = 0
        while time.time() < end:
            n += 1
        body = "spun %d" % n
    elif path == "/daemonize":
        body = _daemonize()
    elif path == "/hang":
        time.sleep(30)
        body = "woke"
    else:
        body = "%s %d" % (os.environ.get("APP_NAME", "?"), os.getpid())
    body = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`

// deployContain writes u's app NAME running containApp with extra keys.
func deployContain(t *testing.T, u sysUser, name, domain, extra string) {
	t.Helper()
	writeOwned(t, u, filepath.Join(u.home, name, "wsgi.py"), containApp, 0o644)
	writeOwned(t, u, filepath.Join(userApps(u), name+".toml"),
		fmt.Sprintf("domains = [%q]\nscript = \"wsgi.py\"\ndirectory = \"~/%s\"\nprocesses = 1\nthreads = 2\n%s\n\n[env]\nAPP_NAME = %q\n", domain, name, extra, name), 0o644)
}

// statusOf is app KEY's row of pyctl status --json.
func (d *sysd) statusOf(key string) control.AppStatus {
	d.t.Helper()
	out, err := d.pyctl("root", "status", "--json")
	if err != nil {
		d.t.Fatalf("pyctl status --json: %v\n%s", err, out)
	}
	var apps []control.AppStatus
	if err := json.Unmarshal([]byte(out), &apps); err != nil {
		d.t.Fatalf("pyctl status --json: %v\n%s", err, out)
	}
	for _, a := range apps {
		if a.User+"/"+a.Name == key {
			return a
		}
	}
	d.t.Fatalf("no %s in pyctl status --json:\n%s", key, out)
	return control.AppStatus{}
}

// steady asks host for / over and over, from now until stop is called,
// and returns how many requests it made and which failed. Bounded: at
// most 2,000 requests, 60 s.
func (d *sysd) steady(host, want string) (stop func() (int, []string)) {
	var (
		n     atomic.Int64
		mu    sync.Mutex
		fails []string
		quit  = make(chan struct{})
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		deadline := time.Now().Add(60 * time.Second)
		for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
			select {
			case <-quit:
				return
			default:
			}
			n.Add(1)
			req, _ := http.NewRequest("GET", "http://"+d.addr+"/", nil)
			req.Host = host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				mu.Lock()
				fails = append(fails, err.Error())
				mu.Unlock()
				continue
			}
			var b strings.Builder
			buf := make([]byte, 512)
			for {
				k, err := resp.Body.Read(buf)
				b.Write(buf[:k])
				if err != nil {
					break
				}
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.HasPrefix(b.String(), want+" ") {
				mu.Lock()
				fails = append(fails, fmt.Sprintf("%d %q", resp.StatusCode, b.String()))
				mu.Unlock()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return func() (int, []string) {
		close(quit)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return int(n.Load()), fails
	}
}

// An app allocating past memory_max is killed by the kernel's OOM
// killer, not the daemon's host: the log names it with the limit, the
// app's worker is replaced, pyctl status counts it, and another user's
// app serves throughout without a failed request.
func TestCgroupOOMKill(t *testing.T) {
	t.Parallel()
	needCgroups(t, cgroup.Limits{MemoryMax: 64 << 20}, false)
	const hogU, calmU = "pyh-cgoom-hog", "pyh-cgoom-calm"
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"hog.test\"]\n\n[users.%s]\ndomains = [\"calm.test\"]\n", hogU, calmU))
	hog, calm := makeUser(t, hogU), makeUser(t, calmU)
	deployContain(t, hog, "hog", "hog.test", `memory_max = "64MiB"`)
	deployContain(t, calm, "calm", "calm.test", "")
	d.start()
	if code, body := d.get("hog.test", "/"); code != 200 || !strings.HasPrefix(body, "hog ") {
		t.Fatalf("hog: %d %q", code, body)
	}
	before := d.statusOf(hogU + "/hog")
	if before.Cgroup == "" || before.MemoryMaxBytes != 64<<20 {
		t.Fatalf("hog's status has no cgroup or memory_max: %+v", before)
	}

	stop := d.steady("calm.test", "calm")
	code, body := d.get("hog.test", "/eat")
	if code == 200 {
		t.Errorf("/eat answered %d %q: memory_max did not stop it", code, body)
	}
	eventually(t, 20*time.Second, "the OOM kill logged with the limit", func() bool {
		return strings.Contains(d.logs.String(), "killed by the kernel's OOM killer: memory.max 64MiB reached")
	})
	eventually(t, 20*time.Second, "hog serving again", func() bool {
		code, body := d.get("hog.test", "/")
		return code == 200 && strings.HasPrefix(body, "hog ")
	})
	n, fails := stop()
	if len(fails) > 0 {
		t.Errorf("calm failed %d of %d requests while hog was OOM-killed: %v", len(fails), n, fails)
	}
	after := d.statusOf(hogU + "/hog")
	if after.OOMKills < 1 || after.RestartsByReason[control.RestartOOM] < 1 {
		t.Errorf("status after the kill: oom_kills %d, restarts_by_reason %v", after.OOMKills, after.RestartsByReason)
	}
	if after.MemoryCurrentBytes <= 0 || after.Tasks <= 0 || after.CgroupCPUSeconds <= 0 {
		t.Errorf("status lacks the cgroup's figures: %+v", after)
	}
	if c := d.statusOf(calmU + "/calm"); c.OOMKills != 0 || c.RestartsByReason[control.RestartOOM] != 0 {
		t.Errorf("calm counts an OOM kill: %+v", c)
	}
	out, _ := d.pyctl(hogU, "status")
	if !strings.Contains(out, "1 OOM kill") || !strings.Contains(out, "oom 1") {
		t.Errorf("pyctl status does not show the kill:\n%s", out)
	}
}

// A fork bomb stops at tasks_max; another app serves meanwhile.
func TestCgroupTasksMax(t *testing.T) {
	t.Parallel()
	needCgroups(t, cgroup.Limits{TasksMax: 40}, false)
	const bombU, calmU = "pyh-cgtm-bomb", "pyh-cgtm-calm"
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"bomb.test\"]\n\n[users.%s]\ndomains = [\"calm.test\"]\n", bombU, calmU))
	bomb, calm := makeUser(t, bombU), makeUser(t, calmU)
	deployContain(t, bomb, "bomb", "bomb.test", "tasks_max = 40")
	deployContain(t, calm, "calm", "calm.test", "")
	d.start()
	stop := d.steady("calm.test", "calm")
	code, body := d.get("bomb.test", "/bomb")
	n, fails := stop()
	if code != 200 || !strings.HasPrefix(body, "stopped: BlockingIOError after ") {
		t.Fatalf("/bomb: %d %q, want it stopped by EAGAIN", code, body)
	}
	forks, _ := strconv.Atoi(body[strings.LastIndex(strings.TrimSuffix(body, " forks"), " ")+1 : len(body)-len(" forks")])
	if forks <= 0 || forks >= 40 {
		t.Errorf("%d forks before EAGAIN, want between 1 and 39 (tasks_max 40 counts the fork server and worker threads too)", forks)
	}
	if len(fails) > 0 {
		t.Errorf("calm failed %d of %d requests during the fork bomb: %v", len(fails), n, fails)
	}
	if code, body := d.get("bomb.test", "/"); code != 200 || !strings.HasPrefix(body, "bomb ") {
		t.Errorf("bomb after its bomb: %d %q", code, body)
	}
}

// cpu_max = "20%" holds: the CPU time the kernel counts for a spinning
// app is at most about a fifth of the time it spun, and the kernel
// reports it throttled. Elapsed time is the test's own measure; the
// machine being slow makes the app's share smaller, never larger.
//
// Serial: the kernel says the app was throttled only if it got its 20%
// of a CPU, which a machine busy with the parallel tests may not give
// it.
func TestCgroupCPUMax(t *testing.T) {
	needCgroups(t, cgroup.Limits{CPUMax: cgroup.CPUMax{Quota: 20 * time.Millisecond, Period: 100 * time.Millisecond}}, false)
	const u = "pyh-cgcpu-spin"
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"spin.test\"]\n", u))
	deployContain(t, makeUser(t, u), "spin", "spin.test", `cpu_max = "20%"`)
	d.start()
	before := d.statusOf(u + "/spin")
	start := time.Now()
	if code, body := d.get("spin.test", "/spin?s=3"); code != 200 {
		t.Fatalf("/spin: %d %q", code, body)
	}
	elapsed := time.Since(start).Seconds()
	after := d.statusOf(u + "/spin")
	used := after.CgroupCPUSeconds - before.CgroupCPUSeconds
	t.Logf("spun %.2fs: %.2f CPU seconds (%.0f%%), throttled %.2fs", elapsed, used, 100*used/elapsed, after.ThrottledSeconds)
	if used <= 0 || used > 0.3*elapsed {
		t.Errorf("the app used %.2f CPU seconds in %.2fs, want at most 30%% (cpu_max 20%%)", used, elapsed)
	}
	if after.ThrottledSeconds <= before.ThrottledSeconds {
		t.Errorf("throttled time %.2fs, then %.2fs: the kernel did not hold the app back", before.ThrottledSeconds, after.ThrottledSeconds)
	}
}

// A child an app double-forks (setsid: out of the worker's process
// group and session) dies with its worker when the worker is recycled,
// when the app is stopped, when it is reloaded, and when the daemon is
// stopped (C4).
func TestCgroupNothingEscapes(t *testing.T) {
	t.Parallel()
	needCgroups(t, cgroup.Limits{}, true)
	const u = "pyh-cgesc-esc"
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"esc.test\"]\n", u))
	deployContain(t, makeUser(t, u), "esc", "esc.test", "request_timeout = \"1s\"\ngraceful_timeout = \"2s\"")
	d.start()
	daemonize := func() int {
		t.Helper()
		var pid int
		eventually(t, 20*time.Second, "a daemonized child", func() bool {
			code, body := d.get("esc.test", "/daemonize")
			pid, _ = strconv.Atoi(body)
			return code == 200 && pid > 0
		})
		if !alive(pid) {
			t.Fatalf("the daemonized child %d is not running", pid)
		}
		return pid
	}
	gone := func(moment string, pid int) {
		t.Helper()
		eventually(t, 15*time.Second, fmt.Sprintf("the double-forked child %d gone on %s", pid, moment), func() bool { return !alive(pid) })
	}

	pid := daemonize()
	if code, _ := d.get("esc.test", "/hang"); code != 504 { // request_timeout recycles the worker
		t.Errorf("/hang: %d, want 504", code)
	}
	gone("worker recycle", pid)

	pid = daemonize()
	if out, err := d.pyctl("root", "stop", u+"/esc"); err != nil {
		t.Fatalf("pyctl stop: %v\n%s", err, out)
	}
	gone("app stop", pid)
	if out, err := d.pyctl("root", "start", u+"/esc"); err != nil {
		t.Fatalf("pyctl start: %v\n%s", err, out)
	}

	pid = daemonize()
	if out, err := d.pyctl("root", "reload", u+"/esc"); err != nil {
		t.Fatalf("pyctl reload: %v\n%s", err, out)
	}
	gone("reload", pid)

	pid = daemonize()
	d.stop()
	gone("daemon SIGTERM", pid)
	// The app's group, killed at the stop, took the fork server started
	// after it (a group killed through cgroup.kill would kill it at birth).
	if strings.Contains(d.logs.String(), "fork server failed") {
		t.Errorf("a fork server failed:\n%s", d.logs)
	}
}

// A user's [users.NAME] max_memory is the kernel's limit on all their
// apps together: an app with no memory_max of its own that allocates
// past it is stopped by the kernel, then serves again.
func TestCgroupUserMaxMemory(t *testing.T) {
	t.Parallel()
	needCgroups(t, cgroup.Limits{MemoryMax: 64 << 20}, false)
	const u = "pyh-cgum-umax"
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"umax.test\"]\nmax_memory = \"64MiB\"\n", u))
	deployContain(t, makeUser(t, u), "umax", "umax.test", `memory_limit = "60MiB"`)
	d.start()
	if code, body := d.get("umax.test", "/"); code != 200 || !strings.HasPrefix(body, "umax ") {
		t.Fatalf("umax: %d %q", code, body)
	}
	if st := d.statusOf(u + "/umax"); st.MemoryMaxBytes != 0 {
		t.Fatalf("the app has a memory_max of its own (%d): this test is about the user's", st.MemoryMaxBytes)
	}
	if got := userMemoryLimit(t, d.statusOf(u+"/umax")); got != 64<<20 {
		t.Errorf("the user's cgroup has memory limit %d, want max_memory's %d", got, 64<<20)
	}
	if code, body := d.get("umax.test", "/eat"); code == 200 {
		t.Fatalf("/eat answered %d %q: the user's max_memory did not stop it", code, body)
	}
	eventually(t, 20*time.Second, "umax serving again", func() bool {
		code, body := d.get("umax.test", "/")
		return code == 200 && strings.HasPrefix(body, "umax ")
	})
}

// userMemoryLimit reads the memory limit of the cgroup above st's app
// group (the user's), found from its first worker's /proc/PID/cgroup:
// memory.max on cgroup2, memory.limit_in_bytes under a v1 memory
// controller.
func userMemoryLimit(t *testing.T, st control.AppStatus) int64 {
	t.Helper()
	if len(st.Workers) == 0 {
		t.Fatalf("%s/%s has no worker", st.User, st.Name)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.Workers[0].PID))
	if err != nil {
		t.Fatal(err)
	}
	file := ""
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == "memory" {
				file = filepath.Join("/sys/fs/cgroup/memory", f[2], "..", "memory.limit_in_bytes")
			}
		}
	}
	if file == "" { // pure v2: the worker is in its leaf below the app
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if strings.HasPrefix(line, "0::") {
				file = filepath.Join("/sys/fs/cgroup", strings.TrimPrefix(line, "0::"), "..", "..", "memory.max")
			}
		}
	}
	v, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("the user's memory limit: %v", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %q", file, v)
	}
	return n
}
