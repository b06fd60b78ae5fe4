package supervisor

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pyhost/pyhost/proxymsg"
	"github.com/pyhost/pyhost/workerproc"
)

// The core's tests feed it events and read its effects: no process, no
// goroutine, no clock.

// driver plays the App around a core: it answers each effSpawn at once,
// as the App does, and keeps every effect.
type driver struct {
	t    *testing.T
	c    *core
	now  time.Time
	seq  uint64
	fail map[uint64]error // spawns that fail, by seq
	out  []effect         // every effect so far
}

func newDriver(t *testing.T, processes int) *driver {
	d := &driver{t: t, now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), fail: map[uint64]error{}}
	cfg := testConfig(processes)
	d.c = newCore(cfg, DefaultRestartPolicy, time.Second, func() float64 { return 0.5 }, func() uint64 { d.seq++; return d.seq })
	return d
}

// do hands ev to the core, then the outcome of each spawn it asked for,
// and returns every effect of it all.
func (d *driver) do(ev event) []effect {
	var all []effect
	queue := []event{ev}
	for len(queue) > 0 {
		ev, queue = queue[0], queue[1:]
		for _, e := range d.c.Handle(ev, d.now) {
			all = append(all, e)
			if p, ok := e.(effProgress); ok {
				select {
				case p.to <- p.line:
				default:
				}
			}
			if r, ok := e.(effReply); ok {
				select {
				case r.to <- r.err:
				default:
					d.t.Fatalf("a second answer on one reply channel: %v", r.err)
				}
			}
			if s, ok := e.(effSpawn); ok {
				if err := d.fail[s.seq]; err != nil {
					queue = append(queue, evSpawnFailed{s.id, err})
				} else {
					queue = append(queue, evSpawned{id: s.id, pid: 100 + int(s.seq), socket: fmt.Sprintf("w%d.sock", s.seq), startedAt: d.now})
				}
			}
		}
	}
	d.out = append(d.out, all...)
	return all
}

func (d *driver) after(dt time.Duration) { d.now = d.now.Add(dt) }

// ids of the workers in state s, in start order.
func (d *driver) in(s WorkerState) []string {
	var ids []string
	for _, w := range d.c.workers {
		if w.state == s {
			ids = append(ids, w.id)
		}
	}
	return ids
}

func (d *driver) readyAll() {
	for _, id := range d.in(WorkerStarting) {
		d.do(evReady{id})
	}
}

// exit reaps worker id, which ended with err.
func (d *driver) exit(id string, err error) []effect {
	return d.do(evExited{id: id, err: err})
}

// stopped reaps every worker told to stop, as if each exited on SIGTERM.
func (d *driver) reapStopped() {
	for _, id := range d.in(WorkerStopping) {
		d.exit(id, &workerproc.ExitError{Code: 0})
	}
}

func (d *driver) drainAll() {
	for _, id := range d.in(WorkerDraining) {
		d.do(evDrained{id})
	}
	d.reapStopped()
}

