package integration

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/control"
)

// Attacks on containment (issue 14) from a tenant's and an admin's side.

// attackApp runs the Python in ?code= (loopback tests only) and answers
// what it printed; / answers its name and pid as containApp does.
const attackApp = `import os, sys, io, time, contextlib, urllib.parse

def application(environ, start_response):
    q = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    if environ["PATH_INFO"] == "/py":
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(q["code"][0], {"os": os, "time": time})
        except Exception as e:
            out.write("ERR %s: %s" % (type(e).__name__, e))
        body = out.getvalue()
    else:
        body = "%s %d" % (os.environ.get("APP_NAME", "?"), os.getpid())
    body = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`

func deployAttack(t *testing.T, u sysUser, name, domain, extra string) {
	t.Helper()
	writeOwned(t, u, filepath.Join(u.home, name, "wsgi.py"), attackApp, 0o644)
	writeOwned(t, u, filepath.Join(userApps(u), name+".toml"),
		fmt.Sprintf("domains = [%q]\nscript = \"wsgi.py\"\ndirectory = \"~/%s\"\nprocesses = 1\nthreads = 2\n%s\n\n[env]\nAPP_NAME = %q\n", domain, name, extra, name), 0o644)
}

// py runs code in host's app and returns what it printed.
func (d *sysd) py(host, code string) string {
	d.t.Helper()
	c, body := d.get(host, "/py?code="+url.QueryEscape(code))
	if c != 200 {
		d.t.Fatalf("/py on %s: %d %q", host, c, body)
	}
	return body
}

// v1file reads file in the v1 hierarchy ctrl's group of pid.
func v1file(t *testing.T, pid int, ctrl, up, file string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		for _, c := range strings.Split(f[1], ",") {
			if c == ctrl {
				v, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", ctrl, f[2], up, file))
				if err != nil {
					t.Fatal(err)
				}
				return strings.TrimSpace(string(v))
			}
		}
	}
	t.Fatalf("no %s hierarchy for %d", ctrl, pid)
	return ""
}

func (d *sysd) pidOf(host string) int {
	d.t.Helper()
	_, body := d.get(host, "/")
	var name string
	var pid int
	fmt.Sscanf(body, "%s %d", &name, &pid)
	if pid == 0 {
		d.t.Fatalf("%s: %q", host, body)
	}
	return pid
}

// pyctl reload puts a changed limit in force and lifts a removed one
// (v1 files here: the app's group's memory.limit_in_bytes and pids.max).
func TestCgroupAttackReload(t *testing.T) {
	t.Parallel()
	needCgroups(t, cgroup.Limits{MemoryMax: 64 << 20, TasksMax: 50}, true)
	const u = "pyh-cga-r"
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"r.test\"]\n", u))
	usr := makeUser(t, u)
	deployAttack(t, usr, "r", "r.test", "memory_max = \"200MiB\"\ntasks_max = 50")
	d.start()
	pid := d.pidOf("r.test")
	if m, p := v1file(t, pid, "memory", "", "memory.limit_in_bytes"), v1file(t, pid, "pids", "", "pids.max"); m != "209715200" || p != "50" {
		t.Fatalf("at start: memory limit %s, pids.max %s", m, p)
	}
	deployAttack(t, usr, "r", "r.test", "memory_max = \"100MiB\"")
	if out, err := d.pyctl(u, "reload", "r"); err != nil {
		t.Fatalf("pyctl reload: %v\n%s", err, out)
	}
	// The new limits are in force once the old worker is gone.
	var m, p string
	eventually(t, 10*time.Second, "memory limit 100MiB and no pids.max", func() bool {
		pid := d.pidOf("r.test")
		m, p = v1file(t, pid, "memory", "", "memory.limit_in_bytes"), v1file(t, pid, "pids", "", "pids.max")
		return m == "104857600" && p == "max"
	})
}

// daemonizeIn has host's app double-fork a child that leaves the
// worker's session, and returns its pid.
func (d *sysd) daemonizeIn(host string) int {
	d.t.Helper()
	out := d.py(host, `
import os
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        time.sleep(600)
    os._exit(0)
print(os.read(r, 20).decode())`)
	pid, _ := strconv.Atoi(strings.TrimSpace(out))
	if pid <= 0 || !alive(pid) {
		d.t.Fatalf("no daemonized child: %q", out)
	}
	return pid
}

