package supervisor

import (
	"time"

	"github.com/hashicorp/go-hclog"
)

// idle_timeout (docs/config.md): an app that saw no request for that long
// stops its workers; the next request wakes it.

// IdleCheck is the pure decision "has the app been idle long enough to
// stop its workers?". lastActive is the last time a request was in
// flight or completed.
func IdleCheck(idleTimeout time.Duration, lastActive, now time.Time) bool {
	return idleTimeout > 0 && now.Sub(lastActive) >= idleTimeout
}

// checkIdle stops every worker of a running app that saw no request for
// idle_timeout; served is the proxy's counters (nil: none, no idling).
func (c *core) checkIdle(served map[string]counters) {
	if c.cfg.IdleTimeout <= 0 || served == nil || c.state() != AppRunning {
		return
	}
	var total uint64
	busy := 0
	for _, w := range c.workers {
		s := served[w.id]
		total += s.Requests
		busy += s.Busy
	}
	if total != c.lastServed || busy > 0 {
		c.lastServed, c.lastActive = total, c.now
		return
	}
	if !IdleCheck(c.cfg.IdleTimeout, c.lastActive, c.now) {
		return
	}
	idleFor := c.now.Sub(c.lastActive).Round(time.Second)
	c.log(hclog.Info, "app idle; stopping its workers until the next request", "idle_for", idleFor)
	c.note("idle for %v; stopping the workers until the next request", idleFor)
	c.idle = true
	for _, w := range c.workers {
		c.drainWorker(w)
	}
}

// startDisabled makes an app with enabled = false begin stopped (D5):
// loaded, its claims held by the daemon, but no worker and no fork
// server; pyctl start (Start) starts it. Its first start counts as done.
func (c *core) startDisabled() {
	if !c.cfg.Disabled {
		return
	}
	c.ownerStopped = true
	c.log(hclog.Info, "app stopped: enabled = false")
	c.started(nil)
}

// startIdle makes an app with idle_timeout begin idle (D8, no boot
// storm): a daemon of many such apps starts none of their processes, not
// even a fork server, until a request wakes one. Its first start counts
// as done (WaitStarted answers nil at once): its code is first imported
// at its first request, and an import error shows then.
func (c *core) startIdle() {
	if c.cfg.IdleTimeout <= 0 || c.ownerStopped {
		return
	}
	c.idle = true
	c.log(hclog.Info, "app idle until its first request (idle_timeout)")
	c.started(nil)
}

// wake starts an idle app's workers: a request is waiting for one.
func (c *core) wake() {
	if !c.idle || c.stopping {
		return
	}
	c.log(hclog.Info, "request for an idle app; starting it")
	c.note("a request arrived; starting")
	c.idle = false
	c.lastActive, c.lastServed = c.now, 0
	c.reconcile()
}
