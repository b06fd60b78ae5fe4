package supervisor

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/proxymsg"
	"github.com/pyhost/pyhost/workerproc"
)

// fakeProc is a worker with no process: the test decides when it is
// ready and how it ends. Stop ends it at once (a worker idle on SIGTERM)
// unless holdTerm, when it ends only with the SIGKILL after grace.
type fakeProc struct {
	n       int // its place in the starter's order, from 0
	pid     int
	spec    workerproc.Spec
	via     *fakeServer
	started time.Time
	ready   chan struct{}
	exited  chan struct{}

	mu        sync.Mutex
	exitErr   error
	importErr *workerproc.ImportError
	rss       int64
	holdTerm  bool
	stops     []time.Duration // the grace of each Stop
	kills     int
	dumps     int
	readyOnce sync.Once
	exitOnce  sync.Once
}

func (p *fakeProc) PID() int                { return p.pid }
func (p *fakeProc) Socket() string          { return p.spec.Socket }
func (p *fakeProc) StartedAt() time.Time    { return p.started }
func (p *fakeProc) Ready() <-chan struct{}  { return p.ready }
func (p *fakeProc) Exited() <-chan struct{} { return p.exited }
func (p *fakeProc) Stats() (workerproc.Stats, error) {
	return workerproc.Stats{RSS: uint64(p.RSS0())}, nil
}
func (p *fakeProc) ImportErr() *workerproc.ImportError {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.importErr
}

func (p *fakeProc) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

func (p *fakeProc) RSS0() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rss
}

func (p *fakeProc) RSS() (int64, error) {
	select {
	case <-p.exited:
		return 0, fmt.Errorf("process %d has exited", p.pid)
	default:
	}
	return p.RSS0(), nil
}

func (p *fakeProc) setRSS(n int64) {
	p.mu.Lock()
	p.rss = n
	p.mu.Unlock()
}

func (p *fakeProc) becomeReady() { p.readyOnce.Do(func() { close(p.ready) }) }

// exit ends the worker with err (first call wins).
func (p *fakeProc) exit(err error) {
	p.exitOnce.Do(func() {
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(p.exited)
	})
}

func (p *fakeProc) crash(code int) { p.exit(&workerproc.ExitError{Code: code}) }

func (p *fakeProc) importFail() {
	p.mu.Lock()
	p.importErr = &workerproc.ImportError{Message: "ModuleNotFoundError: No module named 'nope'", Traceback: "Traceback...\nModuleNotFoundError: No module named 'nope'\n"}
	p.mu.Unlock()
	p.exit(&workerproc.ExitError{Code: 1})
}

func (p *fakeProc) Stop(grace time.Duration) {
	p.mu.Lock()
	p.stops = append(p.stops, grace)
	first, hold := len(p.stops) == 1, p.holdTerm
	p.mu.Unlock()
	if !first {
		return
	}
	if !hold {
		p.exit(&workerproc.ExitError{Code: 0})
		return
	}
	time.AfterFunc(grace, func() { p.exit(&workerproc.ExitError{Signal: syscall.SIGKILL}) })
}

func (p *fakeProc) Kill() {
	p.mu.Lock()
	p.kills++
	p.mu.Unlock()
	p.exit(&workerproc.ExitError{Signal: syscall.SIGKILL})
}

func (p *fakeProc) DumpStacks() {
	p.mu.Lock()
	p.dumps++
	p.mu.Unlock()
}

func (p *fakeProc) stopped() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Duration(nil), p.stops...)
}

func (p *fakeProc) killed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kills
}

func (p *fakeProc) isGone() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// fakeServer is a fork server with no process.
type fakeServer struct {
	pid    int
	st     *fakeStarter
	exited chan struct{}

	mu      sync.Mutex
	err     error
	retired bool
	closed  bool
	kids    []*fakeProc
}