// treeOf is the base of the daemon's cgroup tree pid's v2 group is in.
func treeOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			if i := strings.Index(rest, "/apps/"); i > 0 {
				return filepath.Join("/sys/fs/cgroup/unified", rest[:i])
			}
		}
	}
	t.Fatalf("%d is in no daemon's tree: %s", pid, b)
	return ""
}

// A daemon SIGKILLed leaves its tree, and in it what its apps
// double-forked; a daemon of another state directory (pyhostd serve
// takes a new one each run) sweeps it when it starts, and never a live
// daemon's. Before the trees were marked, the child ran on for ever.
func TestCgroupAttackOrphanSwept(t *testing.T) {
	// Serial: a daemon of a parallel test starting between the kill and
	// d2.restart could sweep the orphan before the check that it is there.
	needCgroups(t, cgroup.Limits{}, true)
	const u1, u2 = "pyh-cga-o1", "pyh-cga-o2"
	d1 := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"o1.test\"]\n", u1))
	d2 := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"o2.test\"]\n", u2))
	deployAttack(t, makeUser(t, u1), "o1", "o1.test", "")
	deployAttack(t, makeUser(t, u2), "o2", "o2.test", "")
	d1.start()
	child := d1.daemonizeIn("o1.test")
	tree1 := treeOf(t, child)
	d2.start()
	if !alive(child) {
		t.Fatalf("a second daemon starting killed the first one's app's child")
	}
	if code, body := d1.get("o1.test", "/"); code != 200 || !strings.HasPrefix(body, "o1 ") {
		t.Fatalf("the first daemon's app after the second started: %d %q", code, body)
	}
	d1.cmd.Process.Kill()
	<-d1.done
	d1.cmd = nil
	if !alive(child) {
		t.Fatalf("the child died with its daemon: nothing to sweep")
	}
	d2.restart()
	eventually(t, 15*time.Second, "the dead daemon's child swept", func() bool { return !alive(child) })
	if _, err := os.Stat(tree1); !os.IsNotExist(err) {
		t.Errorf("the dead daemon's tree %s is still there (%v)", tree1, err)
	}
	if code, body := d2.get("o2.test", "/"); code != 200 || !strings.HasPrefix(body, "o2 ") {
		t.Errorf("the sweeping daemon's app: %d %q", code, body)
	}
}

// The OOM killer may pick an app's fork server (here a tenant made it
// the first choice through its oom_score_adj): the worker that dies with
// it is named and counted as the OOM kill it is, not as a crash. Before,
// status said "1 OOM kill" and "restarts: crash 1".
func TestCgroupAttackForkServerOOM(t *testing.T) {
	t.Parallel()
	needCgroups(t, cgroup.Limits{MemoryMax: 64 << 20}, true)
	const u = "pyh-cga-f"
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"f.test\"]\n", u))
	deployAttack(t, makeUser(t, u), "f", "f.test", "memory_max = \"64MiB\"")
	d.start()
	if out := d.py("f.test", `
open("/proc/%d/oom_score_adj" % os.getppid(), "w").write("1000")
print(open("/proc/%d/cmdline" % os.getppid()).read().replace("\0", " "))`); !strings.Contains(out, "--fork-server") {
		t.Skipf("the worker is not forked by a fork server: its parent is %q", out)
	}
	d.get("f.test", "/py?code="+url.QueryEscape("x = bytearray(58 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\nprint('ate')"))
	const why = "killed by the kernel's OOM killer: memory.max 64MiB reached (it killed the app's fork server"
	eventually(t, 20*time.Second, "the worker's death named as the OOM kill", func() bool {
		return strings.Contains(d.logs.String(), why)
	})
	eventually(t, 20*time.Second, "f serving again", func() bool {
		code, body := d.get("f.test", "/")
		return code == 200 && strings.HasPrefix(body, "f ")
	})
	st := d.statusOf(u + "/f")
	if st.OOMKills < 1 || st.RestartsByReason[control.RestartOOM] != 1 || st.RestartsByReason[control.RestartCrash] != 0 {
		t.Errorf("status: oom_kills %d, restarts_by_reason %v; want the one restart counted as oom", st.OOMKills, st.RestartsByReason)
	}
}

