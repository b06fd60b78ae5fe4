package supervisor

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/workerproc"
)

// A worker's life, as the core decides it: started to keep the serving
// generation at its processes, replaced with backoff when it dies,
// drained before it is stopped.

// reconcile starts a worker if the serving generation has fewer than
// processes of them, unless the app is not to run or a restart is held
// back by the backoff. One at a time: the next follows its evSpawned.
func (c *core) reconcile() {
	if c.stopping || c.idle || c.ownerStopped || c.restartHeld {
		return
	}
	if c.liveCount(c.gen) < c.cfg.Processes {
		c.spawn(c.cfg, c.gen).then = c.reconcile
	}
}

// spawn asks for a worker of gen with cfg. It counts as starting from
// now; the App answers with evSpawned or evSpawnFailed before any other
// event.
func (c *core) spawn(cfg config.App, gen int) *worker {
	seq := c.nextSeq()
	w := &worker{
		id:       cfg.Name + "-" + strconv.FormatUint(seq, 10),
		seq:      int(seq),
		gen:      gen,
		state:    WorkerStarting,
		spawning: true,
		budget:   RequestBudget(cfg.MaxRequests, c.rand),
	}
	c.workers = append(c.workers, w)
	c.emit(effSpawn{id: w.id, seq: seq, gen: gen, cfg: cfg})
	return w
}

func (c *core) onSpawned(ev evSpawned) {
	w := c.find(ev.id)
	if w == nil || !w.spawning {
		return
	}
	w.spawning = false
	w.pid, w.socket, w.startedAt, w.via = ev.pid, ev.socket, ev.startedAt, ev.via
	if op := c.reload; op != nil && w.gen == op.gen {
		op.first = false
	}
	if w.state == WorkerStopping {
		// Stopped while it was being started.
		c.emit(effStop{w.id, w.stopGrace})
		return
	}
	c.log(hclog.Info, "worker starting", "worker", w.id, "pid", w.pid, "generation", w.gen)
	c.note("worker %d starting", w.pid)
	c.emit(effTimer{c.cfgOf(w).StartupTimeout, evStartupTimeout{w.id}})
	if w.then != nil {
		w.then() // the next of the same batch, if it is still short
	}
}

func (c *core) onSpawnFailed(ev evSpawnFailed) {
	w := c.find(ev.id)
	if w == nil || !w.spawning {
		return
	}
	c.remove(w)
	if op := c.reload; op != nil && w.gen == op.gen {
		if op.first {
			// The reload's first worker: nothing of it ran.
			c.reload = nil
			c.idle = op.idle && c.liveCount(c.gen) == 0
			c.emit(effReply{op.done, &ReloadError{Reason: ev.err.Error()}})
			c.resumeDeferredRestart(op)
			return
		}
		c.abortReload(nil, ev.err.Error(), "")
		return
	}
	c.log(hclog.Error, "cannot start worker", "error", ev.err)
	c.lastErr = ev.err.Error()
	c.started(ev.err)
	c.scheduleRestart(c.tracker.Died(c.now, 0))
}

func (c *core) onReady(w *worker) {
	if w.state != WorkerStarting || w.spawning {
		return
	}
	c.move(w, WorkerReady)
	w.wasReady = true
	c.log(hclog.Info, "worker ready", "worker", w.id, "pid", w.pid, "generation", w.gen)
	c.note("worker %d ready", w.pid)
	if c.failing {
		c.log(hclog.Info, "app recovered: a worker is ready again")
		c.lastErr = ""
	}
	c.failing = false
	c.started(nil)
	for _, r := range c.startWaiters {
		c.emit(effReply{r, nil})
	}
	c.startWaiters = nil
	if op := c.reload; op != nil && w.gen == op.gen {
		c.reloadProgress()
		return
	}
	c.retireRecycled()
}

