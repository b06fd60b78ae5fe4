package supervisor

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/applog"
	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/proxymsg"
)

// Errors an App's operations return.
var (
	ErrReloadRunning = errors.New("a reload of this app is already running")
	ErrStopped       = errors.New("app is stopped")
	// ErrAlreadyStarted is Start's answer when there was nothing to
	// start: the app runs, or its workers are on their way, with no
	// restart held back. Nothing was done.
	ErrAlreadyStarted = errors.New("already started")
)

// Options are an App's collaborators, shared by all apps of a daemon.
type Options struct {
	Spawner      *privdrop.Spawner
	WorkerScript string // path of pyhost_worker.py, readable by the app user
	SocketDir    string
	// SocketUID and SocketGID own worker sockets so the proxy can connect
	// (see workerproc.Spec); -1 leaves them to the daemon's user.
	SocketUID, SocketGID int
	Log                  hclog.Logger
	// Output receives each line of worker output, tagged with the pid,
	// and the supervisor's own notes about the app, with applog.NotePID.
	Output func(app string, pid int, line string)
	// OnChange is called from the app's goroutine after its route
	// changed; it must not block.
	OnChange func()
	Restart  RestartPolicy
	// Served reports the proxy's counters for a worker: requests served
	// and in flight. Nil: no idle_timeout, and max_requests only from the
	// proxy's reports (BudgetSpent).
	Served func(workerID string) (served uint64, busy int)
	// PollInterval is how often idleness is checked, and the polled
	// request counters as a backstop for max_requests, and the longest
	// a worker's RSS goes unread; 0 means one second.
	PollInterval time.Duration
	// ForkServer: workers are forked from a per-app fork server instead
	// of each starting its own interpreter (docs/design.md).
	ForkServer bool
	// Starter starts the processes; nil: package workerproc, from Spawner.
	Starter Starter
	// Clock is the time the app reads and waits on; nil: the real one.
	Clock Clock
	// WarmupPaths is an app's warm-up paths (its warmup key, D3): each
	// new worker counts as ready only once every one answered below 500
	// through it, within startup_timeout. Nil, or no paths: none.
	WarmupPaths func(cfg config.App) []string
	// Warmer requests them; nil: the real one, over the worker protocol.
	Warmer Warmer
	// Cgroup is the app's cgroup (issue 14): its limits are written
	// there, its fork server runs in it and each worker in a leaf below
	// it (cgroup.go). Nil: no cgroup; process groups and polling only.
	Cgroup *cgroup.Group
}

// workerSeq numbers workers across all apps, so worker ids and socket
// names are never reused during the daemon's life.
var workerSeq atomic.Uint64

// App supervises one app's workers. Create it with NewApp and run it with
// Run; every other method is safe to call from any goroutine.
//
// App carries out what its core decides: Run's goroutine owns the core
// and every field below marked so, takes one event at a time, hands it
// to the core and executes the effects through the Starter and the
// Clock, then publishes the route.
type App struct {
	opts    Options
	starter Starter
	clock   Clock
	warmer  Warmer
	key     string
	log     hclog.Logger
	route   atomic.Pointer[proxymsg.App]
	ring    *LogRing
	tails   workerTails // each worker's own last lines, for its failure

	cmds    chan func() // run on Run's goroutine (do)
	events  chan event
	started chan struct{} // closed at the first ready worker or start failure
	startMu sync.Mutex
	startE  error // guarded by startMu; final once started is closed

	cg *appCgroup // nil: no cgroup

	// Owned by the Run goroutine.
	core  *core
	procs map[string]Proc // the running workers by id
	forks forkServers

	done chan struct{} // closed when Run returns

	// settings are the settings in force, for Config (config.go).
	settings settings
}

// NewApp prepares an app; nothing starts before Run.
func NewApp(cfg config.App, opts Options) *App {
	a := &App{
		opts:    opts,
		key:     cfg.Key(),
		ring:    NewLogRing(50),
		cmds:    make(chan func()),
		events:  make(chan event, 64),
		started: make(chan struct{}),
		procs:   map[string]Proc{},
		done:    make(chan struct{}),
	}
	a.log = opts.Log.Named("supervisor").With("app", a.key)
	a.starter, a.clock = opts.Starter, opts.Clock
	if a.starter == nil {
		a.starter = spawnerStarter{opts.Spawner}
	}
	if a.clock == nil {
		a.clock = realClock{}
	}
	if a.warmer = opts.Warmer; a.warmer == nil {
		a.warmer = protocolWarmer{}
	}
	poll := opts.PollInterval
	if poll <= 0 {
		poll = time.Second
	}
	a.core = newCore(cfg, opts.Restart, poll, nil, func() uint64 { return workerSeq.Add(1) })
	a.cg = newAppCgroup(opts.Cgroup)
	a.publish()
	return a
}

