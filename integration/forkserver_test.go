package integration

import (
	"bytes"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cmdlineOf is pid's command line with spaces for NULs.
func cmdlineOf(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// forkServers lists the fork servers: the daemon's children that run the
// worker script with --fork-server. (A worker just forked shows its
// server's command line until it sets its own, but is a grandchild.)
func forkServers(s *server) []int {
	var found []int
	for _, p := range descendants(s.cmd.Process.Pid) {
		if strings.Contains(cmdlineOf(p), "pyhost_worker.py --fork-server") && ppid(p) == s.cmd.Process.Pid {
			found = append(found, p)
		}
	}
	return found
}

// ppid is pid's parent, or 0 when it is gone.
func ppid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	p, _ := strconv.Atoi(f[1])
	return p
}

// allReady waits until the app has n workers, all ready: by then each
// has set its own command line (before it imports the app).
func allReady(t *testing.T, s *server, n int) {
	t.Helper()
	eventually(t, 10*time.Second, "every worker ready", func() bool {
		st := s.status()
		if len(st) != 1 || len(st[0].Workers) != n {
			return false
		}
		for _, w := range st[0].Workers {
			if w.State != "ready" {
				return false
			}
		}
		return true
	})
}

func TestWorkersAreForkedFromTheForkServer(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(basicApp)})
	s := startServe(t, dir, "--processes", "3", "wsgi.py")
	allReady(t, s, 3)
	servers := forkServers(s)
	if len(servers) != 1 {
		t.Fatalf("%d fork servers under the daemon, want 1", len(servers))
	}
	for _, w := range s.workerPIDs() {
		if p := ppid(w); p != servers[0] {
			t.Errorf("worker %d's parent is %d, not the fork server %d", w, p, servers[0])
		}
		if c := cmdlineOf(w); !strings.Contains(c, "pyhost_worker.py --app ") || strings.Contains(c, "--fork-server") {
			t.Errorf("worker %d shows as %q in ps, like its fork server", w, c)
		}
	}

	// Killed by anyone: its workers die with it, the app is restarted
	// from a new server, and serves again.
	old := s.workerPIDs()
	if err := syscall.Kill(servers[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.waitLine(regexp.MustCompile(`worker died.*fork server died`), 10*time.Second)
	eventually(t, 10*time.Second, "three new workers serve", func() bool {
		pids := s.workerPIDs()
		if len(pids) != 3 {
			return false
		}
		for _, p := range pids {
			for _, o := range old {
				if p == o {
					return false
				}
			}
		}
		c, _ := get(t, s.URL+"/pid")
		return c == 200
	})
	// One crash for the restart policy, not one per worker it took.
	if st := s.status(); len(st) != 1 || st[0].Restarts != 1 || st[0].State != "running" {
		t.Errorf("after the fork server's death: %+v, want running with 1 restart", st)
	}
	if now := forkServers(s); len(now) != 1 || now[0] == servers[0] {
		t.Errorf("fork servers after the kill: %v (the killed one was %d)", now, servers[0])
	}
	for _, p := range old {
		if alive(p) {
			t.Errorf("worker %d outlived its fork server", p)
		}
	}
}

func TestDirectStartWithoutForkServer(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(basicApp)})
	s := startServeEnv(t, dir, []string{"PYHOST_FORK_SERVER=0"}, "--processes", "2", "wsgi.py")
	if c, _ := get(t, s.URL+"/pid"); c != 200 {
		t.Fatalf("GET /pid: %d", c)
	}
	if out, err := pyctl(t, s, "reload"); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	if n := forkServers(s); len(n) != 0 {
		t.Errorf("fork servers %v with PYHOST_FORK_SERVER=0", n)
	}
	for _, w := range s.workerPIDs() {
		if p := ppid(w); p != s.cmd.Process.Pid {
			t.Errorf("worker %d's parent is %d, not the daemon %d", w, p, s.cmd.Process.Pid)
		}
	}
	if c, _ := get(t, s.URL+"/pid"); c != 200 {
		t.Fatalf("GET /pid after the reload: %d", c)
	}
}
