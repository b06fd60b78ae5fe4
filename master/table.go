// The routing table the proxy routes by, and the events it sends back.

package master

import (
	"context"

	"github.com/pyhost/pyhost/proxymsg"
	"github.com/pyhost/pyhost/supervisor"
)

// markChanged asks publishLoop for a new table; it never blocks, and
// changes that come while one is pending make one table.
func (m *Master) markChanged() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// table builds the routing table from every app's current route.
func (m *Master) table() proxymsg.Table {
	t := proxymsg.Table{Serial: m.serial.Add(1)}
	for _, app := range m.set.all() {
		t.Apps = append(t.Apps, app.Route())
	}
	t.Default = m.catalog.DefaultApp()
	return t
}

// publishLoop sends a new table to the proxy whenever an app changed.
// Changes that come in a burst are coalesced into one table.
func (m *Master) publishLoop(ctx context.Context) {
	for {
		select {
		case <-m.changed:
		case <-ctx.Done():
			return
		}
		m.sendTable()
		m.kickFigures() // an app's state changed: the metrics see it now
	}
}

// sendTable sends the current table to the proxy, if one runs, and
// returns its serial.
func (m *Master) sendTable() uint64 {
	m.proxyMu.Lock()
	defer m.proxyMu.Unlock()
	t := m.table()
	if m.proxyCh == nil {
		return t.Serial
	}
	if err := m.proxyCh.Send(proxymsg.Message{Table: &t}); err != nil {
		m.log.Warn("cannot send routing table to proxy", "error", err)
	}
	return t.Serial
}

// waitApplied waits until the proxy routes by table serial or a newer one.
func (m *Master) waitApplied(ctx context.Context, serial uint64) error {
	for {
		m.appliedMu.Lock()
		done, c := m.applied >= serial, m.appliedC
		m.appliedMu.Unlock()
		if done {
			return nil
		}
		select {
		case <-c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (m *Master) onProxyEvent(ev proxymsg.Event) {
	switch ev.Kind {
	case proxymsg.EventDrained:
		if app := m.set.get(ev.App); app != nil {
			app.Drained(ev.WorkerID)
		}
	case proxymsg.EventStats:
		m.statsMu.Lock()
		m.stats = ev.Stats
		m.statsMu.Unlock()
	case proxymsg.EventTimeout:
		if app := m.set.get(ev.App); app != nil {
			app.RecycleWorker(ev.WorkerID, supervisor.RecycleReason{Kind: supervisor.RecycleTimeout, Detail: ev.Detail}, true)
		}
	case proxymsg.EventApplied:
		m.appliedMu.Lock()
		if ev.Serial > m.applied {
			m.applied = ev.Serial
			close(m.appliedC)
			m.appliedC = make(chan struct{})
		}
		m.appliedMu.Unlock()
	case proxymsg.EventWake:
		if app := m.set.get(ev.App); app != nil {
			app.Wake()
		}
	case proxymsg.EventBudget:
		if app := m.set.get(ev.App); app != nil {
			app.BudgetSpent(ev.WorkerID)
		}
	case proxymsg.EventAccess:
		m.onAccessLines(ev.App, ev.Detail)
	default:
		m.log.Debug("unknown proxy event", "kind", ev.Kind)
	}
}

// served is the proxy's latest counters for a worker.
func (m *Master) served(workerID string) (uint64, int) {
	m.statsMu.Lock()
	defer m.statsMu.Unlock()
	st := m.stats[workerID]
	return st.Served, st.Busy
}
