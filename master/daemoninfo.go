package master

import (
	"context"
	"os"
	"runtime"
	"sync"
	"time"

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
	mode := "serve"
	if m.cfg.Rescan != nil {
		mode = "system"
	}
	info := control.DaemonInfo{
		Version:       m.cfg.Version,
		GoVersion:     runtime.Version(),
		Mode:          mode,
		PID:           os.Getpid(),
		StartedAt:     m.daemon.started,
		UptimeSeconds: time.Since(m.daemon.started).Seconds(),
		ConfigFile:    m.cfg.ConfigFile,
	}
	m.daemon.mu.Lock()
	if r := m.daemon.lastReload; r != nil {
		cp := *r
		if c.UID != 0 && c.UID != m.ownerUID {
			cp.Error = ""
		}
		info.LastReload = &cp
	}
	m.daemon.mu.Unlock()
	return info, nil
}