func (s *fakeServer) PID() int                { return s.pid }
func (s *fakeServer) IsReady() bool           { return true }
func (s *fakeServer) Exited() <-chan struct{} { return s.exited }
func (s *fakeServer) Kill()                   { s.die() }

func (s *fakeServer) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if s.retired {
		return fmt.Errorf("%w retired", workerproc.ErrForkServer)
	}
	return nil
}

func (s *fakeServer) Retire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retired = true
}

func (s *fakeServer) Close(time.Duration) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.die()
}

// die ends the server, and every child of it with it (their parent-death
// signal), as workerproc reports it.
func (s *fakeServer) die() {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = fmt.Errorf("%w exited", workerproc.ErrForkServer)
	kids := s.kids
	s.mu.Unlock()
	close(s.exited)
	for _, k := range kids {
		k.exit(fmt.Errorf("%w died, and its workers were killed with it", workerproc.ErrForkServer))
	}
}

// fakeStarter starts fake processes and keeps them in order.
type fakeStarter struct {
	mu      sync.Mutex
	procs   []*fakeProc
	servers []*fakeServer
	nextPID int
	// fail, when set, decides whether a start fails.
	fail func(spec workerproc.Spec, via ForkServer) error
	// onStart, when set, is called with each new worker (make it ready at
	// once, say).
	onStart func(p *fakeProc)
	// now is the clock of StartedAt; nil: the bubble's.
	now func() time.Time
}

func (st *fakeStarter) StartWorker(spec workerproc.Spec, via ForkServer) (Proc, error) {
	st.mu.Lock()
	fail := st.fail
	st.mu.Unlock()
	if fail != nil {
		if err := fail(spec, via); err != nil {
			return nil, err
		}
	}
	st.mu.Lock()
	st.nextPID++
	now := time.Now()
	if st.now != nil {
		now = st.now()
	}
	p := &fakeProc{n: len(st.procs), pid: 1000 + st.nextPID, spec: spec, started: now, ready: make(chan struct{}), exited: make(chan struct{})}
	if via != nil {
		s := via.(*fakeServer)
		if err := s.Err(); err != nil {
			st.nextPID--
			st.mu.Unlock()
			return nil, err
		}
		p.via = s
		s.mu.Lock()
		s.kids = append(s.kids, p)
		s.mu.Unlock()
	}
	st.procs = append(st.procs, p)
	onStart := st.onStart
	st.mu.Unlock()
	if onStart != nil {
		onStart(p)
	}
	return p, nil
}

func (st *fakeStarter) StartForkServer(spec workerproc.ForkServerSpec) (ForkServer, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.nextPID++
	s := &fakeServer{pid: 1000 + st.nextPID, st: st, exited: make(chan struct{})}
	st.servers = append(st.servers, s)
	return s, nil
}

func (st *fakeStarter) proc(t *testing.T, i int) *fakeProc {
	t.Helper()
	st.mu.Lock()
	defer st.mu.Unlock()
	if i >= len(st.procs) {
		t.Fatalf("worker %d was never started (%d were)", i, len(st.procs))
	}
	return st.procs[i]
}

func (st *fakeStarter) count() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.procs)
}

// live is the workers started and not yet exited.
func (st *fakeStarter) live() []*fakeProc {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []*fakeProc
	for _, p := range st.procs {
		if !p.isGone() {
			out = append(out, p)
		}
	}
	return out
}

// testConfig is an app of n processes with round timeouts.
func testConfig(n int) config.App {
	return config.App{
		Name: "blog", Cred: privdrop.Credential{UID: 1000, GID: 1000, Username: "alice"},
		Module: "blog.wsgi", Directory: "/srv/blog", Python: "/usr/bin/python3",
		Processes: n, Threads: 4,
		StartupTimeout: 30 * time.Second, GracefulTimeout: 10 * time.Second,
		QueueTimeout: 30 * time.Second,
	}
}

// harness is an App run inside a synctest bubble on fake processes.
type harness struct {
	t      *testing.T
	app    *App
	st     *fakeStarter
	cancel context.CancelFunc
	served *servedTable
}

