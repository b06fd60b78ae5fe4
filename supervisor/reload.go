package supervisor

import (
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
)

// The rolling reload (docs/design.md, "Rolling reload"): one new worker
// first, so a broken import costs one process; then the rest; only when
// all processes new workers are ready do the old ones drain, so capacity
// never drops. If a new worker fails before that, the new ones stop and
// the old never noticed.

// reloadOp is one reload under way.
type reloadOp struct {
	cfg      config.App
	progress chan<- string // human-readable steps; a full channel drops them
	done     chan<- error  // the outcome, once; buffered

	gen      int
	first    bool // its first worker has not run yet
	filling  bool // starting the rest, one after another
	draining bool // all new workers were ready: the old ones drain
	noOld    bool // and there were none (idle, or none left by deaths)
	// The app was stopped by its owner (ownerStopped) or idle when the reload
	// began: the reload starts it on the fresh code, and an abort leaves
	// it as it was.
	ownerStopped, idle bool
	// restartAt, when not zero, is when the old generation's restart
	// held back by the backoff was due (a crash loop being fixed): the
	// swap forgets it, an abort holds it again for what is left.
	restartAt time.Time
}

// deferRestart notes a restart of the old generation due at at; the
// latest of them stands, as the backoff only grows within a streak.
func (op *reloadOp) deferRestart(at time.Time) {
	if at.After(op.restartAt) {
		op.restartAt = at
	}
}

// ReloadError is a reload that was aborted; the old workers kept serving.
type ReloadError struct {
	Reason    string
	Traceback string
}

func (e *ReloadError) Error() string { return "reload aborted: " + e.Reason }

// say is a step of the reload, into the app's log and to the caller.
func (c *core) say(op *reloadOp, format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	c.emit(effNote{line})
	c.emit(effProgress{op.progress, line})
}

func (c *core) startReload(op *reloadOp) {
	switch {
	case c.stopping:
		c.emit(effReply{op.done, ErrStopped})
		return
	case c.reload != nil:
		c.emit(effReply{op.done, ErrReloadRunning})
		return
	}
	// A reload of an idle or stopped app starts it on the fresh code
	// (docs/cli.md). A stopped one stays stopped until the swap, so
	// nothing starts a worker of the old generation meanwhile, and it
	// simply stays stopped if the new code fails.
	op.idle, op.ownerStopped = c.idle, c.ownerStopped
	c.idle = false
	if c.ownerStopped {
		c.failing = false
		c.say(op, "the app is stopped; starting it on the fresh code")
	}
	op.gen = c.gen + 1
	op.first = true
	if c.restartHeld {
		// The old generation is crash-looping: its restart waits for
		// the reload's outcome, so that the backoff's timer neither
		// starts its broken code beside the new one nor, after the swap,
		// holds back the new generation's own restarts.
		op.deferRestart(c.restartAt)
		c.cancelRestart()
	}
	c.reload = op
	c.say(op, "starting new worker 1 of %d", op.cfg.Processes)
	c.spawn(op.cfg, op.gen)
}

// fillReload starts the next new worker while the reload is starting
// the rest of them.
func (c *core) fillReload() {
	op := c.reload
	if op == nil || !op.filling {
		return
	}
	if c.liveCount(op.gen) >= op.cfg.Processes {
		op.filling = false
		return
	}
	c.spawn(op.cfg, op.gen).then = c.fillReload
}

// reloadProgress advances the reload after a new worker got ready or an
// old one stopped.
func (c *core) reloadProgress() {
	op := c.reload
	if !op.draining {
		ready, live := 0, c.liveCount(op.gen)
		for _, w := range c.workers {
			if w.gen == op.gen && w.state == WorkerReady {
				ready++
			}
		}
		if ready == 0 {
			// An old worker that was already leaving (a recycle) exited:
			// nothing to advance until the first new worker is ready, or
			// a broken import would cost every process, not one.
			return
		}
		if live < op.cfg.Processes {
			if op.filling {
				return // fillReload is starting them, one after another
			}
			c.say(op, "new worker 1 is ready; starting %d more", op.cfg.Processes-live)
			op.filling = true
			c.fillReload()
			return
		}
		if ready < op.cfg.Processes {
			return
		}
		old := c.gen
		c.cfg, c.gen = op.cfg, op.gen
		c.tracker.Reset()
		c.cancelRestart() // the old generation's backoff is not the new one's
		op.draining = true
		op.noOld = true
		for _, w := range c.workers {
			if w.gen != op.gen {
				op.noOld = false // draining below, or already leaving
			}
		}
		switch {
		case op.ownerStopped:
			c.ownerStopped = false
			c.say(op, "all %d new workers are ready; the app runs again", ready)
		case op.noOld:
			// Idle, or its workers died: it said it drained and
			// stopped old workers it did not have.
			c.say(op, "all %d new workers are ready; there were no old ones to drain", ready)
		default:
			c.say(op, "all %d new workers are ready; draining the old ones", ready)
		}
		for _, w := range c.workers {
			if w.gen == old {
				c.count(control.RestartReload)
				c.drainWorker(w)
			}
		}
	}
	for _, w := range c.workers {
		if w.gen != op.gen {
			return // an old worker is still on its way out
		}
	}
	if !op.ownerStopped && !op.noOld {
		c.say(op, "old workers stopped")
	}
	c.reload = nil
	c.lastErr = "" // the code that failed is gone
	c.emit(effReply{op.done, nil})
}

// abortReload stops the new workers (failed, when not nil, is already
// gone) and leaves the app as it was before the reload.
func (c *core) abortReload(failed *worker, reason, traceback string) {
	op := c.reload
	c.reload = nil
	after := "the old workers keep serving"
	switch {
	case op.ownerStopped:
		after = "the app stays stopped" // still ownerStopped: nothing was swapped
	case op.idle && c.liveCount(c.gen) == 0:
		// As before: the next request starts it. (A resume during the
		// reload may have started workers of the old code: then it is
		// not idle any more.)
		c.idle = true
		after = "the app stays idle"
	}
	c.log(hclog.Error, "reload aborted; "+after, "reason", reason)
	c.note("reload aborted (%s); %s", reason, after)
	for _, w := range c.workers {
		if w.gen == op.gen && w != failed && w.state != WorkerStopping {
			c.stopWorker(w, startingGrace)
		}
	}
	c.emit(effReply{op.done, &ReloadError{Reason: reason, Traceback: traceback}})
	c.resumeDeferredRestart(op)
}

// resumeDeferredRestart holds back again, for what is left of its delay,
// the old generation's restart that the aborted reload op deferred: the
// app is left as it was before the reload, backoff included.
func (c *core) resumeDeferredRestart(op *reloadOp) {
	if op.restartAt.IsZero() || c.restartHeld {
		return
	}
	if left := op.restartAt.Sub(c.now); left > 0 {
		c.holdRestart(left)
		return
	}
	c.reconcile()
}
