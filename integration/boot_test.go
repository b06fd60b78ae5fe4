package integration

import (
	"fmt"
	"strings"
	"testing"
)

// TestNoBootStorm (D8): a daemon of apps with idle_timeout starts none of
// their processes: after start only the master and its proxy run, and no
// python at all; the first request to one app starts that app only (a
// worker and its fork server) and is served, and a second request to it
// is served by the same worker.
func TestNoBootStorm(t *testing.T) {
	t.Parallel()
	const (
		user = "pyh-boot"
		apps = 20
	)
	u := makeUser(t, user)
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"*.boot.test\"]\n", user))
	for i := range apps {
		deployNamed(t, u, fmt.Sprintf("app%d", i), fmt.Sprintf("app%d", i), fmt.Sprintf(`"app%d.boot.test"`, i), `idle_timeout = "10m"`)
	}
	d.start()
	master := d.cmd.Process.Pid
	kids := func() (all, pythons []string) {
		for _, p := range descendants(master) {
			line := fmt.Sprintf("%d %s", p, cmdlineOf(p))
			all = append(all, line)
			if strings.Contains(cmdlineOf(p), "python") || strings.Contains(cmdlineOf(p), "pyhost_worker") {
				pythons = append(pythons, line)
			}
		}
		return all, pythons
	}
	// "serving:" is logged once every app counted as started: what runs
	// now is what the daemon started at boot.
	all, pythons := kids()
	if len(all) != 1 || d.proxyPID() == 0 || len(pythons) != 0 {
		t.Fatalf("after start, the master's descendants are %d, want only its proxy:\n%s", len(all), strings.Join(all, "\n"))
	}

	// The first request wakes app7 alone.
	code, body := d.get("app7.boot.test", "/")
	if code != 200 || !strings.HasPrefix(body, "app7 ") {
		t.Fatalf("first request to an idle app: %d %q", code, body)
	}
	all, pythons = kids()
	if len(pythons) == 0 || len(pythons) > 2 {
		// A worker, and its fork server unless it started directly.
		t.Errorf("after the first request to one app, %d python processes, want its worker (and fork server):\n%s", len(pythons), strings.Join(all, "\n"))
	}
	code, again := d.get("app7.boot.test", "/")
	if code != 200 || again != body {
		t.Errorf("second request: %d %q, want the same worker's %q", code, again, body)
	}
	// Another app is still idle, and wakes on its own first request.
	if code, body := d.get("app12.boot.test", "/"); code != 200 || !strings.HasPrefix(body, "app12 ") {
		t.Errorf("first request to a second idle app: %d %q", code, body)
	}
	out, err := d.pyctl("", "status", user+"/app3")
	if err != nil || !strings.Contains(out, "idle") {
		t.Errorf("pyctl status of an app never asked for: %v, want idle\n%s", err, out)
	}
}
