package supervisor

import "github.com/hashicorp/go-hclog"

// The owner's stop and start (pyctl stop, pyctl start; docs/cli.md).

// halt stops every worker; reply gets nil once they are all gone, or why
// the app cannot be stopped now.
func (c *core) halt(reply chan<- error) {
	if c.reload != nil {
		c.emit(effReply{reply, ErrReloadRunning})
		return
	}
	c.halted = true
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
	c.haltWaiters = append(c.haltWaiters, reply)
}

// resume starts a stopped, idle or failing app; reply gets nil once a
// worker is ready, or why none could start.
func (c *core) resume(reply chan<- error) {
	if c.reload != nil && c.halted {
		// A reload is starting this stopped app; it reports itself.
		c.emit(effReply{reply, ErrReloadRunning})
		return
	}
	if !c.halted && !c.failing && !c.idle {
		c.emit(effReply{reply, nil})
		return
	}
	c.halted, c.idle, c.failing = false, false, false
	c.tracker.Reset()
	c.cancelRestart()
	c.note("started by its owner")
	c.startWaiters = append(c.startWaiters, reply)
	c.reconcile()
}