func effectsOf[T effect](effs []effect) []T {
	var out []T
	for _, e := range effs {
		if x, ok := e.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

func notes(effs []effect) []string {
	var out []string
	for _, n := range effectsOf[effNote](effs) {
		out = append(out, n.line)
	}
	return out
}

// running is a driver whose app runs processes ready workers.
func running(t *testing.T, processes int) *driver {
	d := newDriver(t, processes)
	d.do(evStart{})
	d.readyAll()
	if s := d.c.state(); s != AppRunning {
		t.Fatalf("state %s, want running", s)
	}
	return d
}

func TestCoreState(t *testing.T) {
	ready := &worker{state: WorkerReady}
	starting := &worker{state: WorkerStarting}
	cases := []struct {
		name  string
		c     core
		state AppState
		route proxymsg.AppState
	}{
		{"not run yet", core{}, AppStopped, proxymsg.AppStarting},
		{"starting", core{begun: true, workers: []*worker{starting}}, AppStarting, proxymsg.AppStarting},
		{"running", core{begun: true, workers: []*worker{starting, ready}}, AppRunning, proxymsg.AppRunning},
		{"stopping wins", core{begun: true, stopping: true, failing: true, workers: []*worker{ready}}, AppStopped, proxymsg.AppStopped},
		{"ownerStopped", core{begun: true, ownerStopped: true}, AppStopped, proxymsg.AppStopped},
		{"ownerStopped, reloading", core{begun: true, ownerStopped: true, reload: &reloadOp{}, workers: []*worker{starting}}, AppReloading, proxymsg.AppStarting},
		{"idle", core{begun: true, idle: true}, AppIdle, proxymsg.AppIdle},
		{"failing beats reloading", core{begun: true, failing: true, reload: &reloadOp{}, workers: []*worker{ready}}, AppFailing, proxymsg.AppFailing},
		{"reloading", core{begun: true, reload: &reloadOp{}, workers: []*worker{ready}}, AppReloading, proxymsg.AppRunning},
		{"no worker, restart held", core{begun: true, restartHeld: true}, AppStarting, proxymsg.AppStarting},
		{"no worker at all", core{begun: true}, AppStarting, proxymsg.AppRunning},
		{"only draining", core{begun: true, workers: []*worker{{state: WorkerDraining}}}, AppStarting, proxymsg.AppRunning},
	}
	for _, tc := range cases {
		if s := tc.c.state(); s != tc.state {
			t.Errorf("%s: state %s, want %s", tc.name, s, tc.state)
		}
		if r := tc.c.route().State; r != tc.route {
			t.Errorf("%s: route %s, want %s", tc.name, r, tc.route)
		}
	}
}

func TestCoreRouteCarriesWorkers(t *testing.T) {
	d := running(t, 2)
	ids := d.in(WorkerReady)
	d.do(evRecycle{ids[0], RecycleReason{RecycleTimeout, "request over 30s"}, false})
	r := d.c.route()
	if len(r.Workers) != 2 || !r.Workers[0].Draining || r.Workers[1].Draining {
		t.Fatalf("route workers %+v: want the recycled one draining, the other not, the new one absent", r.Workers)
	}
	if w := r.Workers[1]; w.PID == 0 || w.Socket == "" || w.Threads != 4 || w.ID != ids[1] {
		t.Errorf("route worker %+v", w)
	}
}

// An illegal move is an error the tests see.
func TestCoreIllegalMovePanicsUnderTest(t *testing.T) {
	d := running(t, 1)
	w := d.c.workers[0]
	defer func() {
		if r := recover(); r == nil || !errors.Is(r.(error), ErrIllegalMove) {
			t.Errorf("recovered %v, want an illegal move", r)
		}
	}()
	d.c.move(w, WorkerStarting)
}

func TestCoreIllegalMoveIsLoggedOtherwise(t *testing.T) {
	panicOnIllegal = false
	defer func() { panicOnIllegal = true }()
	d := running(t, 1)
	w := d.c.workers[0]
	d.c.out = nil
	if d.c.move(w, WorkerStarting) || w.state != WorkerReady {
		t.Fatalf("illegal move made")
	}
	if logs := effectsOf[effLog](d.c.out); len(logs) != 1 || logs[0].msg != "refused state change" {
		t.Errorf("logs %+v", logs)
	}
}

// Every way a worker ends, and what the app and its owner are told.
func TestCoreExitReasons(t *testing.T) {
	importErr := &workerproc.ImportError{Message: "ImportError: x", Traceback: "Traceback...\nImportError: x\n"}
	cases := []struct {
		name    string
		ready   bool
		prepare func(d *driver, w *worker)
		err     error
		imp     *workerproc.ImportError
		lastErr string
		note    string
		started string // WaitStarted's error, "" for none sent by this exit
	}{
		{"crash after ready", true, nil, &workerproc.ExitError{Code: 3}, nil, "worker exited with status 3", "died: exited with status 3; restarting in 0s", ""},
		{"crash before ready", false, nil, &workerproc.ExitError{Code: 3}, nil, "worker exited with status 3 before it was ready", "died: exited with status 3", "worker exited before it was ready: exited with status 3"},
		{"import error", false, nil, &workerproc.ExitError{Code: 1}, importErr, importErr.Traceback, "died: app import failed: ImportError: x", "app import failed: ImportError: x"},
		{"startup timeout", false, func(d *driver, w *worker) {
			d.after(30 * time.Second)
			if effs := d.do(evStartupTimeout{w.id}); len(effectsOf[effKill](effs)) != 1 {
				t.Errorf("startup timeout: no kill")
			}
		}, &workerproc.ExitError{Signal: 9}, nil, "worker did not become ready within startup_timeout 30s", "died: did not become ready within startup_timeout 30s", "worker exited before it was ready: did not become ready within startup_timeout 30s"},
		{"over the ceiling", true, func(d *driver, w *worker) {
			d.do(evMemory{rss: map[string]int64{w.id: 1 << 40}})
		}, &workerproc.ExitError{Signal: 9}, nil, "worker killed: rss 1024.0GiB passed the hard memory ceiling", "", ""},
		{"no status", true, nil, nil, nil, "worker exited", "died: exited;", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t, 1)
			d.c.cfg.MemoryLimit = 100 << 20
			d.do(evStart{})
			w := d.c.workers[0]
			if tc.ready {
				d.do(evReady{w.id})
			}
			if tc.prepare != nil {
				tc.prepare(d, w)
			}
			effs := d.do(evExited{id: w.id, err: tc.err, importErr: tc.imp})
			if !strings.HasPrefix(d.c.lastErr, tc.lastErr) {
				t.Errorf("last error %q, want %q", d.c.lastErr, tc.lastErr)
			}
			if tc.note != "" && !slices.ContainsFunc(notes(effs), func(n string) bool { return strings.Contains(n, tc.note) }) {
				t.Errorf("notes %q lack %q", notes(effs), tc.note)
			}
			st := effectsOf[effStarted](d.out)
			switch {
			case tc.started == "" && tc.ready && (len(st) != 1 || st[0].err != nil):
				t.Errorf("started %+v, want once, nil", st)
			case tc.started != "" && (len(st) != 1 || st[0].err == nil || st[0].err.Error() != tc.started):
				t.Errorf("started %+v, want %q", st, tc.started)
			}
			if n := len(d.in(WorkerStarting)); n != 1 {
				t.Errorf("%d replacements, want 1", n)
			}
		})
	}
}