// servedTable plays the proxy's counters (Options.Served).
type servedTable struct {
	mu sync.Mutex
	m  map[string][2]uint64
}

func (s *servedTable) get(id string) (uint64, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m[id]
	return v[0], int(v[1])
}

func (s *servedTable) set(id string, served uint64, busy int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][2]uint64{}
	}
	s.m[id] = [2]uint64{served, uint64(busy)}
}

// start runs an app of cfg; call it inside synctest.Test. The app is
// stopped, and Run awaited, when the test ends.
func start(t *testing.T, cfg config.App, tweak func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, st: &fakeStarter{}, served: &servedTable{}}
	opts := Options{
		Starter:      h.st,
		Log:          hclog.NewNullLogger(),
		Restart:      DefaultRestartPolicy,
		SocketDir:    "/run/pyhost/workers",
		WorkerScript: "/run/pyhost/pyhost_worker.py",
		SocketUID:    -1, SocketGID: -1,
		Served: h.served.get,
	}
	if tweak != nil {
		tweak(&opts)
	}
	h.app = NewApp(cfg, opts)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go h.app.Run(ctx)
	t.Cleanup(func() {
		cancel()
		<-h.app.done
	})
	synctest.Wait()
	return h
}

// stop cancels Run and waits for it to return.
func (h *harness) stop() {
	h.cancel()
	<-h.app.done
}

func (h *harness) status() Status {
	h.t.Helper()
	s, err := h.app.Status(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func (h *harness) state() AppState { h.t.Helper(); return h.status().State }

// id is the supervisor's id of worker p.
func (h *harness) id(p *fakeProc) string {
	h.t.Helper()
	for _, w := range h.status().Workers {
		if w.Process == Proc(p) {
			return w.ID
		}
	}
	h.t.Fatalf("worker pid %d is not the app's", p.pid)
	return ""
}

// routed is the route's workers: pid → draining.
func (h *harness) routed() map[int]bool {
	out := map[int]bool{}
	for _, w := range h.app.Route().Workers {
		out[w.PID] = w.Draining
	}
	return out
}

// serving counts the route's workers that take new requests.
func (h *harness) serving() int {
	n := 0
	for _, w := range h.app.Route().Workers {
		if !w.Draining {
			n++
		}
	}
	return n
}

func (h *harness) routeState() proxymsg.AppState { return h.app.Route().State }

// readyAll makes every live worker ready.
func (h *harness) readyAll() {
	for _, p := range h.st.live() {
		p.becomeReady()
	}
	synctest.Wait()
}

// drainAll plays the proxy: every draining worker in the route is done.
func (h *harness) drainAll() {
	for _, w := range h.app.Route().Workers {
		if w.Draining {
			h.app.Drained(w.ID)
		}
	}
	synctest.Wait()
}

// reload runs Reload in the background; the result comes on the channel,
// the progress lines in *progress.
func (h *harness) reload(cfg config.App, progress *[]string) <-chan error {
	done := make(chan error, 1)
	var mu sync.Mutex
	go func() {
		done <- h.app.Reload(context.Background(), cfg, func(s string) {
			mu.Lock()
			*progress = append(*progress, s)
			mu.Unlock()
		})
	}()
	synctest.Wait()
	return done
}

// result is what c has, if anything yet.
func result(c <-chan error) (error, bool) {
	select {
	case err := <-c:
		return err, true
	default:
		return nil, false
	}
}

// fakeClock is a Clock that moves only when told: with it, even the
// bubble's own time passing fires nothing.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c    *fakeClock
	at   time.Time
	f    func()
	done bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}

// advance moves the clock by d and runs what fell due, each in its own
// goroutine, as time.AfterFunc does.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	for _, t := range c.timers {
		if !t.done && !t.at.After(c.now) {
			t.done = true
			due = append(due, t.f)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		go f()
	}
}
