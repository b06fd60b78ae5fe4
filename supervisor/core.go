package supervisor

import (
	"fmt"
	"maps"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/proxymsg"
	"github.com/pyhost/pyhost/workerproc"
)

// core is every decision about one app: which workers to start, stop,
// kill or recycle, when, and what the proxy should route to. It is a
// plain value with one entry point, Handle, that takes an event and the
// time and returns effects for the App to carry out; it starts nothing,
// reads no clock and touches no process, so a table of events tests it.
//
// The app's state is never stored: state() derives it from the fields
// below, and Handle checks each change against appMoves.
type core struct {
	key     string
	poll    time.Duration // how often the App sends evTick
	cfg     config.App    // the serving generation's configuration
	gen     int           // the serving generation
	workers []*worker     // in start order; a worker leaves when reaped
	tracker *RestartTracker
	rand    func() float64 // for request budgets; nil: math/rand
	nextSeq func() uint64  // numbers workers daemon-wide

	restarts int            // crashes counted, for status
	byReason map[string]int // replacements by reason (control.Restart*), for status
	lastErr  string         // why the app last failed, for status

	begun        bool // Run has started it
	stopping     bool // the daemon is stopping it (Run's context is done)
	ownerStopped bool // stopped by its owner (pyctl stop) until Start
	idle         bool // stopped for lack of requests until Wake
	failing      bool // its workers keep dying (RestartDecision.Failing)

	// A restart held back by the backoff: reconcile waits for the
	// evRestartDue carrying restartSeq, due at restartAt; an older one is
	// stale.
	restartHeld bool
	restartSeq  int
	restartAt   time.Time

	reload       *reloadOp
	stopWaiters  []chan<- error // Stop calls waiting for the last worker to go
	startWaiters []chan<- error // Start calls waiting for a ready worker
	startedSent  bool           // effStarted went out (it goes once)

	lastActive time.Time // last time a request was seen (idle_timeout)
	lastServed uint64    // the requests counted then

	// Fork servers whose death was already counted as a crash (firstLoss);
	// forgotten when the app's servers are closed.
	lost map[ForkServer]bool

	now time.Time // the time of the event being handled
	out []effect  // the effects it produced so far
}

// worker is what the core knows of one worker process.
type worker struct {
	id        string
	seq       int
	gen       int
	state     WorkerState
	spawning  bool          // effSpawn went out; its evSpawned/evSpawnFailed not yet in
	then      func()        // what to do once it runs: start the next, if any
	stopGrace time.Duration // the grace of a stop decided while spawning
	pid       int
	socket    string
	startedAt time.Time
	via       ForkServer // its fork server, when forked
	wasReady  bool       // became ready at least once
	slow      bool       // killed for missing startup_timeout
	budget    int        // this worker's max_requests after jitter
	spent     bool       // the proxy reported its budget completed
	recycle   *RecycleReason
	dumped    bool // its stacks were dumped to the log
	// drainedAt is when it left the proxy's rotation: its graceful_timeout
	// runs from then, not again from its SIGTERM.
	drainedAt time.Time
	// killedFor says why pyhost killed it outright ("" for no such kill):
	// what its exit is reported as.
	killedFor string
	// warmErr: its warm-up failed (it was killed for it, unless it had
	// already missed startup_timeout).
	warmErr *WarmupError
}

// panicOnIllegal turns an illegal state move into a panic; the package's
// tests set it, so no test passes over one. Otherwise it is logged and,
// for a worker, refused.
var panicOnIllegal = false

// newCore decides for an app of cfg. rnd (nil: math/rand) jitters
// restarts and request budgets; nextSeq numbers workers.
func newCore(cfg config.App, restart RestartPolicy, poll time.Duration, rnd func() float64, nextSeq func() uint64) *core {
	return &core{
		key:     cfg.Key(),
		poll:    poll,
		cfg:     cfg,
		tracker: NewRestartTracker(restart, rnd),
		rand:    rnd,
		nextSeq: nextSeq,
	}
}

