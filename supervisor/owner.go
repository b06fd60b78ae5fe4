package supervisor

import "github.com/hashicorp/go-hclog"

// The owner's stop and start (pyctl stop, pyctl start; docs/cli.md).

// ownerStop stops every worker; reply gets nil once they are all gone, or why
// the app cannot be stopped now.
func (c *core) ownerStop(reply chan<- error) {
	if c.reload != nil {
		c.emit(effReply{reply, ErrReloadRunning})
		return
	}
	c.ownerStopped = true
	c.idle = false
	c.cancelRestart()
	c.note("stopped by its owner")
	c.log(hclog.Info, "app stopped by its owner")
	for _, w := range c.workers {
		c.drainWorker(w)
	}
	if len(c.workers) == 0 {
		c.emit(effReply{reply, nil})
		return
	}
	c.stopWaiters = append(c.stopWaiters, reply)
}

// ownerStart starts a stopped, idle or failing app, or one whose restart
// is held back (a worker died, or could not be spawned, and the next
// waits out a backoff: not failing yet, or a slow crash loop that never
// is): pyctl start retries it now, as a failing one. reply gets nil once
// a worker is ready, why none could start, or ErrAlreadyStarted when
// there is nothing to start.
func (c *core) ownerStart(reply chan<- error) {
	if c.reload != nil && c.ownerStopped {
		// A reload is starting this stopped app; it reports itself.
		c.emit(effReply{reply, ErrReloadRunning})
		return
	}
	if !c.ownerStopped && !c.failing && !c.idle && !c.restartHeld {
		c.emit(effReply{reply, ErrAlreadyStarted})
		return
	}
	c.ownerStopped, c.idle, c.failing = false, false, false
	c.tracker.Reset()
	c.cancelRestart()
	c.note("started by its owner")
	c.startWaiters = append(c.startWaiters, reply)
	c.reconcile()
}