// A reload that lowers memory_max below what the old workers hold: v1
// refuses the write (EBUSY), and before, the app ran on under the old
// limit for good while pyctl status showed the new one. The limit is in
// force once the old workers are gone. A reload that fails puts the
// running version's limits back.
func TestCgroupAttackLowerMemory(t *testing.T) {
	t.Parallel()
	needCgroups(t, cgroup.Limits{MemoryMax: 64 << 20}, true)
	const u = "pyh-cga-w"
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"w.test\"]\n", u))
	usr := makeUser(t, u)
	deployAttack(t, usr, "w", "w.test", "memory_max = \"200MiB\"")
	d.start()
	d.py("w.test", "os.hog = bytearray(80 << 20)\nfor i in range(0, len(os.hog), 4096): os.hog[i] = 1")
	deployAttack(t, usr, "w", "w.test", "memory_max = \"40MiB\"")
	if out, err := d.pyctl(u, "reload", "w"); err != nil {
		t.Fatalf("pyctl reload: %v\n%s", err, out)
	}
	limit := func() string { return v1file(t, d.pidOf("w.test"), "memory", "", "memory.limit_in_bytes") }
	eventually(t, 10*time.Second, "memory_max 40MiB in force", func() bool { return limit() == "41943040" })
	// Written once the old worker was gone, the lower limit was never
	// refused: the roll ran under the looser of the two.
	if strings.Contains(d.logs.String(), "cgroup limits not all applied") {
		t.Errorf("a limit was refused during the roll:\n%s", d.logs)
	}
	// A broken version with a higher limit: its reload fails, and the
	// running version's limit is the group's again.
	writeOwned(t, usr, filepath.Join(usr.home, "w", "wsgi.py"), "raise SystemExit('broken')\n", 0o644)
	writeOwned(t, usr, filepath.Join(userApps(usr), "w.toml"),
		"domains = [\"w.test\"]\nscript = \"wsgi.py\"\ndirectory = \"~/w\"\nprocesses = 1\nthreads = 2\nmemory_max = \"300MiB\"\n\n[env]\nAPP_NAME = \"w\"\n", 0o644)
	if out, err := d.pyctl(u, "reload", "w"); err == nil {
		t.Fatalf("the broken reload succeeded:\n%s", out)
	}
	eventually(t, 10*time.Second, "the running version's memory_max back in force", func() bool { return limit() == "41943040" })
}

// reload-config changing or removing [users.NAME] max_memory changes the
// user's cgroup, though no app of theirs changed; before, the limit the
// first app started with stayed until the daemon restarted.
func TestCgroupAttackUserMaxMemoryReload(t *testing.T) {
	t.Parallel()
	needCgroups(t, cgroup.Limits{MemoryMax: 64 << 20}, true)
	const u = "pyh-cga-um"
	users := fmt.Sprintf("[users.%s]\ndomains = [\"um.test\"]\n", u)
	d := newSysd(t, users+"max_memory = \"512MiB\"\n")
	deployAttack(t, makeUser(t, u), "um", "um.test", "memory_limit = \"100MiB\"")
	d.start()
	userLimit := func() string { return v1file(t, d.pidOf("um.test"), "memory", "..", "memory.limit_in_bytes") }
	if got := userLimit(); got != "536870912" {
		t.Fatalf("the user's memory limit at start: %s, want 512MiB", got)
	}
	d.writeAdmin(users + "max_memory = \"256MiB\"\n")
	if out, err := d.pyctl("root", "reload-config"); err != nil {
		t.Fatalf("reload-config: %v\n%s", err, out)
	}
	eventually(t, 10*time.Second, "the user's limit 256MiB", func() bool { return userLimit() == "268435456" })
	d.writeAdmin(users)
	if out, err := d.pyctl("root", "reload-config"); err != nil {
		t.Fatalf("reload-config: %v\n%s", err, out)
	}
	eventually(t, 10*time.Second, "the user's limit lifted", func() bool { return userLimit() != "268435456" && userLimit() != "536870912" })
}

