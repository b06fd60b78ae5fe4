package supervisor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/channel"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/daemons"
	"github.com/pyhost/pyhost/privdrop"
)

// Errors an App's operations return.
var (
	ErrReloadRunning = errors.New("a reload of this app is already running")
	ErrStopped       = errors.New("app is stopped")
)

// ReloadError is a reload that was aborted; the old workers kept serving.
type ReloadError struct {
	Reason    string
	Traceback string
}

func (e *ReloadError) Error() string { return "reload aborted: " + e.Reason }

// Options are an App's collaborators, shared by all apps of a daemon.
type Options struct {
	Spawner      *privdrop.Spawner
	WorkerScript string // path of pyhost_worker.py, readable by the app user
	SocketDir    string
	// SocketUID and SocketGID own worker sockets so the proxy can connect
	// (see daemons.Spec); -1 leaves them to the daemon's user.
	SocketUID, SocketGID int
	Log                  hclog.Logger
	// Output receives each line of worker output, tagged with the pid.
	Output func(app string, pid int, line string)
	// OnChange is called from the app's goroutine after its route
	// changed; it must not block.
	OnChange func()
	Restart  RestartPolicy
	// Served reports the proxy's counters for a worker: requests served
	// and in flight. Nil: no idle_timeout, and max_requests only from the
	// proxy's reports (BudgetSpent).
	Served func(workerID string) (served uint64, busy int)
	// PollInterval is how often RSS and idleness are checked, and the
	// polled request counters as a backstop for max_requests; 0 means one
	// second.
	PollInterval time.Duration
	// ForkServer: workers are forked from a per-app fork server instead
	// of each starting its own interpreter (docs/design.md).
	ForkServer bool
	// Starter starts the processes; nil: package daemons, from Spawner.
	Starter Starter
	// Clock is the time the app reads and waits on; nil: the real one.
	Clock Clock
}

// workerSeq numbers workers across all apps, so worker ids and socket
// names are never reused during the daemon's life.
var workerSeq atomic.Uint64

type worker struct {
	id      string
	seq     int
	gen     int
	proc    Proc
	fs      ForkServer // its parent, when forked
	state   WorkerState
	readyC  bool // became ready at least once
	slow    bool // killed for missing startup_timeout
	timer   Timer
	budget  int            // this worker's max_requests after jitter
	spent   bool           // the proxy reported its budget completed
	recycle *RecycleReason // set once it is to be replaced
	dumped  bool           // its stacks were dumped to the log
	// drainedAt is when it left the proxy's rotation: its graceful_timeout
	// runs from then, not again from its SIGTERM.
	drainedAt time.Time
	// killedFor says why pyhost killed it outright ("" for no such
	// kill): what its exit is reported as.
	killedFor string
}

type event struct {
	kind   eventKind
	w      *worker
	worker string // for drained, by id
}

type eventKind int

const (
	evReady eventKind = iota
	evExited
	evRestartDue
	evDrained
	evDrainTimeout
	evStartupTimeout
	evTick
	evMemory // time to read the workers' RSS (checkMemory)
)

type reloadOp struct {
	note     func(format string, args ...any) // also into the app's log
	gen      int
	cfg      config.App
	progress chan string
	done     chan error
	draining bool
	// The app was stopped by its owner (halted) or idle when the reload
	// began: the reload starts it on the fresh code, and an abort leaves
	// it as it was.
	halted, idle bool
}

// App supervises one app's workers. Create it with NewApp and run it with
// Run; every other method is safe to call from any goroutine.
type App struct {
	opts    Options
	starter Starter
	clock   Clock
	key     string
	log     hclog.Logger
	route   atomic.Pointer[channel.App]
	ring    *LogRing

	cmds    chan func()
	events  chan event
	started chan struct{} // closed at the first ready worker or start failure
	startMu sync.Mutex
	startE  error

	// Owned by the Run goroutine.
	cfg          config.App
	state        AppState
	failing      bool
	gen          int
	workers      []*worker
	tracker      *RestartTracker
	restarts     int
	lastErr      string
	restartTimer Timer
	reload       *reloadOp
	stopping     bool
	idle         bool // stopped for lack of requests; Wake starts it
	halted       bool // stopped by its owner (pyctl stop); Start starts it
	haltWaiters  []chan struct{}
	startWaiters []chan error // Resume calls waiting for a worker
	lastActive   time.Time
	lastServed   uint64
	memTimer     Timer // the next evMemory; armed again by checkMemory
	forks        forkServers
	stopped      chan struct{} // closed when stopping and no worker is left

	done chan struct{} // closed when Run returns
}

