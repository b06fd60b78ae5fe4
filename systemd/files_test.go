package systemd

import (
	"os"
	"strings"
	"testing"
)

// SIGUSR1 means "reopen logs" to pyhostd but "dump your stacks" to a
// worker: logrotate must signal the daemon alone, not the unit's whole
// cgroup (systemctl kill's default).
func TestLogrotateSignalsTheDaemonOnly(t *testing.T) {
	b, err := os.ReadFile("pyhost.logrotate")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "systemctl kill") && !strings.Contains(line, "--kill-who=main") {
			t.Errorf("%q signals every process of the unit", strings.TrimSpace(line))
		}
	}
	if !strings.Contains(string(b), "/var/log/pyhost/*.log") {
		t.Errorf("the access log (/var/log/pyhost/access.log) is not rotated")
	}
}