// A tenant's worker may write to its app's cgroup.procs (a forked worker
// moves itself into its leaf that way), so a child it double-forks can
// move itself out of the worker's leaf into the app's group, where the
// leaf's kill at recycle does not reach. Such a stray dies when the
// worker ends all the same (C4).
func TestCgroupAttackLeafEscape(t *testing.T) {
	t.Parallel()
	needCgroups(t, cgroup.Limits{}, true)
	const u = "pyh-cga-e"
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"e.test\"]\n", u))
	deployAttack(t, makeUser(t, u), "e", "e.test", "max_requests = 2")
	d.start()
	out := d.py("e.test", `
cg = [l for l in open("/proc/self/cgroup").read().splitlines() if l.startswith("0::")][0][3:]
app = "/sys/fs/cgroup/unified" + cg.rsplit("/", 1)[0]
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        try:
            with open(app + "/cgroup.procs", "w") as f:
                f.write("0")
            os.write(w, ("%d %s" % (os.getpid(), open("/proc/self/cgroup").read().split("0::")[1].strip())).encode())
        except OSError as e:
            os.write(w, ("0 %s" % e).encode())
        time.sleep(600)
    os._exit(0)
print(os.read(r, 200).decode())`)
	var pid int
	var where string
	fmt.Sscanf(out, "%d %s", &pid, &where)
	if pid <= 0 {
		t.Skipf("the child could not move itself: %q", out)
	}
	t.Logf("the child %d moved itself to %s", pid, where)
	d.get("e.test", "/") // the second request: max_requests recycles the worker
	eventually(t, 15*time.Second, "the escaped child killed with its worker", func() bool { return !alive(pid) })
	if code, body := d.get("e.test", "/"); code != 200 || !strings.HasPrefix(body, "e ") {
		t.Errorf("e after the recycle: %d %q", code, body)
	}
	// Nothing but the stray: not the fork server, not a worker.
	for _, line := range strings.Split(d.logs.String(), "\n") {
		if strings.Contains(line, "moved out of its worker's cgroup") && !strings.Contains(line, fmt.Sprintf("pid=%d", pid)) {
			t.Errorf("killed another process: %s", line)
		}
	}
}

// userGroupDirs are the directories of user's group (pid's groups cut
// after "/apps/USER") in every hierarchy pid is listed in, v1 and
// cgroup2.
func userGroupDirs(t *testing.T, pid int, user string) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) < 3 {
			continue
		}
		i := strings.Index(f[2], "/apps/"+user+"/")
		if i < 0 {
			continue
		}
		mount := "/sys/fs/cgroup/unified"
		if f[1] != "" {
			mount = filepath.Join("/sys/fs/cgroup", strings.TrimPrefix(f[1], "name="))
		}
		dirs = append(dirs, filepath.Join(mount, f[2][:i+len("/apps/"+user)]))
	}
	if len(dirs) == 0 {
		t.Fatalf("%d is in no group of %s's: %s", pid, user, b)
	}
	return dirs
}

// A user's group goes with the user's last app (its file deleted,
// reload-config): before, it stayed, empty, until the daemon exited.
// Another user's group stays with its app.
func TestCgroupAttackUserGroupRemoved(t *testing.T) {
	t.Parallel()
	needCgroups(t, cgroup.Limits{}, true)
	const u1, u2 = "pyh-cga-g1", "pyh-cga-g2"
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"g1.test\"]\n\n[users.%s]\ndomains = [\"g2.test\"]\n", u1, u2))
	usr1 := makeUser(t, u1)
	deployAttack(t, usr1, "g1", "g1.test", "")
	deployAttack(t, makeUser(t, u2), "g2", "g2.test", "")
	d.start()
	gone := userGroupDirs(t, d.pidOf("g1.test"), u1)
	kept := userGroupDirs(t, d.pidOf("g2.test"), u2)
	if err := os.Remove(filepath.Join(userApps(usr1), "g1.toml")); err != nil {
		t.Fatal(err)
	}
	if out, err := d.pyctl("root", "reload-config"); err != nil {
		t.Fatalf("reload-config: %v\n%s", err, out)
	}
	eventually(t, 15*time.Second, u1+"'s groups removed", func() bool {
		for _, dir := range gone {
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				return false
			}
		}
		return true
	})
	for _, dir := range kept {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("%s's group: %v", u2, err)
		}
	}
	if code, body := d.get("g2.test", "/"); code != 200 || !strings.HasPrefix(body, "g2 ") {
		t.Errorf("g2 after g1 went: %d %q", code, body)
	}
}