func (c *core) onExited(w *worker, ev evExited) {
	exitErr, importErr := ev.err, ev.importErr
	prev := w.state
	c.move(w, WorkerGone)
	c.remove(w)
	defer c.afterExit()
	if exitErr == nil {
		exitErr = errors.New("exited")
	}
	if prev == WorkerDraining || prev == WorkerStopping {
		c.log(hclog.Info, "worker stopped", "worker", w.id, "pid", w.pid, "status", exitErr)
		c.note("worker %d stopped (%v)", w.pid, exitErr)
		if c.reload != nil {
			c.reloadProgress()
		}
		return
	}
	reason := exitErr.Error()
	if ev.oom != "" {
		reason = "killed by the kernel's OOM killer: " + ev.oom
	}
	var traceback string
	var startErr error // why it never got ready, for WaitStarted and Start
	switch {
	case w.warmErr != nil && w.slow:
		reason = fmt.Sprintf("warm-up GET %s did not answer within startup_timeout %v", w.warmErr.Path, c.cfgOf(w).StartupTimeout)
		c.lastErr = "worker " + reason
		traceback = ev.tail
		startErr = &WarmupError{Path: w.warmErr.Path, Err: errors.New("no answer within startup_timeout " + c.cfgOf(w).StartupTimeout.String()), Traceback: ev.tail}
	case w.warmErr != nil:
		// Like an import error: the app's own failure, with its
		// traceback, which the worker wrote to its log.
		reason = w.warmErr.Error()
		traceback = ev.tail
		c.lastErr = strings.TrimSpace(reason + "\n" + ev.tail)
		werr := *w.warmErr
		werr.Traceback = ev.tail
		startErr = &werr
	case w.killedFor != "":
		reason = w.killedFor
		c.lastErr = "worker " + reason
	case w.slow:
		reason = "did not become ready within startup_timeout " + c.cfgOf(w).StartupTimeout.String()
		c.lastErr = "worker " + reason
	case importErr != nil:
		reason = importErr.Error()
		traceback = importErr.Traceback
		c.lastErr = importErr.Traceback
		startErr = importErr
	case !w.wasReady:
		c.lastErr = "worker " + reason + " before it was ready"
	default:
		c.lastErr = "worker " + reason
	}
	if op := c.reload; op != nil && w.gen == op.gen && !op.draining {
		c.abortReload(w, reason, traceback)
		return
	}
	if c.stopping {
		return
	}
	if w.recycle != nil {
		// Its replacement is already on its way; a worker that dies
		// while being recycled (over its memory, say) is no crash loop.
		c.log(hclog.Warn, "worker died while being recycled", "worker", w.id, "pid", w.pid, "reason", reason, "recycle", w.recycle.String())
		return
	}
	if w.via != nil && errors.Is(exitErr, workerproc.ErrForkServer) && !c.firstLoss(w.via) {
		// Its server's death was counted once, with the first worker it
		// took along; this one only needs replacing.
		c.log(hclog.Warn, "worker died with its fork server", "worker", w.id, "pid", w.pid)
		c.note("worker %d died with its fork server; replacing it", w.pid)
		if w.gen == c.gen {
			c.scheduleRestart(RestartDecision{})
		}
		return
	}
	uptime := c.now.Sub(w.startedAt)
	c.restarts++
	if ev.oom != "" {
		c.count(control.RestartOOM)
	} else {
		c.count(control.RestartCrash)
	}
	d := c.tracker.Died(c.now, uptime)
	c.log(hclog.Error, "worker died", "worker", w.id, "pid", w.pid, "reason", reason, "uptime", uptime.Round(time.Millisecond), "restart_in", d.Delay.Round(time.Millisecond), "deaths_in_a_row", d.Streak)
	c.note("worker %d died: %s; restarting in %v", w.pid, reason, d.Delay.Round(time.Millisecond))
	if !w.wasReady {
		err := startErr
		if err == nil {
			err = fmt.Errorf("%w: %s", workerproc.ErrExitedBeforeReady, reason)
		}
		c.started(err)
		for _, r := range c.startWaiters {
			c.emit(effReply{r, err})
		}
		c.startWaiters = nil
	}
	if w.gen != c.gen {
		return // an old generation's worker; the new one is complete
	}
	c.scheduleRestart(d)
}

// afterExit follows every reaped worker: the last one of an app that is
// not to run takes its fork servers along and answers Stop.
func (c *core) afterExit() {
	if len(c.workers) > 0 {
		return
	}
	if c.stopping || c.idle || c.ownerStopped {
		c.closeForkServers()
	}
	for _, r := range c.stopWaiters {
		c.emit(effReply{r, nil})
	}
	c.stopWaiters = nil
}

func (c *core) closeForkServers() {
	c.emit(effCloseForkServers{})
	c.lost = nil
}

// scheduleRestart applies a restart decision: the app may be failing
// now, and its replacement starts at once or after the delay.
func (c *core) scheduleRestart(d RestartDecision) {
	if d.Failing && !c.failing {
		c.failing = true
		c.log(hclog.Error, "app is failing: its workers keep dying", "deaths", d.Streak)
		c.note("app is failing: its workers keep dying; it answers 503 and is retried more slowly")
	}
	if c.restartHeld {
		return
	}
	if d.Delay <= 0 {
		c.reconcile()
		return
	}
	if op := c.reload; op != nil && !op.draining {
		// The generation that keeps dying is being replaced: its restart
		// waits for the reload's outcome (deferRestart), rather than
		// start its broken code beside the new one.
		op.deferRestart(c.now.Add(d.Delay))
		return
	}
	c.holdRestart(d.Delay)
}