// NewApp prepares an app; nothing starts before Run.
func NewApp(cfg config.App, opts Options) *App {
	a := &App{
		opts:    opts,
		key:     cfg.Key(),
		cfg:     cfg,
		state:   AppStopped,
		tracker: NewRestartTracker(opts.Restart, nil),
		ring:    NewLogRing(50),
		cmds:    make(chan func()),
		events:  make(chan event, 64),
		started: make(chan struct{}),
		stopped: make(chan struct{}),
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
	a.publish()
	return a
}

// Key is "user/app".
func (a *App) Key() string { return a.key }

// Route is the app's current routing entry for the proxy.
func (a *App) Route() channel.App { return *a.route.Load() }

// Run starts the app's workers and supervises them until ctx is done,
// then stops them all (each gets its graceful timeout) and returns.
func (a *App) Run(ctx context.Context) {
	defer close(a.done)
	a.setState(AppStarting)
	a.lastActive = a.clock.Now()
	a.reconcile()
	a.updateState()
	a.publish()
	a.armTick()
	a.armMemory(a.pollInterval())
	defer func() { a.memTimer.Stop() }()
	for {
		select {
		case f := <-a.cmds:
			f()
		case ev := <-a.events:
			a.handle(ev)
		case <-ctx.Done():
			a.stopAll()
			for {
				select {
				case f := <-a.cmds:
					f()
				case ev := <-a.events:
					a.handle(ev)
				case <-a.stopped:
					a.markStarted(ErrStopped)
					return
				}
			}
		}
	}
}

func (a *App) pollInterval() time.Duration {
	if a.opts.PollInterval > 0 {
		return a.opts.PollInterval
	}
	return time.Second
}

// armTick asks for the next evTick, one poll interval from now.
func (a *App) armTick() {
	a.clock.AfterFunc(a.pollInterval(), func() { a.send(event{kind: evTick}) })
}

// armMemory asks for the next evMemory after d.
func (a *App) armMemory(d time.Duration) {
	a.memTimer = a.clock.AfterFunc(d, func() { a.send(event{kind: evMemory}) })
}

// WaitStarted blocks until the first worker is ready (nil) or the app
// failed before any worker was (the first failure, an *daemons.ImportError
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

func (a *App) send(ev event) {
	select {
	case a.events <- ev:
	case <-a.done:
	}
}

// Drained tells the app that the proxy finished with a draining worker.
func (a *App) Drained(workerID string) {
	go a.send(event{kind: evDrained, worker: workerID})
}

// --- worker lifecycle, all on the Run goroutine ---

func (a *App) liveCount(gen int) int {
	n := 0
	for _, w := range a.workers {
		if w.gen == gen && w.recycle == nil && (w.state == WorkerStarting || w.state == WorkerReady) {
			n++
		}
	}
	return n
}

// reconcile starts workers until the serving generation has processes of
// them, unless a restart is being held back by the backoff.
func (a *App) reconcile() {
	if a.stopping || a.idle || a.halted || a.restartTimer != nil {
		return
	}
	for a.liveCount(a.gen) < a.cfg.Processes {
		if _, err := a.spawn(a.cfg, a.gen); err != nil {
			a.log.Error("cannot start worker", "error", err)
			a.lastErr = err.Error()
			a.markStarted(err)
			a.scheduleRestart(a.tracker.Died(a.clock.Now(), 0))
			return
		}
	}
}

func (a *App) spawn(cfg config.App, gen int) (*worker, error) {
	seq := workerSeq.Add(1)
	id := cfg.Name + "-" + strconv.FormatUint(seq, 10)
	// What the app is comes first: a forked worker shows these as its
	// command line, cut to the fork server's length.
	workerArgs := []string{"--script", cfg.Script}
	if cfg.Script == "" {
		workerArgs = []string{"--module", cfg.Module}
	}
	if cfg.Callable != "" {
		workerArgs = append(workerArgs, "--callable", cfg.Callable)
	}
	workerArgs = append(workerArgs, "--directory", cfg.Directory, "--threads", strconv.Itoa(cfg.Threads))
	env := map[string]string{}
	for k, v := range cfg.Env {
		env[k] = v
	}
	if len(cfg.PythonPath) > 0 {
		env["PYTHONPATH"] = strings.Join(cfg.PythonPath, ":")
	}
	spec := daemons.Spec{
		Path:      cfg.Python,
		Args:      append([]string{"-u", a.opts.WorkerScript}, workerArgs...),
		Dir:       cfg.Directory,
		Env:       privdrop.CleanEnv(cfg.Cred, env),
		Cred:      cfg.Cred,
		Socket:    filepath.Join(a.opts.SocketDir, "w"+strconv.FormatUint(seq, 10)+".sock"),
		SocketUID: a.opts.SocketUID,
		SocketGID: a.opts.SocketGID,
		Output:    func(pid int, line string) { a.output(pid, line) },
	}
	var fs ForkServer
	if a.opts.ForkServer {
		fs, spec.ForkArgs = a.forks.get(a, spec), workerArgs
	}
	proc, err := a.starter.StartWorker(spec, fs)
	if err != nil && fs != nil {
		a.log.Warn("fork server failed; starting the worker with its own interpreter", "error", err)
		a.forks.failed(fs, err, a.clock.Now())
		fs = nil
		proc, err = a.starter.StartWorker(spec, nil)
	}
	if err != nil {
		return nil, err
	}
	w := &worker{id: id, seq: int(seq), gen: gen, proc: proc, fs: fs, state: WorkerStarting, budget: RequestBudget(cfg.MaxRequests, nil)}
	a.workers = append(a.workers, w)
	a.log.Info("worker starting", "worker", id, "pid", proc.PID(), "generation", gen)
	a.note("worker %d starting", proc.PID())
	w.timer = a.clock.AfterFunc(cfg.StartupTimeout, func() { a.send(event{kind: evStartupTimeout, w: w}) })
	go func() {
		select {
		case <-proc.Ready():
			a.send(event{kind: evReady, w: w})
		case <-proc.Exited():
		}
		<-proc.Exited()
		a.send(event{kind: evExited, w: w})
	}()
	return w, nil
}

func (a *App) output(pid int, line string) {
	if pid > 0 {
		a.ring.Add(fmt.Sprintf("[%d] %s", pid, line))
	} else {
		a.ring.Add("[pyhost] " + line)
	}
	if a.opts.Output != nil {
		a.opts.Output(a.key, pid, line)
	}
}

// note writes a supervisor event to the app's own log (pid 0), so its
// owner sees what happened to their workers without the daemon's log.
func (a *App) note(format string, args ...any) {
	a.output(0, fmt.Sprintf(format, args...))
}

func (a *App) moveWorker(w *worker, to WorkerState) bool {
	if err := checkWorkerMove(w.state, to); err != nil {
		a.log.Error("refused worker state change", "worker", w.id, "error", err)
		return false
	}
	w.state = to
	return true
}

func (a *App) handle(ev event) {
	switch ev.kind {
	case evReady:
		a.onReady(ev.w)
	case evExited:
		a.onExited(ev.w)
	case evRestartDue:
		a.restartTimer = nil
		a.reconcile()
	case evDrained:
		for _, w := range a.workers {
			if w.id == ev.worker && w.state == WorkerDraining {
				a.stopWorker(w, a.stopGrace(w))
			}
		}
	case evDrainTimeout:
		if ev.w.state == WorkerDraining {
			// Its requests had their graceful_timeout; the worker's own
			// SIGTERM handling would wait for them still, so it is killed.
			a.log.Warn("worker still busy at the end of graceful_timeout; killing it", "worker", ev.w.id, "pid", ev.w.proc.PID(), "graceful_timeout", a.cfg.GracefulTimeout)
			a.note("worker %d still busy at the end of graceful_timeout %v; killed", ev.w.proc.PID(), a.cfg.GracefulTimeout)
			a.stopWorker(ev.w, 0)
		}
	case evTick:
		a.checkIdle(a.clock.Now())
		a.armTick()
	case evMemory:
		a.armMemory(a.checkMemory())
	case evStartupTimeout:
		if ev.w.state == WorkerStarting {
			a.log.Error("worker did not become ready within startup_timeout", "worker", ev.w.id, "pid", ev.w.proc.PID(), "startup_timeout", a.cfg.StartupTimeout)
			ev.w.slow = true
			ev.w.proc.Kill() // handled as a death when it is reaped
		}
	}
	// After any event, not only the tick: a budget held back during a
	// reload is acted on as soon as the reload has ended.
	a.checkLimits(ev.kind == evTick)
	a.updateState()
	a.publish()
}

func (a *App) onReady(w *worker) {
	if w.state != WorkerStarting {
		return
	}
	w.timer.Stop()
	a.moveWorker(w, WorkerReady)
	w.readyC = true
	a.log.Info("worker ready", "worker", w.id, "pid", w.proc.PID(), "generation", w.gen)
	a.note("worker %d ready", w.proc.PID())
	if a.failing {
		a.log.Info("app recovered: a worker is ready again")
		a.lastErr = ""
	}
	a.failing = false
	a.markStarted(nil)
	for _, c := range a.startWaiters {
		c <- nil
	}
	a.startWaiters = nil
	if op := a.reload; op != nil && w.gen == op.gen {
		a.reloadProgress()
		return
	}
	a.retireRecycled()
}

func (a *App) onExited(w *worker) {
	prev := w.state
	if w.timer != nil {
		w.timer.Stop()
	}
	a.moveWorker(w, WorkerGone)
	for i, x := range a.workers {
		if x == w {
			a.workers = append(a.workers[:i], a.workers[i+1:]...)
			break
		}
	}
	exitErr := w.proc.ExitErr()
	importErr := w.proc.ImportErr()
	defer func() {
		if len(a.workers) == 0 && (a.stopping || a.idle || a.halted) {
			a.forks.close()
		}
		if a.stopping && len(a.workers) == 0 {
			select {
			case <-a.stopped:
			default:
				close(a.stopped)
			}
		}
		if len(a.workers) == 0 {
			for _, c := range a.haltWaiters {
				close(c)
			}
			a.haltWaiters = nil
		}
	}()
	if prev == WorkerDraining || prev == WorkerStopping {
		a.log.Info("worker stopped", "worker", w.id, "pid", w.proc.PID(), "status", exitErr)
		a.note("worker %d stopped (%v)", w.proc.PID(), exitErr)
		if op := a.reload; op != nil {
			a.reloadProgress()
		}
		return
	}
	reason := exitErr.Error()
	if w.killedFor != "" {
		reason = w.killedFor
		a.lastErr = "worker " + reason
	} else if w.slow {
		reason = "did not become ready within startup_timeout " + a.cfg.StartupTimeout.String()
		a.lastErr = "worker " + reason
	} else if importErr != nil {
		reason = importErr.Error()
		a.lastErr = importErr.Traceback
	} else if !w.readyC {
		a.lastErr = "worker " + reason + " before it was ready"
	} else {
		a.lastErr = "worker " + reason
	}
	if op := a.reload; op != nil && w.gen == op.gen && !op.draining {
		a.abortReload(w, reason, importErr)
		return
	}
	if a.stopping {
		return
	}
	if w.recycle != nil {
		// Its replacement is already on its way; a worker that dies while
		// being recycled (over its memory, say) is no crash loop.
		a.log.Warn("worker died while being recycled", "worker", w.id, "pid", w.proc.PID(), "reason", reason, "recycle", w.recycle.String())
		return
	}
	if w.fs != nil && errors.Is(exitErr, daemons.ErrForkServer) && !a.forks.firstLoss(w.fs) {
		// Its server's death was counted once, with the first worker it
		// took along; this one only needs replacing.
		a.log.Warn("worker died with its fork server", "worker", w.id, "pid", w.proc.PID())
		a.note("worker %d died with its fork server; replacing it", w.proc.PID())
		if w.gen == a.gen {
			a.scheduleRestart(RestartDecision{})
		}
		return
	}
	now := a.clock.Now()
	uptime := now.Sub(w.proc.StartedAt())
	a.restarts++
	d := a.tracker.Died(now, uptime)
	a.log.Error("worker died", "worker", w.id, "pid", w.proc.PID(), "reason", reason, "uptime", uptime.Round(time.Millisecond), "restart_in", d.Delay.Round(time.Millisecond), "deaths_in_a_row", d.Streak)
	a.note("worker %d died: %s; restarting in %v", w.proc.PID(), reason, d.Delay.Round(time.Millisecond))
	if !w.readyC {
		var err error = fmt.Errorf("%w: %s", daemons.ErrExitedBeforeReady, reason)
		if importErr != nil {
			err = importErr
		}
		a.markStarted(err)
		for _, c := range a.startWaiters {
			c <- err
		}
		a.startWaiters = nil
	}
	if w.gen != a.gen {
		return // an old generation's worker; the new one is complete
	}
	a.scheduleRestart(d)
}

func (a *App) scheduleRestart(d RestartDecision) {
	if d.Failing && !a.failing {
		a.failing = true
		a.log.Error("app is failing: its workers keep dying", "deaths", d.Streak)
		a.note("app is failing: its workers keep dying; it answers 503 and is retried more slowly")
	}
	if a.restartTimer != nil {
		return
	}
	if d.Delay <= 0 {
		a.reconcile()
		return
	}
	a.restartTimer = a.clock.AfterFunc(d.Delay, func() { a.send(event{kind: evRestartDue}) })
}

// drainWorker takes w out of the proxy's rotation; it is stopped when the
// proxy reports it idle, or after graceful_timeout.
func (a *App) drainWorker(w *worker) {
	if w.state == WorkerStarting {
		a.stopWorker(w, a.cfg.GracefulTimeout)
		return
	}
	if !a.moveWorker(w, WorkerDraining) {
		return
	}
	a.log.Info("worker draining", "worker", w.id, "pid", w.proc.PID())
	a.note("worker %d draining", w.proc.PID())
	w.drainedAt = a.clock.Now()
	w.timer = a.clock.AfterFunc(a.cfg.GracefulTimeout, func() { a.send(event{kind: evDrainTimeout, w: w}) })
}

// stopGrace is how long a drained worker gets between SIGTERM and
// SIGKILL: what is left of its graceful_timeout, counted from when it
// left the rotation (a stuck thread holds its SIGTERM exit up), but at
// least a second to exit cleanly once idle.
func (a *App) stopGrace(w *worker) time.Duration {
	left := a.cfg.GracefulTimeout - a.clock.Now().Sub(w.drainedAt)
	return max(left, min(time.Second, a.cfg.GracefulTimeout))
}

func (a *App) stopWorker(w *worker, grace time.Duration) {
	if w.timer != nil {
		w.timer.Stop()
	}
	if a.moveWorker(w, WorkerStopping) {
		w.proc.Stop(grace)
	}
}

func (a *App) stopAll() {
	a.stopping = true
	if a.restartTimer != nil {
		a.restartTimer.Stop()
		a.restartTimer = nil
	}
	if op := a.reload; op != nil {
		op.done <- ErrStopped
		a.reload = nil
	}
	for _, w := range a.workers {
		if w.state != WorkerStopping {
			a.stopWorker(w, a.cfg.GracefulTimeout)
		}
	}
	if len(a.workers) == 0 {
		a.forks.close()
		close(a.stopped)
	}
	a.updateState()
	a.publish()
}

// --- recycling and idleness ---

// recycle marks w for replacement (S3, S4, S5): a new worker starts first
// and w is drained only once the app has its full count of ready workers
// without it, so capacity never drops.
func (a *App) recycle(w *worker, r RecycleReason) {
	if w.recycle != nil || w.state != WorkerReady {
		return
	}
	w.recycle = &r
	a.log.Info("recycling worker", "worker", w.id, "pid", w.proc.PID(), "reason", string(r.Kind), "detail", r.Detail)
	a.note("recycling worker %d: %s", w.proc.PID(), r.Detail)
	a.reconcile()
	if outAtOnce(r.Kind) {
		a.drainWorker(w)
	}
	a.retireRecycled()
}

// outAtOnce reports whether a worker recycled for kind leaves the
// proxy's rotation the moment it is decided, before its replacement is
// ready (issue 11 item 2): a worker with a stuck thread (timeout) would
// hold new connections in its backlog behind that thread, and one over
// its memory limit grows with every request it takes. Other workers and
// the queue (S8) serve until the replacement is ready. A worker that
// spent its request budget is healthy: it serves on until then, taking
// only what no other worker has a free thread for (the proxy's rule for
// a spent worker), so capacity holds; so does one restarted by pyctl.
func outAtOnce(kind RecycleKind) bool {
	return kind == RecycleTimeout || kind == RecycleMemory
}

// retireRecycled drains recycled workers while the app has enough ready
// workers without them.
func (a *App) retireRecycled() {
	ready := 0
	for _, w := range a.workers {
		if w.gen == a.gen && w.state == WorkerReady && w.recycle == nil {
			ready++
		}
	}
	for _, w := range a.workers {
		if w.recycle != nil && w.state == WorkerReady && ready >= a.cfg.Processes {
			a.drainWorker(w)
		}
	}
}

// RecycleWorker replaces the worker with id (a request on it timed out,
// say). dump asks the worker for its threads' stacks first, so the log
// shows where it hung.
func (a *App) RecycleWorker(id string, r RecycleReason, dump bool) {
	go a.do(context.Background(), func() {
		for _, w := range a.workers {
			if w.id != id {
				continue
			}
			if dump && !w.dumped && (w.state == WorkerReady || w.state == WorkerDraining) {
				w.dumped = true
				a.log.Warn("dumping the stuck worker's Python stacks to the app log", "worker", w.id, "pid", w.proc.PID())
				a.output(w.proc.PID(), "pyhost: "+r.Detail+"; stacks of every thread follow")
				w.proc.DumpStacks()
			}
			a.recycle(w, r)
			a.updateState()
			a.publish()
		}
	})
}

// checkLimits recycles the ready workers that are over their request
// budget. A worker's budget is known the moment the proxy reports it
// (BudgetSpent). poll, on the tick, also reads the proxy's polled
// counters: the backstop that still recycles a worker whose budget report
// was lost. Memory has a check of its own, on its own clock
// (checkMemory).
func (a *App) checkLimits(poll bool) {
	lim := Limits{MaxRequests: a.cfg.MaxRequests}
	var candidates []*worker
	var facts []WorkerFacts
	for _, w := range a.workers {
		if w.state != WorkerReady || w.recycle != nil {
			continue
		}
		f := WorkerFacts{RequestBudget: w.budget, BudgetSpent: w.spent}
		if poll && w.budget > 0 && a.opts.Served != nil {
			f.Served, _ = a.opts.Served(w.id)
		}
		candidates = append(candidates, w)
		facts = append(facts, f)
	}
	for _, p := range PlanRecycles(lim, facts, a.reload != nil) {
		a.recycle(candidates[p.Index], p.Reason)
	}
}

// BudgetSpent tells the app that the proxy saw the worker with id
// complete its request budget (S4, max_requests): its replacement starts
// now, or, during a reload, once the reload has ended.
func (a *App) BudgetSpent(id string) {
	go a.do(context.Background(), func() {
		for _, w := range a.workers {
			if w.id == id {
				w.spent = true
			}
		}
		a.checkLimits(false)
		a.updateState()
		a.publish()
	})
}

// checkMemory reads the RSS of every live worker under a memory_limit
// (S3): one over the limit is recycled, and leaves the rotation at once;
// one over the hard ceiling (MemoryCeiling) is killed at once, whatever
// its state, without waiting for graceful_timeout. It returns when to
// look again: sooner for a worker nearer its ceiling (NextMemoryCheck).
func (a *App) checkMemory() time.Duration {
	next := a.pollInterval()
	// A copy: a recycle starts a replacement, which appends a worker.
	for _, w := range slices.Clone(a.workers) {
		limit := a.cfgOf(w).MemoryLimit
		if limit <= 0 || w.state == WorkerGone || w.killedFor != "" {
			continue
		}
		rss, err := w.proc.RSS()
		if err != nil {
			continue // exited; its exit event is on its way
		}
		switch CheckMemory(limit, rss) {
		case MemoryKill:
			a.killOverCeiling(w, rss, limit)
			continue
		case MemoryRecycle:
			if w.state == WorkerReady && w.recycle == nil {
				a.recycle(w, RecycleReason{RecycleMemory, fmt.Sprintf("rss %s > limit %s", FormatBytes(rss), FormatBytes(limit))})
				a.updateState()
				a.publish()
			}
		}
		next = min(next, NextMemoryCheck(limit, rss, next))
	}
	return next
}

// killOverCeiling kills w, whose RSS passed its hard ceiling. A ready
// worker is counted as recycled, not crashed: its replacement starts now
// and the restart backoff does not apply.
func (a *App) killOverCeiling(w *worker, rss, limit int64) {
	ceiling := MemoryCeiling(limit)
	w.killedFor = fmt.Sprintf("killed: rss %s passed the hard memory ceiling %s (1.5 x memory_limit %s)", FormatBytes(rss), FormatBytes(ceiling), FormatBytes(limit))
	a.log.Warn("worker over its hard memory ceiling; killing it without waiting for graceful_timeout", "worker", w.id, "pid", w.proc.PID(), "rss", FormatBytes(rss), "ceiling", FormatBytes(ceiling), "memory_limit", FormatBytes(limit))
	a.note("worker %d %s; not waited for", w.proc.PID(), w.killedFor)
	if w.state == WorkerReady && w.recycle == nil {
		w.recycle = &RecycleReason{RecycleMemory, w.killedFor}
		a.reconcile()
	}
	w.proc.Kill()
	a.updateState()
	a.publish()
}

// cfgOf is the configuration w was started with: the reload's for a
// worker of the generation being rolled out.
func (a *App) cfgOf(w *worker) config.App {
	if op := a.reload; op != nil && w.gen == op.gen {
		return op.cfg
	}
	return a.cfg
}

// checkIdle stops every worker of an app that saw no request for
// idle_timeout (S7).
func (a *App) checkIdle(now time.Time) {
	if a.cfg.IdleTimeout <= 0 || a.opts.Served == nil || a.idle || a.state != AppRunning {
		return
	}
	var total uint64
	busy := 0
	for _, w := range a.workers {
		s, b := a.opts.Served(w.id)
		total += s
		busy += b
	}
	if total != a.lastServed || busy > 0 {
		a.lastServed, a.lastActive = total, now
		return
	}
	if !IdleCheck(a.cfg.IdleTimeout, a.lastActive, now) {
		return
	}
	a.log.Info("app idle; stopping its workers until the next request", "idle_for", now.Sub(a.lastActive).Round(time.Second))
	a.note("idle for %v; stopping the workers until the next request", now.Sub(a.lastActive).Round(time.Second))
	a.idle = true
	for _, w := range a.workers {
		a.drainWorker(w)
	}
}

// Wake starts an idle app's workers: a request is waiting for one.
func (a *App) Wake() {
	go a.do(context.Background(), func() {
		if !a.idle || a.stopping {
			return
		}
		a.log.Info("request for an idle app; starting it")
		a.note("a request arrived; starting")
		a.idle = false
		a.lastActive, a.lastServed = a.clock.Now(), 0
		a.reconcile()
		a.updateState()
		a.publish()
	})
}

// --- owner's stop and start ---

// Halt stops every worker (pyctl stop) and waits until they are gone;
// the app answers 503 until Start.
func (a *App) Halt(ctx context.Context) error {
	gone := make(chan struct{})
	var err error
	if derr := a.do(ctx, func() {
		if a.reload != nil {
			err = ErrReloadRunning
			return
		}
		a.halted = true
		a.idle = false
		if a.restartTimer != nil {
			a.restartTimer.Stop()
			a.restartTimer = nil
		}
		a.note("stopped by its owner")
		a.log.Info("app stopped by its owner")
		for _, w := range a.workers {
			a.drainWorker(w)
		}
		if len(a.workers) == 0 {
			close(gone)
		} else {
			a.haltWaiters = append(a.haltWaiters, gone)
		}
		a.updateState()
		a.publish()
	}); derr != nil {
		return derr
	}
	if err != nil {
		return err
	}
	select {
	case <-gone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Resume starts a stopped or failing app (pyctl start) and waits until a
// worker is ready, or returns why none could start.
func (a *App) Resume(ctx context.Context) error {
	ready := make(chan error, 1)
	if err := a.do(ctx, func() {
		if a.reload != nil && a.halted {
			// A reload is starting this stopped app; it reports itself.
			ready <- ErrReloadRunning
			return
		}
		if !a.halted && !a.failing && !a.idle {
			ready <- nil
			return
		}
		a.halted, a.idle, a.failing = false, false, false
		a.tracker.Reset()
		if a.restartTimer != nil {
			a.restartTimer.Stop()
			a.restartTimer = nil
		}
		a.note("started by its owner")
		a.startWaiters = append(a.startWaiters, ready)
		a.reconcile()
		a.updateState()
		a.publish()
	}); err != nil {
		return err
	}
	select {
	case err := <-ready:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// --- rolling reload ---

// Reload rolls the app onto cfg (S6): new workers start and must all be
// ready before any old one stops taking requests; if one fails, the new
// ones are stopped and the old keep serving. progress is called with
// human-readable steps; it may be nil.
func (a *App) Reload(ctx context.Context, cfg config.App, progress func(string)) error {
	op := &reloadOp{cfg: cfg, progress: make(chan string, 64), done: make(chan error, 1)}
	var startErr error
	if err := a.do(ctx, func() { startErr = a.startReload(op) }); err != nil {
		return err
	}
	if startErr != nil {
		return startErr
	}
	for {
		select {
		case msg := <-op.progress:
			if progress != nil {
				progress(msg)
			}
		case err := <-op.done:
			for {
				select {
				case msg := <-op.progress:
					if progress != nil {
						progress(msg)
					}
				default:
					return err
				}
			}
		}
	}
}

func (op *reloadOp) say(format string, args ...any) {
	if op.note != nil {
		op.note(format, args...)
	}
	select {
	case op.progress <- fmt.Sprintf(format, args...):
	default:
	}
}

func (a *App) startReload(op *reloadOp) error {
	switch {
	case a.stopping:
		return ErrStopped
	case a.reload != nil:
		return ErrReloadRunning
	}
	// A reload of an idle or stopped app starts it on the fresh code
	// (docs/cli.md). A stopped one stays halted until the swap, so
	// nothing starts a worker of the old generation meanwhile, and it
	// simply stays stopped if the new code fails.
	op.note = a.note
	op.idle, op.halted = a.idle, a.halted
	a.idle = false
	if a.halted {
		a.failing = false
		op.say("the app is stopped; starting it on the fresh code")
	}
	op.gen = a.gen + 1
	a.reload = op
	a.setState(AppReloading)
	// One new worker first: a broken import is found at the cost of one
	// process, before the rest start.
	op.say("starting new worker 1 of %d", op.cfg.Processes)
	if _, err := a.spawn(op.cfg, op.gen); err != nil {
		a.reload = nil
		a.idle = op.idle
		a.updateState()
		return &ReloadError{Reason: err.Error()}
	}
	a.publish()
	return nil
}

// reloadProgress advances the reload after a new worker got ready or an
// old one stopped.
func (a *App) reloadProgress() {
	op := a.reload
	if !op.draining {
		ready, live := 0, a.liveCount(op.gen)
		for _, w := range a.workers {
			if w.gen == op.gen && w.state == WorkerReady {
				ready++
			}
		}
		if live < op.cfg.Processes {
			op.say("new worker 1 is ready; starting %d more", op.cfg.Processes-live)
			for a.liveCount(op.gen) < op.cfg.Processes {
				if _, err := a.spawn(op.cfg, op.gen); err != nil {
					a.abortReload(nil, err.Error(), nil)
					return
				}
			}
			return
		}
		if ready < op.cfg.Processes {
			return
		}
		old := a.gen
		a.cfg, a.gen = op.cfg, op.gen
		a.tracker.Reset()
		op.draining = true
		if op.halted {
			a.halted = false
			op.say("all %d new workers are ready; the app runs again", ready)
		} else {
			op.say("all %d new workers are ready; draining the old ones", ready)
		}
		for _, w := range a.workers {
			if w.gen == old && (w.state == WorkerReady || w.state == WorkerStarting) {
				a.drainWorker(w)
			}
		}
	}
	for _, w := range a.workers {
		if w.gen != op.gen {
			return // an old worker is still on its way out
		}
	}
	if !op.halted {
		op.say("old workers stopped")
	}
	a.reload = nil
	a.lastErr = "" // the code that failed is gone
	op.done <- nil
}

func (a *App) abortReload(failed *worker, reason string, importErr *daemons.ImportError) {
	op := a.reload
	a.reload = nil
	after := "the old workers keep serving"
	switch {
	case op.halted:
		after = "the app stays stopped" // still halted: nothing was swapped
	case op.idle:
		a.idle = true // as before: the next request starts it
		after = "the app stays idle"
	}
	a.log.Error("reload aborted; "+after, "reason", reason)
	a.note("reload aborted (%s); %s", reason, after)
	for _, w := range a.workers {
		if w.gen == op.gen && w != failed {
			a.stopWorker(w, time.Second)
		}
	}
	rerr := &ReloadError{Reason: reason}
	if importErr != nil {
		rerr.Traceback = importErr.Traceback
	}
	op.done <- rerr
}

// --- state and publication ---

func (a *App) setState(to AppState) {
	if err := checkAppMove(a.state, to); err != nil {
		a.log.Error("refused app state change", "error", err)
		return
	}
	if a.state != to {
		a.log.Debug("app state", "from", a.state, "to", to)
	}
	a.state = to
}

// updateState derives the app's state from its workers and flags.
func (a *App) updateState() {
	var to AppState
	ready := 0
	for _, w := range a.workers {
		if w.state == WorkerReady {
			ready++
		}
	}
	switch {
	case a.stopping, a.halted && a.reload == nil:
		// A halted app with a reload under way is being started on fresh
		// code: reloading, until the swap or the abort.
		to = AppStopped
	case a.idle:
		to = AppIdle
	case a.failing:
		to = AppFailing
	case a.reload != nil:
		to = AppReloading
	case ready > 0:
		to = AppRunning
	default:
		to = AppStarting
	}
	if a.state == AppStopped && to != AppStopped && !canMove(appMoves, a.state, to) {
		a.setState(AppStarting) // a stopped app that runs again is starting first
	}
	a.setState(to)
}

func (a *App) publish() {
	r := channel.App{
		Key:            a.key,
		Domains:        a.cfg.Domains,
		Prefix:         a.cfg.URLPrefix,
		QueueTimeout:   a.cfg.QueueTimeout,
		StartupTimeout: a.cfg.StartupTimeout,
		QueueLimit:     a.cfg.QueueLimit,
		RequestTimeout: a.cfg.RequestTimeout,
		MaxBody:        a.cfg.MaxBody,
	}
	for _, m := range a.cfg.Static {
		r.Static = append(r.Static, channel.StaticMount{URL: m.URL, Dir: m.Dir, Owner: a.cfg.Cred.UID})
	}
	starting, serving := 0, 0
	for _, w := range a.workers {
		if w.state == WorkerReady {
			serving++
		}
		switch w.state {
		case WorkerReady, WorkerDraining:
			r.Workers = append(r.Workers, channel.Worker{
				ID: w.id, PID: w.proc.PID(), Socket: w.proc.Socket(),
				Threads: a.threadsOf(w), Draining: w.state == WorkerDraining,
				RequestBudget: w.budget,
			})
		case WorkerStarting:
			starting++
		}
	}
	switch {
	case a.state == AppStopped && !a.stopping && !a.halted:
		// Not run yet: Run is about to start it, and a request meanwhile
		// should wait for it, not get a 503.
		r.State = channel.AppStarting
	case a.state == AppStopped:
		r.State = channel.AppStopped
	case a.state == AppIdle:
		r.State = channel.AppIdle
	case a.state == AppFailing:
		r.State = channel.AppFailing
	case serving == 0 && starting > 0:
		// Draining workers finish what they have; new requests wait for
		// the one starting (a worker recycled for a timeout or memory
		// leaves the rotation before its replacement is ready).
		r.State = channel.AppStarting
	case serving == 0 && a.restartTimer != nil:
		r.State = channel.AppStarting
	default:
		r.State = channel.AppRunning
	}
	a.route.Store(&r)
	if a.opts.OnChange != nil {
		a.opts.OnChange()
	}
}

func (a *App) threadsOf(w *worker) int {
	if op := a.reload; op != nil && w.gen == op.gen {
		return op.cfg.Threads
	}
	return a.cfg.Threads
}

// --- status ---

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
}

// Status returns a snapshot taken on the app's goroutine.
func (a *App) Status(ctx context.Context) (Status, error) {
	var s Status
	err := a.do(ctx, func() {
		s = Status{Key: a.key, Config: a.cfg, State: a.state, Restarts: a.restarts, LastError: a.lastErr}
		for _, w := range a.workers {
			s.Workers = append(s.Workers, WorkerStatus{ID: w.id, Seq: w.seq, State: w.state, Process: w.proc, Threads: a.threadsOf(w), StartedAt: w.proc.StartedAt()})
		}
	})
	if s.State == AppFailing || s.LastError != "" {
		s.LastLog = a.ring.Lines()
	}
	return s, err
}