// Handle applies one event at now and returns what to do about it, in
// order.
func (c *core) Handle(ev event, now time.Time) []effect {
	c.now, c.out = now, nil
	from := c.state()
	switch ev := ev.(type) {
	case evStart:
		c.begun = true
		c.lastActive = now
		c.startDisabled()
		c.startIdle()
		c.reconcile()
		c.emit(effTimer{c.poll, evTick{}})
		c.emit(effTimer{c.poll, evMemory{}})
	case evShutdown:
		c.shutdown()
	case evSpawned:
		c.onSpawned(ev)
	case evSpawnFailed:
		c.onSpawnFailed(ev)
	case evReady:
		if w := c.find(ev.id); w != nil {
			c.onReady(w)
		}
	case evExited:
		if w := c.find(ev.id); w != nil {
			c.onExited(w, ev)
		}
	case evWarmupFailed:
		if w := c.find(ev.id); w != nil {
			c.onWarmupFailed(w, ev.err)
		}
	case evRestartDue:
		if c.restartHeld && ev.seq == c.restartSeq {
			c.restartHeld = false
			c.reconcile()
		}
	case evDrained:
		if w := c.find(ev.id); w != nil && w.state == WorkerDraining {
			c.stopWorker(w, c.stopGrace(w))
		}
	case evDrainTimeout:
		c.onDrainTimeout(ev.id)
	case evStartupTimeout:
		c.onStartupTimeout(ev.id)
	case evTick:
		c.checkIdle(ev.served)
		c.emit(effTimer{c.poll, evTick{}})
	case evMemory:
		c.emit(effTimer{c.checkMemory(ev.rss), evMemory{}})
	case evBudgetSpent:
		if w := c.find(ev.id); w != nil {
			w.spent = true
		}
	case evRecycle:
		c.onRecycle(ev)
	case evWake:
		c.wake()
	case evOwnerStop:
		c.ownerStop(ev.reply)
	case evOwnerStart:
		c.ownerStart(ev.reply)
	case evReload:
		c.startReload(ev.op)
	default:
		panic(fmt.Sprintf("supervisor: unknown event %T", ev))
	}
	// After any event, not only the tick: a budget held back during a
	// reload is acted on as soon as the reload has ended.
	var served map[string]counters
	if t, ok := ev.(evTick); ok {
		served = t.served
	}
	c.checkLimits(served)
	if to := c.state(); to != from {
		if err := checkAppMove(from, to); err != nil {
			c.illegal(err)
		}
		c.log(hclog.Debug, "app state", "from", from, "to", to)
	}
	return c.out
}

// state derives the app's state from its fields: the one place it is
// decided.
func (c *core) state() AppState {
	switch {
	case !c.begun, c.stopping:
		return AppStopped
	case c.ownerStopped && c.reload == nil:
		// An owner-stopped app with a reload under way is being started on
		// fresh code: reloading, until the swap or the abort.
		return AppStopped
	case c.idle:
		return AppIdle
	case c.failing:
		return AppFailing
	case c.reload != nil:
		return AppReloading
	}
	for _, w := range c.workers {
		if w.state == WorkerReady {
			return AppRunning
		}
	}
	return AppStarting
}

// finished reports whether Run may return: stopping, and no worker left.
func (c *core) finished() bool { return c.stopping && len(c.workers) == 0 }

// route is what the proxy should route to, derived from the state.
func (c *core) route() proxymsg.App {
	cfg := c.cfg
	r := proxymsg.App{Key: c.key, Domains: cfg.Domains, Prefix: cfg.URLPrefix}
	cfg.RouteTunables(&r) // queue_timeout, max_body, …: config's table says which
	for _, m := range cfg.Static {
		r.Static = append(r.Static, proxymsg.StaticMount{URL: m.URL, Dir: m.Dir, Owner: cfg.Cred.UID})
	}
	starting, serving := 0, 0
	for _, w := range c.workers {
		switch w.state {
		case WorkerReady, WorkerDraining:
			if w.state == WorkerReady {
				serving++
			}
			r.Workers = append(r.Workers, proxymsg.Worker{
				ID: w.id, PID: w.pid, Socket: w.socket,
				Threads: c.cfgOf(w).Threads, Draining: w.state == WorkerDraining,
				RequestBudget: w.budget,
			})
		case WorkerStarting:
			starting++
		}
	}
	switch st := c.state(); {
	case !c.begun && c.cfg.Disabled:
		// Not run yet, and it will begin stopped (startDisabled).
		r.State = proxymsg.AppStopped
	case !c.begun && c.cfg.IdleTimeout > 0:
		// Not run yet, and it will start idle (startIdle): a request
		// meanwhile wakes it, and the wake waits for Run.
		r.State = proxymsg.AppIdle
	case !c.begun:
		// Not run yet: Run is about to start it, and a request meanwhile
		// should wait for it, not get a 503.
		r.State = proxymsg.AppStarting
	case st == AppStopped:
		r.State = proxymsg.AppStopped
	case st == AppIdle:
		r.State = proxymsg.AppIdle
	case st == AppFailing:
		r.State = proxymsg.AppFailing
	case serving == 0 && (starting > 0 || c.restartHeld):
		// Draining workers finish what they have; new requests wait for
		// the one starting (a worker recycled for a timeout or memory
		// leaves the rotation before its replacement is ready), or for
		// the restart the backoff holds back.
		r.State = proxymsg.AppStarting
	default:
		r.State = proxymsg.AppRunning
	}
	return r
}