// Key is "user/app".
func (a *App) Key() string { return a.key }

// Route is the app's current routing entry for the proxy.
func (a *App) Route() proxymsg.App { return *a.route.Load() }

// Run starts the app's workers and supervises them until ctx is done,
// then stops them all (each gets its graceful timeout) and returns.
func (a *App) Run(ctx context.Context) {
	defer close(a.done)
	defer a.closeGroup()
	a.applyLimits(a.core.cfg)
	a.watchOOM(ctx)
	a.step(evStart{})
	stop := ctx.Done()
	for !a.core.finished() {
		select {
		case f := <-a.cmds:
			f()
		case ev := <-a.events:
			a.step(ev)
		case <-stop:
			stop = nil
			a.step(evShutdown{})
		}
	}
	a.markStarted(ErrStopped)
}

// step hands ev to the core and carries out its effects; a spawn's
// outcome is handed back before anything else. Then the route is
// published, once.
func (a *App) step(ev event) {
	queue := []event{ev}
	// Answers wait until the route is published: whoever WaitStarted,
	// Start or Reload wakes reads the Route the answer is about, not the
	// one before it.
	var answers []effect
	for len(queue) > 0 {
		ev, queue = queue[0], queue[1:]
		switch e := ev.(type) {
		case evExited:
			delete(a.procs, e.id)
			a.killStrays()
		case evTick:
			ev = evTick{served: a.served()}
		case evMemory:
			ev = evMemory{rss: a.rss()}
		}
		for _, e := range a.core.Handle(ev, a.clock.Now()) {
			switch e.(type) {
			case effStarted, effReply:
				answers = append(answers, e)
				continue
			}
			if next := a.exec(e); next != nil {
				queue = append(queue, next)
			}
		}
	}
	a.settleLimits()
	a.publish()
	for _, e := range answers {
		a.exec(e)
	}
}

// exec carries out one effect; a spawn returns its outcome.
func (a *App) exec(e effect) event {
	switch e := e.(type) {
	case effSpawn:
		return a.spawn(e)
	case effStop:
		if p := a.procs[e.id]; p != nil {
			p.Stop(e.grace)
		}
	case effKill:
		if p := a.procs[e.id]; p != nil {
			p.Kill()
		}
	case effDump:
		if p := a.procs[e.id]; p != nil {
			a.output(p.PID(), e.line)
			p.DumpStacks()
		}
	case effTimer:
		a.clock.AfterFunc(e.after, func() { a.send(e.ev) })
	case effLog:
		a.log.Log(e.level, e.msg, e.args...)
	case effNote:
		a.note(e.line)
	case effStarted:
		a.markStarted(e.err)
	case effReply:
		select {
		case e.to <- e.err: // buffered for its one answer
		default:
			a.log.Error("a second answer to one request dropped", "error", e.err)
		}
	case effProgress:
		select {
		case e.to <- e.line:
		default: // nobody reads fast enough; the app's log has it
		}
	case effCloseForkServers:
		a.forks.close()
		a.killGroup()
	default:
		panic(fmt.Sprintf("supervisor: unknown effect %T", e))
	}
	return nil
}

// served is the proxy's counters for every worker; nil without them.
func (a *App) served() map[string]counters {
	if a.opts.Served == nil {
		return nil
	}
	m := make(map[string]counters, len(a.procs))
	for id := range a.procs {
		n, busy := a.opts.Served(id)
		m[id] = counters{Requests: n, Busy: busy}
	}
	return m
}

// rss reads the RSS of the workers the core watches; one that cannot be
// read has exited, and its exit event is on its way.
func (a *App) rss() map[string]int64 {
	m := map[string]int64{}
	for _, id := range a.core.memoryWatched() {
		if p := a.procs[id]; p != nil {
			if n, err := p.RSS(); err == nil {
				m[id] = n
			}
		}
	}
	return m
}

// publish stores the core's route, and the settings in force, and
// tells OnChange when the route changed.
func (a *App) publish() {
	a.publishSettings()
	r := a.core.route()
	if old := a.route.Load(); old != nil && reflect.DeepEqual(*old, r) {
		return
	}
	a.route.Store(&r)
	if a.opts.OnChange != nil {
		a.opts.OnChange()
	}
}