// A reload lowering memory_max below what the new version itself uses
// (here 80 MiB allocated at import): v1 refuses the lower limit, and
// pyctl status showed it as in force while the kernel still enforced the
// old one. It shows the old one, and the new as pending.
func TestCgroupAttackPendingMemoryShown(t *testing.T) {
	t.Parallel()
	needCgroups(t, cgroup.Limits{MemoryMax: 64 << 20}, true)
	const u = "pyh-cga-p"
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"p.test\"]\n", u))
	usr := makeUser(t, u)
	deployAttack(t, usr, "p", "p.test", "memory_max = \"200MiB\"")
	d.start()
	if st := d.statusOf(u + "/p"); st.MemoryMaxBytes != 200<<20 || st.MemoryMaxPendingBytes != 0 {
		t.Fatalf("at start: memory_max_bytes %d, pending %d", st.MemoryMaxBytes, st.MemoryMaxPendingBytes)
	}
	writeOwned(t, usr, filepath.Join(usr.home, "p", "wsgi.py"),
		"hog = bytearray(80 << 20)\nfor i in range(0, len(hog), 4096): hog[i] = 1\n"+attackApp, 0o644)
	writeOwned(t, usr, filepath.Join(userApps(usr), "p.toml"),
		"domains = [\"p.test\"]\nscript = \"wsgi.py\"\ndirectory = \"~/p\"\nprocesses = 1\nthreads = 2\nmemory_max = \"40MiB\"\n\n[env]\nAPP_NAME = \"p\"\n", 0o644)
	if out, err := d.pyctl(u, "reload", "p"); err != nil {
		t.Fatalf("pyctl reload: %v\n%s", err, out)
	}
	eventually(t, 15*time.Second, "the lower limit refused", func() bool {
		return strings.Contains(d.logs.String(), "cgroup limits not all applied yet")
	})
	st := d.statusOf(u + "/p")
	if limit := v1file(t, d.pidOf("p.test"), "memory", "", "memory.limit_in_bytes"); limit != "209715200" {
		t.Fatalf("the kernel's limit is %s, not the old 200MiB: nothing pending to show", limit)
	}
	if st.MemoryMaxBytes != 200<<20 || st.MemoryMaxPendingBytes != 40<<20 {
		t.Errorf("status: memory_max_bytes %d, memory_max_pending_bytes %d; want 200MiB in force, 40MiB pending", st.MemoryMaxBytes, st.MemoryMaxPendingBytes)
	}
	out, err := d.pyctl(u, "status", "p")
	if err != nil || !strings.Contains(out, "of 200.0MiB (40.0MiB pending") {
		t.Errorf("pyctl status p: %v\n%s", err, out)
	}
}

// A tenant may write the cgroup.procs of its app's group and worker
// leaves (a forked worker moves itself into its leaf), so it can move
// its fork server into a worker's leaf; before, the leaf's kill when that
// worker ended killed the fork server too (and, by PDEATHSIG, every
// worker it had forked). The fork server is moved back and lives on.
func TestCgroupAttackForkServerInLeaf(t *testing.T) {
	t.Parallel()
	needCgroups(t, cgroup.Limits{}, true)
	const u = "pyh-cga-l"
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"l.test\"]\n", u))
	deployAttack(t, makeUser(t, u), "l", "l.test", "max_requests = 3")
	d.start()
	out := d.py("l.test", `
def v2(pid):
    return [l for l in open("/proc/%d/cgroup" % pid).read().splitlines() if l.startswith("0::")][0][3:]
fs = os.getppid()
if "--fork-server" not in open("/proc/%d/cmdline" % fs).read():
    print("0 not-forked")
else:
    try:
        with open("/sys/fs/cgroup/unified" + v2(os.getpid()) + "/cgroup.procs", "w") as f:
            f.write(str(fs))
        print("%d %s" % (fs, v2(fs)))
    except OSError as e:
        print("0 %s" % e)`)
	var fs int
	var where string
	fmt.Sscanf(out, "%d %s", &fs, &where)
	if fs <= 0 {
		t.Skipf("the fork server was not moved: %q", out)
	}
	t.Logf("fork server %d moved to %s", fs, where)
	old := d.pidOf("l.test") // the second request
	d.get("l.test", "/")     // the third: max_requests recycles the worker
	eventually(t, 15*time.Second, "the worker recycled", func() bool {
		code, body := d.get("l.test", "/")
		return code == 200 && !strings.HasSuffix(body, fmt.Sprintf(" %d", old))
	})
	eventually(t, 10*time.Second, "the old worker's leaf dropped", func() bool {
		return !alive(fs) || strings.Contains(d.logs.String(), "moved a process of the app's back out of a worker's cgroup")
	})
	if !alive(fs) {
		t.Fatalf("the fork server %d died with the worker's leaf it had been moved into", fs)
	}
	if code, body := d.get("l.test", "/"); code != 200 || !strings.HasPrefix(body, "l ") {
		t.Errorf("l after the recycle: %d %q", code, body)
	}
}
