package master

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/proxymsg"
)

// proxyReopenTimeout bounds how long `pyctl reopen-logs` waits for the
// proxy to say it reopened the access log; a proxy that does not answer
// in that time is stuck, and logrotate should hear about it.
const proxyReopenTimeout = 10 * time.Second

// ReopenLogs implements control.Backend: `pyctl reopen-logs` does what
// SIGUSR1 does, for root and the user the daemon runs as, and reports
// what failed. Unlike the signal it returns only once the proxy has
// reopened the access log, so that a logrotate postrotate running it
// knows nothing is written to the rotated files any more.
func (m *Master) ReopenLogs(ctx context.Context, c control.Caller) error {
	if err := m.authorize(c, daemonOwn, nil); err != nil {
		return err
	}
	m.log.Info("reopening app logs and the access log", "uid", c.UID, "pid", c.PID)
	return m.reopenAll(ctx)
}

// reopenAll reopens every app log, creates the access log anew and waits
// until the proxy writes to it. Every failure is logged and returned; a
// failed file does not keep the others from being reopened.
func (m *Master) reopenAll(ctx context.Context) error {
	var errs []error
	logs := m.set.logsByKey()
	keys := make([]string, 0, len(logs))
	for k := range logs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if err := logs[key].Reopen(); err != nil {
			m.log.Error("cannot reopen app log", "app", key, "error", err)
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	errs = append(errs, m.reopenTenantAccess()...)
	if err := m.reopenAccessLogWait(ctx); err != nil {
		m.log.Error("cannot reopen the access log", "error", err)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// reopenAccessLogWait is reopenAccessLog, waiting for the proxy: it
// handles the channel's messages in order, so once it routes by a table
// sent after the Reopen, the Reopen is done.
func (m *Master) reopenAccessLogWait(ctx context.Context) error {
	if m.cfg.AccessLog == "" {
		return nil
	}
	if err := m.prepareAccessLog(); err != nil {
		return err
	}
	m.proxyMu.Lock()
	ch := m.proxyCh
	var err error
	if ch != nil {
		err = ch.Send(proxymsg.Message{Reopen: &proxymsg.Reopen{}})
	}
	m.proxyMu.Unlock()
	if ch == nil {
		return nil // a proxy that starts opens the new file anyway
	}
	if err != nil {
		return fmt.Errorf("cannot tell the proxy to reopen the access log: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, proxyReopenTimeout)
	defer cancel()
	if err := m.waitApplied(wctx, m.sendTable()); err != nil {
		return fmt.Errorf("the proxy did not confirm it reopened the access log: %w", err)
	}
	return nil
}
