package systemd

import (
	"os"
	"strings"
	"testing"
)

// The logrotate rule must work without systemd (O4): it asks the daemon
// through pyctl, never systemctl; and it must not signal the unit's
// whole cgroup, since SIGUSR1 means "dump your stacks" to a worker.
// integration/rotate_test.go runs it under real logrotate.
func TestLogrotateNeedsNoSystemd(t *testing.T) {
	b, err := os.ReadFile("pyhost.logrotate")
	if err != nil {
		t.Fatal(err)
	}
	rule := string(b)
	for _, line := range strings.Split(rule, "\n") {
		if code, _, _ := strings.Cut(line, "#"); strings.Contains(code, "systemctl") || strings.Contains(code, "kill") {
			t.Errorf("%q depends on systemd or signals processes", strings.TrimSpace(line))
		}
	}
	if !strings.Contains(rule, "/usr/local/bin/pyctl reopen-logs --if-running") {
		t.Errorf("postrotate does not run pyctl reopen-logs --if-running (install.sh and the .deb rewrite /usr/local/bin)")
	}
	if !strings.Contains(rule, "/var/log/pyhost/*.log") || !strings.Contains(rule, "/var/log/pyhost/*/*.log") {
		t.Errorf("the access log and the per-app logs are not both rotated")
	}
}