func TestCoreRestartBackoffAndStaleTimers(t *testing.T) {
	d := running(t, 1)
	d.exit(d.in(WorkerReady)[0], &workerproc.ExitError{Code: 1})
	w := d.in(WorkerStarting)
	if len(w) != 1 {
		t.Fatalf("first death: %d replacements, want 1 at once", len(w))
	}
	effs := d.exit(w[0], &workerproc.ExitError{Code: 1})
	timers := effectsOf[effTimer](effs)
	if len(timers) != 1 || len(d.c.workers) != 0 || !d.c.restartHeld {
		t.Fatalf("second death: timers %+v, %d workers; want a held restart", timers, len(d.c.workers))
	}
	due := timers[0].ev.(evRestartDue)
	if timers[0].after != 250*time.Millisecond {
		t.Errorf("backoff %v, want 250ms (jitter at its middle)", timers[0].after)
	}
	if r := d.c.route().State; r != proxymsg.AppStarting {
		t.Errorf("route %s while the restart is held, want starting", r)
	}
	// Start forgets the held restart: its timer, when it fires, is stale.
	d.c.failing = true
	reply := make(chan error, 1)
	d.do(evOwnerStart{reply})
	if n := len(d.in(WorkerStarting)); n != 1 || d.c.restartHeld {
		t.Fatalf("resume: %d starting, held %v", n, d.c.restartHeld)
	}
	d.exit(d.in(WorkerStarting)[0], &workerproc.ExitError{Code: 1})
	if effs := d.do(due); len(effectsOf[effSpawn](effs)) != 0 {
		t.Errorf("a stale restart timer started a worker")
	}
	if err := <-reply; err == nil {
		t.Errorf("Start's worker died before it was ready, but Start got nil")
	}
}

func TestCoreStaleWorkerTimers(t *testing.T) {
	d := running(t, 1)
	id := d.in(WorkerReady)[0]
	// The startup timeout of a worker that got ready is nothing.
	if effs := d.do(evStartupTimeout{id}); len(effs) != 0 {
		t.Errorf("startup timeout of a ready worker: %+v", effs)
	}
	d.do(evRecycle{id, RecycleReason{RecycleManual, "pyctl restart"}, false})
	d.readyAll()
	d.do(evDrained{id})
	// The drain timeout of a worker that was stopped is nothing.
	if effs := d.do(evDrainTimeout{id}); len(effs) != 0 {
		t.Errorf("drain timeout of a stopped worker: %+v", effs)
	}
	if effs := d.do(evReady{"blog-999"}); len(effs) != 0 {
		t.Errorf("an unknown worker's event: %+v", effs)
	}
}

func TestCoreDrainTimeoutKills(t *testing.T) {
	d := running(t, 1)
	id := d.in(WorkerReady)[0]
	d.do(evRecycle{id, RecycleReason{RecycleTimeout, "request over 30s"}, true})
	if dumps := effectsOf[effDump](d.out); len(dumps) != 1 || dumps[0].id != id {
		t.Errorf("dumps %+v", dumps)
	}
	d.after(10 * time.Second)
	effs := d.do(evDrainTimeout{id})
	if stops := effectsOf[effStop](effs); len(stops) != 1 || stops[0].grace != 0 {
		t.Errorf("stops %+v, want one with no grace", stops)
	}
}