// --- helpers ---

func (c *core) emit(e effect) { c.out = append(c.out, e) }

// log is a line in the daemon's log.
func (c *core) log(level hclog.Level, msg string, args ...any) {
	c.emit(effLog{level, msg, args})
}

// note is a supervisor line in the app's own log, so its owner sees what
// happened to their workers without the daemon's log.
func (c *core) note(format string, args ...any) {
	c.emit(effNote{fmt.Sprintf(format, args...)})
}

func (c *core) illegal(err error) {
	if panicOnIllegal {
		panic(err)
	}
	c.log(hclog.Error, "refused state change", "error", err)
}

// move changes w's state if workerMoves allows it.
func (c *core) move(w *worker, to WorkerState) bool {
	if err := checkWorkerMove(w.state, to); err != nil {
		c.illegal(fmt.Errorf("%s: %w", w.id, err))
		return false
	}
	w.state = to
	return true
}

func (c *core) find(id string) *worker {
	for _, w := range c.workers {
		if w.id == id {
			return w
		}
	}
	return nil
}

func (c *core) remove(w *worker) {
	for i, x := range c.workers {
		if x == w {
			c.workers = append(c.workers[:i], c.workers[i+1:]...)
			return
		}
	}
}

// liveCount is the workers of gen that are, or will be, serving.
func (c *core) liveCount(gen int) int {
	n := 0
	for _, w := range c.workers {
		if w.gen == gen && w.recycle == nil && (w.state == WorkerStarting || w.state == WorkerReady) {
			n++
		}
	}
	return n
}

// cfgOf is the configuration w was started with: the reload's for a
// worker of the generation being rolled out.
func (c *core) cfgOf(w *worker) config.App {
	if op := c.reload; op != nil && w.gen == op.gen {
		return op.cfg
	}
	return c.cfg
}

// started reports the app's first start (ready, or why not), once.
func (c *core) started(err error) {
	if !c.startedSent {
		c.startedSent = true
		c.emit(effStarted{err})
	}
}

// firstLoss reports whether a worker that died with fork server fs is the
// first of that server's workers to be reported: the server's death is
// one crash for the restart policy, not one per worker it took along.
func (c *core) firstLoss(fs ForkServer) bool {
	if c.lost == nil {
		c.lost = map[ForkServer]bool{}
	}
	if c.lost[fs] {
		return false
	}
	c.lost[fs] = true
	return true
}

// memoryWatched is the workers whose RSS evMemory should carry.
func (c *core) memoryWatched() []string {
	var ids []string
	for _, w := range c.workers {
		if !w.spawning && w.state != WorkerGone && w.killedFor == "" && c.cfgOf(w).MemoryLimit > 0 {
			ids = append(ids, w.id)
		}
	}
	return ids
}

// WorkerStatus is one worker in a Status snapshot.
type WorkerStatus struct {
	ID        string
	Seq       int
	State     WorkerState
	Process   Proc
	Threads   int
	StartedAt time.Time
}

// Status is a snapshot of the app for pyctl.
type Status struct {
	Key       string
	Config    config.App
	State     AppState
	Workers   []WorkerStatus
	Restarts  int
	LastError string
	LastLog   []string
	// RestartsByReason counts replacements by control.Restart* reason;
	// never nil.
	RestartsByReason map[string]int
	// The app's cgroup (issue 14), when it has one: its path below the
	// tree, the memory_max in force, and the group's figures.
	Cgroup      string
	MemoryMax   int64
	CgroupStats cgroup.Stats
}

// status is the core's part of a Status; procs gives each worker's
// process.
func (c *core) status(procs map[string]Proc) Status {
	s := Status{Key: c.key, Config: c.cfg, State: c.state(), Restarts: c.restarts, LastError: c.lastErr, RestartsByReason: maps.Clone(c.byReason)}
	if s.RestartsByReason == nil {
		s.RestartsByReason = map[string]int{}
	}
	for _, w := range c.workers {
		if w.spawning {
			continue
		}
		s.Workers = append(s.Workers, WorkerStatus{ID: w.id, Seq: w.seq, State: w.state, Process: procs[w.id], Threads: c.cfgOf(w).Threads, StartedAt: w.startedAt})
	}
	return s
}

