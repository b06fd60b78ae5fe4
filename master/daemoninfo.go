package master

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
)

// daemonState is what `pyctl status` and `pyctl version` say of the
// daemon itself: when it started and how its last config reload went.
type daemonState struct {
	started time.Time // set once by Run, before the control socket serves

	mu         sync.Mutex
	lastReload *control.ReloadInfo // guarded by mu; nil until a reload
}

// noteReload records the outcome of a config reload (SIGHUP, pyctl
// reload-config).
func (m *Master) noteReload(err error) {
	r := &control.ReloadInfo{At: time.Now(), OK: err == nil}
	if err != nil {
		r.Error = err.Error()
	}
	m.daemon.mu.Lock()
	m.daemon.lastReload = r
	m.daemon.mu.Unlock()
}

// Daemon implements control.DaemonBackend. Anyone who may use the
// control socket may ask; why a reload failed is root's and the daemon
// user's to read, as it may name other tenants' files.
func (m *Master) Daemon(_ context.Context, c control.Caller) (control.DaemonInfo, error) {
	info := control.DaemonInfo{
		Version:       m.cfg.Version,
		GoVersion:     runtime.Version(),
		Mode:          m.catalog.Mode(),
		PID:           os.Getpid(),
		StartedAt:     m.daemon.started,
		UptimeSeconds: time.Since(m.daemon.started).Seconds(),
		ConfigFile:    m.cfg.ConfigFile,
	}
	m.daemon.mu.Lock()
	if r := m.daemon.lastReload; r != nil {
		cp := *r
		if m.authorize(c, daemonOwn, nil) != nil {
			cp.Error = ""
		}
		info.LastReload = &cp
	}
	m.daemon.mu.Unlock()
	return info, nil
}

// restartOnly are the lines a reload-config shows for the [daemon] keys
// of admin that differ from the ones in force and that only a restart
// applies: the metrics socket is bound and handed to the proxy at start,
// the proxy learns access_log_per_app when it starts, and the pid file
// is written once. Said, so an admin who turned one on and reloaded does
// not wait for lines that never come (a reload said only "ok").
func (m *Master) restartOnly(admin config.Admin) []string {
	var out []string
	note := func(key, now, want string) {
		out = append(out, fmt.Sprintf("[daemon] %s: changed to %s, takes effect at the next start of pyhostd (%s until then)", key, want, now))
	}
	show := func(s string) string {
		if s == "" {
			return "none"
		}
		return strconv.Quote(s)
	}
	if d := admin.Daemon; d.MetricsListen != m.cfg.MetricsListen {
		note("metrics_listen", show(m.cfg.MetricsListen), show(d.MetricsListen))
	}
	if d := admin.Daemon; d.AccessLogPerApp != m.cfg.AccessLogPerApp {
		note("access_log_per_app", strconv.FormatBool(m.cfg.AccessLogPerApp), strconv.FormatBool(d.AccessLogPerApp))
	}
	if d := admin.Daemon; d.PIDFile != m.cfg.PIDFile {
		note("pid_file", show(m.cfg.PIDFile), show(d.PIDFile))
	}
	if d := admin.Daemon; m.cfg.LogFormat != "" && d.LogFormat != m.cfg.LogFormat {
		note("log_format", show(m.cfg.LogFormat), show(d.LogFormat))
	}
	// [proxy]'s client limits go to the proxy in its Setup (setLimits),
	// at its start; the zero value is the built-in limits, as there.
	now, want := m.cfg.ProxyLimits, admin.Proxy.Limits
	for _, l := range []*config.ProxyLimits{&now, &want} {
		if *l == (config.ProxyLimits{}) {
			*l = config.DefaultProxyLimits
		}
	}
	for _, k := range []struct {
		key       string
		now, want any
	}{
		{"buffer_request_body", now.BufferRequestBody, want.BufferRequestBody},
		{"request_spool_limit", now.RequestSpoolLimit, want.RequestSpoolLimit},
		{"client_body_timeout", now.ClientBodyTimeout, want.ClientBodyTimeout},
		{"client_body_min_rate", now.ClientBodyMinRate, want.ClientBodyMinRate},
		{"send_timeout", now.SendTimeout, want.SendTimeout},
		{"keepalive_timeout", now.KeepaliveTimeout, want.KeepaliveTimeout},
		{"max_connections", now.MaxConnections, want.MaxConnections},
		{"max_connections_per_ip", now.MaxConnectionsPerIP, want.MaxConnectionsPerIP},
	} {
		if k.now != k.want {
			out = append(out, fmt.Sprintf("[proxy] %s: changed to %v, takes effect at the next start of pyhostd (%v until then)", k.key, k.want, k.now))
		}
	}
	return out
}
