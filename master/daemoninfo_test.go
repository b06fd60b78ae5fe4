package master

import (
	"fmt"
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

// [proxy]'s client limits go to the proxy in its Setup, at its start: a
// reload-config that changes one says so (it was silently ignored).
func TestRestartOnlyProxyLimits(t *testing.T) {
	m := &Master{} // the built-in limits in force (the zero value)
	if got := m.restartOnly(config.Admin{Proxy: config.Proxy{Limits: config.DefaultProxyLimits}}); len(got) != 0 {
		t.Errorf("the built-in limits, unchanged, yet: %q", got)
	}
	l := config.DefaultProxyLimits
	l.MaxConnections, l.SendTimeout = 10, l.SendTimeout*2
	got := strings.Join(m.restartOnly(config.Admin{Proxy: config.Proxy{Limits: l}}), "\n")
	for _, want := range []string{
		fmt.Sprintf("[proxy] max_connections: changed to 10, takes effect at the next start of pyhostd (%d until then)", config.DefaultProxyLimits.MaxConnections),
		fmt.Sprintf("[proxy] send_timeout: changed to %v, takes effect at the next start of pyhostd (%v until then)", l.SendTimeout, config.DefaultProxyLimits.SendTimeout),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("reload-config lines lack %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n") + 1; n != 2 {
		t.Errorf("%d lines, want 2:\n%s", n, got)
	}
}
