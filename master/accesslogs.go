package master

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/pyhost/pyhost/applog"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
)

// Per-app access logs ([daemon] access_log_per_app): LogDir/USER/APP.access.log,
// kept by the master like the app logs (owned by the app's user, mode
// 0600, in the root-owned USER/ directory no other tenant may enter).
// The proxy cannot open them (it may not enter USER/, and must not), so
// it sends each app's lines up the channel, a batch per flush
// (proxymsg.EventAccess), and the master appends them. Reopened with the
// app logs (SIGUSR1, pyctl reopen-logs), so a rotation loses no line:
// a batch is written whole to whichever file is open when it arrives.

// tenantAccess holds the open per-app access logs, by app key.
type tenantAccess struct {
	mu   sync.Mutex
	logs map[string]*applog.Log // guarded by mu; opened at an app's first line or pyctl logs --access
}

// accessLogPath is app a's access log.
func accessLogPath(logDir string, a config.App) string {
	return filepath.Join(logDir, a.Cred.Username, a.Name+".access.log")
}

// tenantAccessLog returns the open access log of the app key, opening
// (and creating) it if needed; nil when no such app runs.
func (m *Master) tenantAccessLog(key string) (*applog.Log, error) {
	t := &m.access
	t.mu.Lock()
	defer t.mu.Unlock()
	// An open log first: the last lines of an app just removed arrive
	// after it (the proxy sends them within 0.2 s) and belong in its
	// file; the next reopen closes it.
	if l := t.logs[key]; l != nil {
		return l, nil
	}
	if m.set.get(key) == nil {
		return nil, nil
	}
	a := m.set.config(key)
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		uid, gid = int(a.Cred.UID), int(a.Cred.GID)
	}
	l, err := applog.Open(accessLogPath(m.cfg.LogDir, a), uid, gid)
	if err != nil {
		return nil, fmt.Errorf("access log of %s: %w", key, err)
	}
	if t.logs == nil {
		t.logs = map[string]*applog.Log{}
	}
	t.logs[key] = l
	return l, nil
}

// onAccessLines appends a batch of the proxy's access lines for app key.
func (m *Master) onAccessLines(key, lines string) {
	if !m.cfg.AccessLogPerApp {
		return
	}
	l, err := m.tenantAccessLog(key)
	if err != nil {
		m.log.Error("cannot write a per-app access log", "app", key, "error", err)
		return
	}
	if l != nil {
		l.Append([]byte(lines))
	}
}

// reopenTenantAccess reopens every per-app access log after a rotation,
// and closes those of apps that no longer run.
func (m *Master) reopenTenantAccess() []error {
	t := &m.access
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := make([]string, 0, len(t.logs))
	for k := range t.logs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, key := range keys {
		l := t.logs[key]
		if m.set.get(key) == nil {
			l.Close()
			delete(t.logs, key)
			continue
		}
		if err := l.Reopen(); err != nil {
			m.log.Error("cannot reopen a per-app access log", "app", key, "error", err)
			errs = append(errs, fmt.Errorf("%s access log: %w", key, err))
		}
	}
	return errs
}

// AccessLogs implements control.AccessLogBackend: pyctl logs APP --access,
// for whoever may read the app's log.
func (m *Master) AccessLogs(ctx context.Context, c control.Caller, name string, n int, follow bool, out func(string) error) error {
	app, err := m.findOne(c, name)
	if err != nil {
		return err
	}
	if !m.cfg.AccessLogPerApp {
		return errors.New("per-app access logs are off on this daemon (the admin's [daemon] access_log_per_app)")
	}
	l, err := m.tenantAccessLog(app.Key())
	if err != nil {
		return err
	}
	if l == nil {
		return fmt.Errorf("%w: %s", control.ErrNoSuchApp, name)
	}
	return l.Tail(ctx, n, follow, out)
}
