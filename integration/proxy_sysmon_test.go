package integration

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestProxyRunsWithSysmonSetting: the proxy runs with GODEBUG's
// schedtrace set (proxy/sysmon.go, from the master's environment for
// it), as the master's child, under its name, serving, and nothing is
// said about it.
func TestProxyRunsWithSysmonSetting(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(basicApp)})
	s := startServe(t, dir, "wsgi.py")
	if code, body := get(t, s.URL+"/"); code != 200 || body != "hello world" {
		t.Fatalf("GET / = %d %q, want 200 %q", code, body, "hello world")
	}
	pid := proxyPIDOf(s)
	if pid == 0 {
		t.Fatal("no proxy process under the daemon")
	}
	if pp := ppid(pid); pp != s.cmd.Process.Pid {
		t.Errorf("the proxy's parent is %d, want the daemon %d", pp, s.cmd.Process.Pid)
	}
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	var godebug []string
	for _, kv := range strings.Split(string(env), "\x00") {
		if strings.HasPrefix(kv, "GODEBUG=") {
			godebug = append(godebug, kv)
		}
	}
	if len(godebug) != 1 || godebug[0] != "GODEBUG=schedtrace=2147483647" {
		t.Errorf("the proxy's GODEBUG = %q, want [GODEBUG=schedtrace=2147483647]", godebug)
	}
	if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); strings.TrimSpace(string(comm)) != "pyhostd" {
		t.Errorf("the proxy's name is %q, want pyhostd", comm)
	}
	if out := s.out.String(); strings.Contains(out, "cannot start again") || strings.Contains(out, "SCHED ") {
		t.Errorf("the daemon's output mentions the proxy's second start:\n%s", out)
	}
}