// A drained worker's SIGTERM grace is what is left of graceful_timeout
// since it left the rotation, but at least a second.
func TestCoreStopGrace(t *testing.T) {
	for _, tc := range []struct {
		after, want time.Duration
	}{{0, 10 * time.Second}, {4 * time.Second, 6 * time.Second}, {9900 * time.Millisecond, time.Second}, {time.Minute, time.Second}} {
		d := running(t, 1)
		id := d.in(WorkerReady)[0]
		d.do(evRecycle{id, RecycleReason{RecycleTimeout, "x"}, false})
		d.after(tc.after)
		stops := effectsOf[effStop](d.do(evDrained{id}))
		if len(stops) != 1 || stops[0].grace != tc.want {
			t.Errorf("drained %v after it left: stops %+v, want grace %v", tc.after, stops, tc.want)
		}
	}
}

func TestCoreSpawnFailure(t *testing.T) {
	d := newDriver(t, 2)
	d.fail[2] = errors.New("create worker socket: no space left")
	d.fail[3] = errors.New("create worker socket: no space left")
	effs := d.do(evStart{})
	// Worker 1 starts; 2 fails, is retried at once (first death), fails
	// again: the rest waits for the backoff.
	if n := len(effectsOf[effSpawn](effs)); n != 3 {
		t.Errorf("%d spawns, want 3", n)
	}
	if len(d.c.workers) != 1 || !d.c.restartHeld || !strings.Contains(d.c.lastErr, "no space") {
		t.Fatalf("%d workers, held %v, last error %q", len(d.c.workers), d.c.restartHeld, d.c.lastErr)
	}
	if st := effectsOf[effStarted](effs); len(st) != 1 || st[0].err == nil {
		t.Errorf("started %+v, want the failure", st)
	}
	timers := effectsOf[effTimer](effs)
	d.do(timers[len(timers)-1].ev)
	if len(d.c.workers) != 2 {
		t.Errorf("%d workers after the backoff, want 2", len(d.c.workers))
	}
}

func TestCoreStoppedWhileSpawning(t *testing.T) {
	d := running(t, 1)
	w := d.c.spawn(d.c.cfg, d.c.gen) // the App has not answered yet
	d.c.out = nil
	d.c.stopWorker(w, 3*time.Second)
	if len(d.c.out) != 0 {
		t.Fatalf("a stop went out before the worker ran: %+v", d.c.out)
	}
	effs := d.do(evSpawned{id: w.id, pid: 7, socket: "w.sock", startedAt: d.now})
	if stops := effectsOf[effStop](effs); len(stops) != 1 || stops[0].grace != 3*time.Second {
		t.Errorf("after it ran: stops %+v", stops)
	}
}

func TestCoreShutdown(t *testing.T) {
	d := running(t, 2)
	done := make(chan error, 1)
	d.do(evReload{&reloadOp{cfg: testConfig(2), progress: make(chan string, 64), done: done}})
	effs := d.do(evShutdown{})
	if err := <-done; !errors.Is(err, ErrStopped) {
		t.Errorf("the reload under way got %v, want ErrStopped", err)
	}
	if stops := effectsOf[effStop](effs); len(stops) != 3 {
		t.Errorf("stops %+v, want all 3 workers", stops)
	}
	if d.c.finished() {
		t.Fatal("finished with workers left")
	}
	d.reapStopped()
	if !d.c.finished() || len(effectsOf[effCloseForkServers](d.out)) != 1 {
		t.Errorf("finished %v, fork servers closed %d times", d.c.finished(), len(effectsOf[effCloseForkServers](d.out)))
	}
	// Nothing starts any more.
	for _, ev := range []event{evWake{}, evRestartDue{d.c.restartSeq}} {
		if effs := d.do(ev); len(effectsOf[effSpawn](effs)) != 0 {
			t.Errorf("%T started a worker after shutdown", ev)
		}
	}
	reply := make(chan error, 1)
	d.do(evReload{&reloadOp{cfg: testConfig(2), progress: make(chan string, 1), done: reply}})
	if err := <-reply; !errors.Is(err, ErrStopped) {
		t.Errorf("reload after shutdown: %v", err)
	}
}

func TestCoreShutdownWithNoWorker(t *testing.T) {
	d := newDriver(t, 1)
	d.fail[1], d.fail[2] = errors.New("no"), errors.New("no")
	d.do(evStart{})
	d.do(evShutdown{})
	if !d.c.finished() || d.c.restartHeld {
		t.Errorf("finished %v, restart held %v", d.c.finished(), d.c.restartHeld)
	}
}