// WaitStarted blocks until the first worker is ready (nil) or the app
// failed before any worker was (the first failure, an *workerproc.ImportError
// when the import raised).
func (a *App) WaitStarted(ctx context.Context) error {
	select {
	case <-a.started:
		a.startMu.Lock()
		defer a.startMu.Unlock()
		return a.startE
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *App) markStarted(err error) {
	a.startMu.Lock()
	defer a.startMu.Unlock()
	select {
	case <-a.started:
	default:
		a.startE = err
		close(a.started)
	}
}

// do runs f on the app's goroutine and waits for it.
func (a *App) do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case a.cmds <- func() { f(); close(done) }:
	case <-a.done:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ping returns once the app's goroutine has answered: the watchdog's
// check that the actor is not wedged. ErrStopped once the app is gone.
func (a *App) Ping(ctx context.Context) error { return a.do(ctx, func() {}) }

func (a *App) send(ev event) {
	select {
	case a.events <- ev:
	case <-a.done:
	}
}

// output is a line of the app's log: worker pid's (0: the supervisor's
// own note), kept in the worker's tail too.
func (a *App) output(pid int, line string) {
	if pid != applog.NotePID {
		a.tails.add(pid, line)
	}
	a.logLine(pid, line)
}

// forkServerOutput is a line a fork server wrote: in the app's log, and
// no worker's tail (a server is never reaped as a worker is, and its
// tail would stay).
func (a *App) forkServerOutput(pid int, line string) { a.logLine(pid, line) }

// note is a line of the supervisor's own about the app.
func (a *App) note(line string) { a.logLine(applog.NotePID, line) }

func (a *App) logLine(pid int, line string) {
	if pid != applog.NotePID {
		a.ring.Add(fmt.Sprintf("[%d] %s", pid, line))
	} else {
		a.ring.Add("[pyhost] " + line)
	}
	if a.opts.Output != nil {
		a.opts.Output(a.key, pid, line)
	}
}

// --- what the proxy and the owner tell the app ---

// Drained tells the app that the proxy finished with a draining worker.
func (a *App) Drained(workerID string) { go a.send(evDrained{workerID}) }

// BudgetSpent tells the app that the proxy saw the worker with id
// complete its request budget (max_requests): its replacement starts
// now, or, during a reload, once the reload has ended.
func (a *App) BudgetSpent(id string) { go a.send(evBudgetSpent{id}) }

// RecycleWorker replaces the worker with id (a request on it timed out,
// say). dump asks the worker for its threads' stacks first, so the log
// shows where it hung.
func (a *App) RecycleWorker(id string, r RecycleReason, dump bool) {
	go a.send(evRecycle{id, r, dump})
}

// Wake starts an idle app's workers: a request is waiting for one.
func (a *App) Wake() { go a.send(evWake{}) }

// Stop stops every worker (pyctl stop) and waits until they are gone;
// the app answers 503 until Start.
func (a *App) Stop(ctx context.Context) error {
	return a.ask(ctx, func(r chan<- error) event { return evOwnerStop{r} })
}

// Start starts a stopped, idle or failing app, or one whose restart the
// backoff holds back (pyctl start), and waits until a worker is ready,
// or returns why none could start; ErrAlreadyStarted when it did nothing.
func (a *App) Start(ctx context.Context) error {
	return a.ask(ctx, func(r chan<- error) event { return evOwnerStart{r} })
}

// ask hands the core the event ev makes and waits for its one answer.
func (a *App) ask(ctx context.Context, ev func(chan<- error) event) error {
	reply := make(chan error, 1)
	if err := a.do(ctx, func() { a.step(ev(reply)) }); err != nil {
		return err
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Reload rolls the app onto cfg (docs/design.md, "Rolling reload"): new
// workers start and must all be ready before any old one stops taking
// requests; if one fails, the new ones are stopped and the old keep
// serving. progress is called with human-readable steps; it may be nil.
func (a *App) Reload(ctx context.Context, cfg config.App, progress func(string)) error {
	lines := make(chan string, 64)
	done := make(chan error, 1)
	op := &reloadOp{cfg: cfg, progress: lines, done: done}
	if err := a.do(ctx, func() { a.applyRollLimits(cfg); a.step(evReload{op}) }); err != nil {
		return err
	}
	say := func(line string) {
		if progress != nil {
			progress(line)
		}
	}
	for {
		select {
		case line := <-lines:
			say(line)
		case err := <-done:
			for {
				select {
				case line := <-lines:
					say(line)
				default:
					return err
				}
			}
		}
	}
}

// Status returns a snapshot taken on the app's goroutine.
func (a *App) Status(ctx context.Context) (Status, error) {
	var s Status
	err := a.do(ctx, func() { s = a.core.status(a.procs) })
	a.cgroupStatus(&s)
	if s.State == AppFailing || s.LastError != "" {
		s.LastLog = a.ring.Lines()
	}
	return s, err
}