// holdRestart starts the serving generation's missing workers after d,
// not before: reconcile waits for the evRestartDue.
func (c *core) holdRestart(d time.Duration) {
	c.restartHeld, c.restartAt = true, c.now.Add(d)
	c.restartSeq++
	c.emit(effTimer{d, evRestartDue{c.restartSeq}})
}

// cancelRestart forgets a restart held back: its evRestartDue is stale.
// One a reload deferred is forgotten too.
func (c *core) cancelRestart() {
	if c.restartHeld {
		c.restartHeld = false
		c.restartSeq++
	}
	if c.reload != nil {
		c.reload.restartAt = time.Time{}
	}
}

// drainWorker takes w out of the proxy's rotation; it is stopped when
// the proxy reports it idle, or after graceful_timeout. A starting one
// is stopped at once; one already on its way out is left as it is.
func (c *core) drainWorker(w *worker) {
	switch w.state {
	case WorkerStarting:
		c.stopWorker(w, c.graceOf(w))
		return
	case WorkerReady:
	default:
		return
	}
	c.move(w, WorkerDraining)
	c.log(hclog.Info, "worker draining", "worker", w.id, "pid", w.pid)
	c.note("worker %d draining", w.pid)
	w.drainedAt = c.now
	c.emit(effTimer{c.cfg.GracefulTimeout, evDrainTimeout{w.id}})
}

// stopGrace is how long a drained worker gets between SIGTERM and
// SIGKILL: what is left of its graceful_timeout, counted from when it
// left the rotation (a stuck thread holds its SIGTERM exit up), but at
// least a second to exit cleanly once idle.
func (c *core) stopGrace(w *worker) time.Duration {
	left := c.cfg.GracefulTimeout - c.now.Sub(w.drainedAt)
	return max(left, min(time.Second, c.cfg.GracefulTimeout))
}

// startingGrace is how long a worker that is still starting gets after
// SIGTERM: it has no request in flight, and a Python import does not
// look at SIGTERM until it is done, so graceful_timeout (15 s by default)
// would only hold up a stop or an exit for nothing.
const startingGrace = time.Second

// graceOf is the grace a stop gives w: graceful_timeout for a worker
// that may have requests, startingGrace for one still starting.
func (c *core) graceOf(w *worker) time.Duration {
	if w.state == WorkerStarting {
		return min(startingGrace, c.cfg.GracefulTimeout)
	}
	return c.cfg.GracefulTimeout
}

func (c *core) stopWorker(w *worker, grace time.Duration) {
	if !c.move(w, WorkerStopping) {
		return
	}
	if w.spawning {
		w.stopGrace = grace // sent once it runs
		return
	}
	c.emit(effStop{w.id, grace})
}

func (c *core) onDrainTimeout(id string) {
	w := c.find(id)
	if w == nil || w.state != WorkerDraining {
		return
	}
	// Its requests had their graceful_timeout; the worker's own SIGTERM
	// handling would wait for them still, so it is killed.
	c.log(hclog.Warn, "worker still busy at the end of graceful_timeout; killing it", "worker", w.id, "pid", w.pid, "graceful_timeout", c.cfg.GracefulTimeout)
	c.note("worker %d still busy at the end of graceful_timeout %v; killed", w.pid, c.cfg.GracefulTimeout)
	c.stopWorker(w, 0)
}

// onWarmupFailed: a worker that imported its app failed a warm-up path
// (D3). It is killed, and its death is reported as the warm-up's
// failure: a reload aborts, a first start fails, as for an import error.
func (c *core) onWarmupFailed(w *worker, err *WarmupError) {
	if w.state != WorkerStarting || w.warmErr != nil {
		return // stopped meanwhile: the warm-up failed because it went
	}
	w.warmErr = err
	if w.slow {
		return // killed already for missing startup_timeout
	}
	c.log(hclog.Error, "worker failed its warm-up", "worker", w.id, "pid", w.pid, "error", err)
	c.note("worker %d failed its warm-up: %s", w.pid, err)
	c.emit(effKill{w.id})
}

func (c *core) onStartupTimeout(id string) {
	w := c.find(id)
	if w == nil || w.state != WorkerStarting {
		return
	}
	c.log(hclog.Error, "worker did not become ready within startup_timeout", "worker", w.id, "pid", w.pid, "startup_timeout", c.cfgOf(w).StartupTimeout)
	w.slow = true
	c.emit(effKill{w.id}) // handled as a death when it is reaped
}

// shutdown stops every worker, each with its graceful timeout: the
// daemon is stopping the app.
func (c *core) shutdown() {
	c.stopping = true
	c.cancelRestart()
	if op := c.reload; op != nil {
		c.emit(effReply{op.done, ErrStopped})
		c.reload = nil
	}
	for _, w := range c.workers {
		if w.state != WorkerStopping {
			c.stopWorker(w, c.graceOf(w))
		}
	}
	if len(c.workers) == 0 {
		c.closeForkServers()
	}
}
