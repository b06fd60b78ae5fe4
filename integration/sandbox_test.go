package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// sandboxProbe is a WSGI app that reports, as JSON, what it can see of the
// machine: each of lists is os.listdir'ed (a list, or the exception's
// name), each of reads opened, the owners of the processes it sees in
// /proc counted, and a file of its own left in /tmp.
func sandboxProbe(lists, reads []string) string {
	l, _ := json.Marshal(lists)
	r, _ := json.Marshal(reads)
	return fmt.Sprintf(`import json, os
LISTS = json.loads(%q)
READS = json.loads(%q)
def ls(p):
    try:
        return sorted(os.listdir(p))
    except Exception as e:
        return type(e).__name__
def can_read(p):
    try:
        with open(p) as f:
            f.read()
        return True
    except Exception:
        return False
def application(environ, start_response):
    uids = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                uids.add(os.stat("/proc/" + name).st_uid)
            except OSError:
                pass
    mine = "/tmp/probe-%%d" %% os.getpid()
    open(mine, "w").close()
    out = {"uid": os.getuid(), "euid": os.geteuid(), "groups": os.getgroups(), "proc_uids": sorted(uids),
           "lists": {p: ls(p) for p in LISTS}, "reads": {p: can_read(p) for p in READS},
           "tmp": ls("/tmp"), "mine": mine}
    body = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
`, string(l), string(r))
}

type sandboxView struct {
	UID      int                        `json:"uid"`
	EUID     int                        `json:"euid"`
	ProcUIDs []int                      `json:"proc_uids"`
	Lists    map[string]json.RawMessage `json:"lists"`
	Reads    map[string]bool            `json:"reads"`
	TMP      json.RawMessage            `json:"tmp"`
	Mine     string                     `json:"mine"`
}

// listed is the names a probe listed in path, and whether it could.
func (r sandboxView) listed(path string) ([]string, bool) {
	var names []string
	if json.Unmarshal(r.Lists[path], &names) != nil {
		return nil, false
	}
	return names, true
}

// requireMountNamespaces skips when this kernel or container will not
// give a process a mount namespace of its own.
func requireMountNamespaces(t *testing.T) {
	t.Helper()
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if err := cmd.Run(); err != nil {
		t.Skipf("mount namespaces are not available here (%v): the sandbox cannot be tested", err)
	}
}

// Issue 14, C5: from inside ann's sandboxed app, ben's home, pyhost's
// log, state and data directories and ben's processes are not visible,
// ann's own home is, and /tmp is the app's own; ben's app, with sandbox =
// false allowed by the admin, sees all of those; sandbox = false without
// the admin's consent is refused by pyhostd check and pyctl check. Once
// with workers forked from the fork server, once started on their own.
func TestSandbox(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the sandbox mounts as root and runs apps as other users: needs root")
	}
	requireMountNamespaces(t)
	for _, mode := range []struct{ name, forkServer string }{{"forked", "1"}, {"direct", "0"}} {
		t.Run(mode.name, func(t *testing.T) { testSandbox(t, mode.forkServer) })
	}
}

