package master

import (
	"strings"
	"testing"

	"github.com/pyhost/pyhost/config"
)

// reload-config names each [daemon] key only a restart applies that the
// new file changes, with the value still in force; log_format only when
// the file chose it (a --log-format flag makes the key moot).
func TestRestartOnly(t *testing.T) {
	admin := func(d config.Daemon) config.Admin { return config.Admin{Daemon: d} }
	m := &Master{cfg: Config{Listeners: Listeners{MetricsListen: "127.0.0.1:9181"}, Dirs: Dirs{PIDFile: "/run/p.pid"}, Settings: Settings{LogFormat: config.LogText}}}
	same := admin(config.Daemon{MetricsListen: "127.0.0.1:9181", PIDFile: "/run/p.pid", LogFormat: config.LogText})
	if got := m.restartOnly(same); len(got) != 0 {
		t.Errorf("nothing changed, yet: %q", got)
	}
	changed := admin(config.Daemon{MetricsListen: "", PIDFile: "/run/q.pid", LogFormat: config.LogJSON, AccessLogPerApp: true})
	got := strings.Join(m.restartOnly(changed), "\n")
	for _, want := range []string{
		`[daemon] metrics_listen: changed to none, takes effect at the next start of pyhostd ("127.0.0.1:9181" until then)`,
		`[daemon] pid_file: changed to "/run/q.pid"`,
		`[daemon] log_format: changed to "json", takes effect at the next start of pyhostd ("text" until then)`,
		`[daemon] access_log_per_app: changed to true`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("reload-config lines lack %q:\n%s", want, got)
		}
	}
	m.cfg.LogFormat = "" // --log-format chose it
	if got := strings.Join(m.restartOnly(changed), "\n"); strings.Contains(got, "log_format") {
		t.Errorf("a flag-chosen format is reported as changed:\n%s", got)
	}
}
