package master

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/proxymsg"
)

// The master's side of the metrics (docs/metrics.md). It never serves
// HTTP: the proxy serves /metrics on the metrics_listen socket the master
// binds (listeners.go), counts the requests itself, and exports what
// only the master knows (workers, restarts, memory, CPU, reloads), which
// the master pushes down as proxymsg.Figures every figuresInterval. pyctl
// metrics asks the proxy over the channel for the text of the caller's
// apps.

// figuresInterval is how often the master sends its figures down: a
// scrape every 15 s or so sees them at most this old.
var figuresInterval = 2 * time.Second

// figuresTimeout bounds how long the figures wait for the apps' status.
const figuresTimeout = 10 * time.Second

// metricsTimeout bounds how long `pyctl metrics` waits for the proxy's
// answer (a proxy restarting never answers the question it lost).
var metricsTimeout = 10 * time.Second

// metricsState is what the master keeps for the metrics.
type metricsState struct {
	reloads        atomic.Uint64
	reloadFailures atomic.Uint64

	kick chan struct{} // set by startMetrics when metrics are on

	mu      sync.Mutex
	nextID  uint64
	waiting map[uint64]chan proxymsg.MetricsAnswer // guarded by mu

	// carried is, per app without a cgroup, what keeps its CPU counter
	// from going down (steadyCPU); only pushFigures touches it.
	carried map[string]*cpuCarry
}

// cpuCarry is an app's CPU counter without a cgroup: the last sum of
// its live workers' CPU, and the CPU of workers gone since, carried.
type cpuCarry struct{ last, carried float64 }

// steadyCPU is the CPU counter of an app without a cgroup whose live
// workers used live seconds: it never goes down. A replaced worker takes
// its CPU time with it, so the live sum drops at every recycle; exported
// as it was, rate() took each drop for a counter reset and counted the
// remaining workers' whole CPU time again (a spike per max_requests
// recycle). The drop is carried: only what a worker used between the
// last reading and its end (2 s at most) is not counted.
func steadyCPU(c *cpuCarry, live float64) float64 {
	if live < c.last {
		c.carried += c.last - live
	}
	c.last = live
	return c.carried + live
}

// startMetrics starts pushing figures to the proxy, when metrics are
// on, until ctx ends; call it before the proxy starts.
func (m *Master) startMetrics(ctx context.Context) {
	if !m.metricsOn() {
		return
	}
	m.metrics.kick = make(chan struct{}, 1)
	go m.pushFigures(ctx, m.metrics.kick)
}

// kickFigures has the figures sent now (a proxy just started).
func (m *Master) kickFigures() {
	select {
	case m.metrics.kick <- struct{}{}:
	default: // one is due already, or metrics are off (nil)
	}
}

// countReload counts a reload-config (or SIGHUP) that ended with err.
func (m *Master) countReload(err error) {
	if err != nil {
		m.metrics.reloadFailures.Add(1)
	} else {
		m.metrics.reloads.Add(1)
	}
}

// metricsOn reports whether the proxy counts requests and serves them.
func (m *Master) metricsOn() bool { return m.cfg.MetricsListen != "" }

// figures are the supervisor's figures of every app, from the status
// pyctl status shows root. Only pushFigures calls it (m.metrics.carried).
func (m *Master) figures(ctx context.Context) proxymsg.Figures {
	f := proxymsg.Figures{StartTime: m.daemon.started, Reloads: m.metrics.reloads.Load(), ReloadFailures: m.metrics.reloadFailures.Load()}
	st, err := m.Status(ctx, control.Caller{UID: 0}, "")
	if err != nil {
		m.log.Debug("figures for the metrics", "error", err)
	}
	seen := make(map[string]bool, len(st))
	for _, as := range st {
		if as.State == control.AppRefused {
			continue // a file that is not running: pyctl status says why
		}
		af := appFigures(as)
		if as.Cgroup == "" {
			key := as.User + "/" + as.Name
			seen[key] = true
			if m.metrics.carried == nil {
				m.metrics.carried = map[string]*cpuCarry{}
			}
			c := m.metrics.carried[key]
			if c == nil {
				c = &cpuCarry{}
				m.metrics.carried[key] = c
			}
			af.CPUSeconds = steadyCPU(c, af.CPUSeconds)
		}
		f.Apps = append(f.Apps, af)
	}
	if err == nil {
		for key := range m.metrics.carried {
			if !seen[key] {
				delete(m.metrics.carried, key) // removed: its series went
			}
		}
	}
	return f
}