// A random walk through events: whatever arrives in whatever order, no
// state move is illegal (panicOnIllegal), no effect names a worker the
// core does not know, and the serving generation never has more than
// processes workers starting or ready.
func TestCoreRandomWalk(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	for walk := range 500 {
		d := newDriver(t, 1+rng.IntN(3))
		for range 3 {
			d.fail[uint64(1+rng.IntN(40))] = errors.New("cannot start")
		}
		d.c.cfg.MaxRequests = 50
		d.c.cfg.MemoryLimit = 100 << 20
		d.c.cfg.IdleTimeout = time.Minute
		d.do(evStart{})
		var trail []string
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("walk %d: %v after %s", walk, r, strings.Join(trail, ", "))
			}
		}()
		for range 80 {
			ev := randomEvent(rng, d)
			trail = append(trail, fmt.Sprintf("%T%+v", ev, ev))
			d.after(time.Duration(rng.IntN(20)) * time.Second)
			for _, e := range d.do(ev) {
				checkEffect(t, d, e)
			}
			if n := d.c.liveCount(d.c.gen); n > d.c.cfg.Processes {
				t.Fatalf("walk %d: %d live workers of %d after %s", walk, n, d.c.cfg.Processes, strings.Join(trail, ", "))
			}
		}
	}
}

func checkEffect(t *testing.T, d *driver, e effect) {
	t.Helper()
	var id string
	switch e := e.(type) {
	case effStop:
		id = e.id
	case effKill:
		id = e.id
	case effDump:
		id = e.id
	default:
		return
	}
	if d.c.find(id) == nil {
		t.Fatalf("%T for unknown worker %s", e, id)
	}
}

func randomEvent(rng *rand.Rand, d *driver) event {
	var id string
	if ws := d.c.workers; len(ws) > 0 {
		id = ws[rng.IntN(len(ws))].id
	}
	reply := make(chan error, 1)
	switch rng.IntN(16) {
	case 0, 1:
		return evReady{id}
	case 2:
		return evExited{id: id, err: &workerproc.ExitError{Code: rng.IntN(2)}}
	case 3:
		return evExited{id: id, err: fmt.Errorf("%w died", workerproc.ErrForkServer)}
	case 4:
		return evDrained{id}
	case 5:
		return evDrainTimeout{id}
	case 6:
		return evStartupTimeout{id}
	case 7:
		return evRestartDue{d.c.restartSeq}
	case 8:
		served := map[string]counters{}
		for _, w := range d.c.workers {
			served[w.id] = counters{Requests: uint64(rng.IntN(60))}
		}
		return evTick{served}
	case 9:
		return evMemory{map[string]int64{id: int64(rng.IntN(200)) << 20}}
	case 10:
		return evBudgetSpent{id}
	case 11:
		return evRecycle{id, RecycleReason{RecycleTimeout, "x"}, rng.IntN(2) == 0}
	case 12:
		return evWake{}
	case 13:
		return evOwnerStop{reply}
	case 14:
		return evOwnerStart{reply}
	default:
		return evReload{&reloadOp{cfg: d.c.cfg, progress: make(chan string, 64), done: reply}}
	}
}

// A worker that is still starting has no request to finish: a stop gives
// it startingGrace, not graceful_timeout (serve of an app whose first
// warm-up failed waited 15 s for a starting worker before it exited).
func TestCoreStopStartingWorker(t *testing.T) {
	d := newDriver(t, 2)
	d.c.cfg.GracefulTimeout = 15 * time.Second
	d.do(evStart{})
	d.readyAll()
	d.do(evRecycle{id: genIDs(d, d.c.gen)[0], reason: RecycleReason{RecycleMemory, "test"}})
	mark := len(d.out)
	d.do(evShutdown{})
	graces := map[time.Duration]int{}
	for _, s := range effectsOf[effStop](d.out[mark:]) {
		graces[s.grace]++
	}
	// Two ready workers (one of them recycled, still serving until its
	// replacement is ready) get graceful_timeout; the starting
	// replacement gets startingGrace.
	if graces[15*time.Second] != 2 || graces[startingGrace] != 1 {
		t.Errorf("stop graces %v, want 2 x 15s and 1 x %v", graces, startingGrace)
	}
}

// The route carries what the front alone acts on, from the settings the
// app runs with (https_only, hsts).
func TestCoreRouteHTTPS(t *testing.T) {
	d := newDriver(t, 1)
	d.c.cfg.HTTPSOnly, d.c.cfg.HSTS = true, "max-age=60"
	if r := d.c.route(); !r.HTTPSOnly || r.HSTS != "max-age=60" {
		t.Errorf("route %+v", r)
	}
}