func testSandbox(t *testing.T, forkServer string) {
	const (
		ann = "pyh-sb-ann"
		ben = "pyh-sb-ben"
	)
	d := newSysd(t, fmt.Sprintf(`
[users.%s]
domains = ["ann.test", "*.ann.test"]

[users.%s]
domains = ["ben.test"]
allow_unsandboxed = true
`, ann, ben))
	d.env = append(d.env, "PYHOST_FORK_SERVER="+forkServer)
	a, b := makeUser(t, ann), makeUser(t, ben)
	writeOwned(t, a, filepath.Join(a.home, "notes.txt"), "ann's notes\n", 0o644)
	writeOwned(t, b, filepath.Join(b.home, "notes.txt"), "ben's notes\n", 0o644)
	run, logs, lib := filepath.Join(d.base, "run"), filepath.Join(d.base, "log"), filepath.Join(d.base, "lib")
	lists := []string{a.home, b.home, logs, filepath.Join(logs, ben), run, lib, d.adminDir()}
	reads := []string{filepath.Join(a.home, "notes.txt"), filepath.Join(b.home, "notes.txt")}
	deployProbe := func(u sysUser, domain, extra string) {
		writeOwned(t, u, filepath.Join(u.home, "probe", "wsgi.py"), sandboxProbe(lists, reads), 0o644)
		writeOwned(t, u, filepath.Join(userApps(u), "probe.toml"),
			fmt.Sprintf("domains = [%q]\nscript = \"wsgi.py\"\ndirectory = \"~/probe\"\nprocesses = 1\nthreads = 1\n%s\n", domain, extra), 0o644)
	}
	deployProbe(a, "ann.test", "")
	deployProbe(b, "ben.test", "sandbox = false")
	hostMark := filepath.Join(os.TempDir(), fmt.Sprintf("pyh-sb-host-%d", os.Getpid()))
	writeFile(t, hostMark, "the host's /tmp\n")
	defer os.Remove(hostMark)
	d.start()

	probe := func(host string) sandboxView {
		t.Helper()
		code, body := d.get(host, "/")
		var r sandboxView
		if code != 200 || json.Unmarshal([]byte(body), &r) != nil {
			t.Fatalf("%s: %d %s", host, code, body)
		}
		os.Remove(r.Mine)
		return r
	}
	in, out := probe("ann.test"), probe("ben.test")

	// ann's app runs as ann, never root.
	if in.UID != a.uid || in.EUID != a.uid {
		t.Errorf("ann's app runs as uid %d (euid %d), want %d", in.UID, in.EUID, a.uid)
	}
	if names, ok := in.listed(a.home); !ok || !slices.Contains(names, "notes.txt") || !slices.Contains(names, "probe") {
		t.Errorf("ann's app cannot list its own home: %s", in.Lists[a.home])
	}
	if !in.Reads[filepath.Join(a.home, "notes.txt")] {
		t.Error("ann's app cannot read a file of its own home")
	}
	if names, ok := in.listed(b.home); ok && slices.Contains(names, "notes.txt") {
		t.Errorf("ann's app lists ben's home: %v", names)
	}
	if in.Reads[filepath.Join(b.home, "notes.txt")] {
		t.Error("ann's app reads ben's notes")
	}
	// The worker script is bound back into the state dir: the one thing
	// of pyhost's a worker needs.
	for _, dir := range []string{logs, filepath.Join(logs, ben), run, lib, d.adminDir()} {
		if names, ok := in.listed(dir); ok && len(slices.DeleteFunc(names, func(n string) bool { return dir == run && n == "pyhost_worker.py" })) > 0 {
			t.Errorf("ann's app lists pyhost's %s: %v", dir, names)
		}
	}
	for _, uid := range in.ProcUIDs {
		if uid != a.uid {
			t.Errorf("ann's app sees processes of uid %d in /proc (all: %v)", uid, in.ProcUIDs)
		}
	}
	var tmp []string
	if json.Unmarshal(in.TMP, &tmp) != nil || slices.Contains(tmp, filepath.Base(hostMark)) {
		t.Errorf("ann's app sees the host's /tmp (%s is there)", hostMark)
	}
	if _, err := os.Stat(in.Mine); err == nil {
		t.Errorf("ann's app's %s is in the host's /tmp", in.Mine)
	}

	// ben's app, unsandboxed with the admin's consent, sees the host.
	if out.UID != b.uid {
		t.Errorf("ben's app runs as uid %d, want %d", out.UID, b.uid)
	}
	if names, ok := out.listed(a.home); !ok || !slices.Contains(names, "notes.txt") {
		t.Errorf("ben's unsandboxed app cannot list ann's 0755 home: %s", out.Lists[a.home])
	}
	if names, ok := out.listed(run); !ok || !slices.Contains(names, "control.sock") {
		t.Errorf("ben's unsandboxed app does not see the state dir: %s", out.Lists[run])
	}
	if names, ok := out.listed(logs); !ok || !slices.Contains(names, ben) {
		t.Errorf("ben's unsandboxed app does not see the log dir: %s", out.Lists[logs])
	}
	if !slices.Contains(out.ProcUIDs, 0) || !slices.Contains(out.ProcUIDs, a.uid) {
		t.Errorf("ben's unsandboxed app does not see root's and ann's processes: %v", out.ProcUIDs)
	}
	if json.Unmarshal(out.TMP, &tmp) != nil || !slices.Contains(tmp, filepath.Base(hostMark)) {
		t.Errorf("ben's unsandboxed app does not see the host's /tmp (%s)", hostMark)
	}

	// sandbox = false without the admin's consent: refused, with the
	// file, line and key, by both checks.
	loose := filepath.Join(userApps(a), "loose.toml")
	writeOwned(t, a, filepath.Join(a.home, "loose", "wsgi.py"), nameApp("loose"), 0o644)
	writeOwned(t, a, loose, "domains = [\"loose.ann.test\"]\nscript = \"wsgi.py\"\ndirectory = \"~/loose\"\nsandbox = false\n", 0o644)
	want := loose + ":4: sandbox: sandbox = false needs the admin's consent: allow_unsandboxed = true under [users." + ann + "]"
	if out, err := d.check(); err == nil || !strings.Contains(out, want) {
		t.Errorf("pyhostd check: %v, want %q in\n%s", err, want, out)
	}
	if out, err := d.pyctl(ann, "check", loose); err == nil || !strings.Contains(out, want) {
		t.Errorf("pyctl check: %v, want %q in\n%s", err, want, out)
	}
}