// --- events: what happened ---

type event interface{ isEvent() }

type (
	evStart    struct{} // Run began
	evShutdown struct{} // Run's context is done: stop everything
	// evSpawned: effSpawn's worker runs.
	evSpawned struct {
		id        string
		pid       int
		socket    string
		startedAt time.Time
		via       ForkServer
	}
	evSpawnFailed struct {
		id  string
		err error
	}
	evReady  struct{ id string }
	evExited struct {
		id        string
		err       error // how it ended
		importErr *workerproc.ImportError
		tail      string // the last lines it wrote
		// oom, when not "", is the limit whose reaching made the
		// kernel's OOM killer kill it ("memory.max 512MiB reached").
		oom string
	}
	// evWarmupFailed: a warm-up path failed through a worker that
	// reported ready (it is not, and must go).
	evWarmupFailed struct {
		id  string
		err *WarmupError
	}
	evRestartDue     struct{ seq int }
	evDrained        struct{ id string } // the proxy finished with it
	evDrainTimeout   struct{ id string }
	evStartupTimeout struct{ id string }
	// evTick: the poll interval passed; served is the proxy's counters
	// per worker, nil when there are none (no Options.Served).
	evTick struct{ served map[string]counters }
	// evMemory: time to check memory; rss is each watched worker's
	// (memoryWatched) that could be read.
	evMemory      struct{ rss map[string]int64 }
	evBudgetSpent struct{ id string }
	evRecycle     struct {
		id     string
		reason RecycleReason
		dump   bool
	}
	evWake       struct{}
	evOwnerStop  struct{ reply chan<- error } // nil once every worker is gone
	evOwnerStart struct{ reply chan<- error } // nil once a worker is ready
	evReload     struct{ op *reloadOp }
)

// counters are the proxy's counters for one worker.
type counters struct {
	Requests uint64 // completed
	Busy     int    // in flight
}

func (evStart) isEvent()          {}
func (evShutdown) isEvent()       {}
func (evSpawned) isEvent()        {}
func (evSpawnFailed) isEvent()    {}
func (evReady) isEvent()          {}
func (evWarmupFailed) isEvent()   {}
func (evExited) isEvent()         {}
func (evRestartDue) isEvent()     {}
func (evDrained) isEvent()        {}
func (evDrainTimeout) isEvent()   {}
func (evStartupTimeout) isEvent() {}
func (evTick) isEvent()           {}
func (evMemory) isEvent()         {}
func (evBudgetSpent) isEvent()    {}
func (evRecycle) isEvent()        {}
func (evWake) isEvent()           {}
func (evOwnerStop) isEvent()      {}
func (evOwnerStart) isEvent()     {}
func (evReload) isEvent()         {}

// --- effects: what to do ---

type effect interface{ isEffect() }

type (
	// effSpawn: start worker id of generation gen with cfg, and answer
	// with evSpawned or evSpawnFailed before any other event.
	effSpawn struct {
		id  string
		seq uint64
		gen int
		cfg config.App
	}
	// effStop: SIGTERM, then SIGKILL to its group after grace.
	effStop struct {
		id    string
		grace time.Duration
	}
	effKill struct{ id string }
	// effDump: write line to the app's log as the worker's, then ask
	// it for its threads' stacks.
	effDump struct {
		id   string
		line string
	}
	// effTimer: deliver ev after d.
	effTimer struct {
		after time.Duration
		ev    event
	}
	effLog struct {
		level hclog.Level
		msg   string
		args  []any
	}
	effNote    struct{ line string }
	effStarted struct{ err error } // WaitStarted's answer
	effReply   struct {
		to  chan<- error
		err error
	}
	effProgress struct {
		to   chan<- string
		line string
	}
	// effCloseForkServers: the app has no worker left and will start
	// none soon: stop its fork servers.
	effCloseForkServers struct{}
)

func (effSpawn) isEffect()            {}
func (effStop) isEffect()             {}
func (effKill) isEffect()             {}
func (effDump) isEffect()             {}
func (effTimer) isEffect()            {}
func (effLog) isEffect()              {}
func (effNote) isEffect()             {}
func (effStarted) isEffect()          {}
func (effReply) isEffect()            {}
func (effProgress) isEffect()         {}
func (effCloseForkServers) isEffect() {}

// count adds one replacement for reason to the status's figures.
func (c *core) count(reason string) {
	if c.byReason == nil {
		c.byReason = map[string]int{}
	}
	c.byReason[reason]++
}