// appFigures are one app's figures from its status.
func appFigures(as control.AppStatus) proxymsg.AppFigures {
	af := proxymsg.AppFigures{
		User: as.User, App: as.Name, State: as.State,
		Workers:  map[string]int{},
		Restarts: as.RestartsByReason,
		OOMKills: as.OOMKills, MemoryCurrentBytes: as.MemoryCurrentBytes, MemoryMaxBytes: as.MemoryMaxBytes, Tasks: as.Tasks,
	}
	var cpu float64
	for _, w := range as.Workers {
		af.Workers[w.State]++
		af.RSSBytes += w.RSSBytes
		cpu += w.CPUSeconds
	}
	// The cgroup's CPU time only grows, as a counter must; the live
	// workers' sum drops when one is replaced.
	if as.Cgroup != "" {
		cpu = as.CgroupCPUSeconds
	}
	af.CPUSeconds = cpu
	return af
}

// pushFigures sends the figures to the proxy now and every
// figuresInterval until ctx ends; a proxy that starts gets them at once
// (kick).
func (m *Master) pushFigures(ctx context.Context, kick <-chan struct{}) {
	t := time.NewTicker(figuresInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-kick:
		case <-ctx.Done():
			return
		}
		// An app's actor busy starting its fork server delays the
		// figures, never stops them.
		fctx, cancel := context.WithTimeout(ctx, figuresTimeout)
		f := m.figures(fctx)
		cancel()
		m.proxyMu.Lock()
		if m.proxyCh != nil {
			if err := m.proxyCh.Send(proxymsg.Message{Figures: &f}); err != nil {
				m.log.Debug("cannot send figures to the proxy", "error", err)
			}
		}
		m.proxyMu.Unlock()
	}
}

// onMetricsAnswer hands the proxy's answer to whoever asked.
func (m *Master) onMetricsAnswer(a proxymsg.MetricsAnswer) {
	m.metrics.mu.Lock()
	c := m.metrics.waiting[a.ID]
	delete(m.metrics.waiting, a.ID)
	m.metrics.mu.Unlock()
	if c != nil {
		c <- a // buffered: the asker may have given up
	}
}

// Metrics implements control.MetricsBackend: the Prometheus text of the
// apps c may see (app names one), root's without app everything the
// metrics endpoint shows.
func (m *Master) Metrics(ctx context.Context, c control.Caller, app string) (string, error) {
	q := proxymsg.MetricsQuery{All: c.IsRoot() && app == ""}
	if !q.All {
		apps, err := m.find(c, app)
		if err != nil {
			return "", err
		}
		for _, a := range apps {
			q.Apps = append(q.Apps, a.Key())
		}
	}
	if !m.metricsOn() {
		return "", errors.New("metrics are off: set [daemon] metrics_listen in pyhost.toml (docs/metrics.md)")
	}
	ctx, cancel := context.WithTimeout(ctx, metricsTimeout)
	defer cancel()
	answer := make(chan proxymsg.MetricsAnswer, 1)
	m.metrics.mu.Lock()
	m.metrics.nextID++
	q.ID = m.metrics.nextID
	if m.metrics.waiting == nil {
		m.metrics.waiting = map[uint64]chan proxymsg.MetricsAnswer{}
	}
	m.metrics.waiting[q.ID] = answer
	m.metrics.mu.Unlock()
	defer func() {
		m.metrics.mu.Lock()
		delete(m.metrics.waiting, q.ID)
		m.metrics.mu.Unlock()
	}()
	m.proxyMu.Lock()
	var err error
	if m.proxyCh == nil {
		err = errors.New("the proxy is not running (it is being restarted); try again")
	} else {
		err = m.proxyCh.Send(proxymsg.Message{MetricsQuery: &q})
	}
	m.proxyMu.Unlock()
	if err != nil {
		return "", err
	}
	select {
	case a := <-answer:
		if a.Error != "" {
			return "", errors.New(a.Error)
		}
		return a.Text, nil
	case <-ctx.Done():
		return "", fmt.Errorf("the proxy did not answer within %s: %w", metricsTimeout, ctx.Err())
	}
}

var _ control.MetricsBackend = (*Master)(nil)
