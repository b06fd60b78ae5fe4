package supervisor

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pyhost/pyhost/proxymsg"
	"github.com/pyhost/pyhost/workerproc"
)

// These tests run a whole App on fake processes inside a synctest bubble:
// time is fake (a 30 s timeout passes at once, when every goroutine is
// blocked) and synctest.Wait is the synchronization, never a sleep.

func TestAppStartsAndStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, testConfig(2), nil)
		if n := h.st.count(); n != 2 {
			t.Fatalf("%d workers started, want 2", n)
		}
		if s := h.state(); s != AppStarting {
			t.Errorf("state %s before any worker is ready, want starting", s)
		}
		if rs := h.routeState(); rs != proxymsg.AppStarting {
			t.Errorf("route %s, want starting (requests wait)", rs)
		}
		h.st.proc(t, 0).becomeReady()
		synctest.Wait()
		if err := h.app.WaitStarted(context.Background()); err != nil {
			t.Fatalf("WaitStarted: %v", err)
		}
		h.readyAll()
		if s := h.state(); s != AppRunning || h.serving() != 2 {
			t.Fatalf("state %s with %d serving, want running with 2", s, h.serving())
		}
		h.stop()
		for _, p := range h.st.procs {
			if !p.isGone() || len(p.stopped()) != 1 || p.stopped()[0] != 10*time.Second {
				t.Errorf("worker %d at shutdown: stops %v, want one with graceful_timeout", p.n, p.stopped())
			}
		}
		if rs := h.routeState(); rs != proxymsg.AppStopped {
			t.Errorf("route %s after Run returned, want stopped", rs)
		}
	})
}

func TestRollingReloadSucceeds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, testConfig(3), nil)
		h.readyAll()
		old := h.st.live()
		cfg := testConfig(3)
		cfg.Threads = 8
		var progress []string
		done := h.reload(cfg, &progress)
		// One new worker first; the old ones serve on.
		if n := h.st.count(); n != 4 {
			t.Fatalf("%d workers started, want the 3 old and 1 new", n)
		}
		if s := h.state(); s != AppReloading {
			t.Errorf("state %s, want reloading", s)
		}
		h.st.proc(t, 3).becomeReady()
		synctest.Wait()
		if n := h.st.count(); n != 6 {
			t.Fatalf("after the first new worker was ready: %d started, want 6", n)
		}
		// Not all new workers are ready: no old one leaves.
		h.st.proc(t, 4).becomeReady()
		synctest.Wait()
		for _, p := range old {
			if h.routed()[p.pid] {
				t.Errorf("old worker %d drained before every new one is ready", p.pid)
			}
		}
		if h.serving() < 3 {
			t.Errorf("capacity dropped to %d during the reload", h.serving())
		}
		h.st.proc(t, 5).becomeReady()
		synctest.Wait()
		for _, p := range old {
			if draining, ok := h.routed()[p.pid]; !ok || !draining {
				t.Errorf("old worker %d not draining once all new are ready (routed %v)", p.pid, h.routed())
			}
		}
		if _, ok := result(done); ok {
			t.Fatal("Reload returned before the old workers stopped")
		}
		h.drainAll()
		err, ok := result(done)
		if !ok || err != nil {
			t.Fatalf("Reload: %v (returned %v)", err, ok)
		}
		for _, p := range old {
			if !p.isGone() {
				t.Errorf("old worker %d still runs", p.pid)
			}
		}
		r := h.app.Route()
		if r.State != proxymsg.AppRunning || len(r.Workers) != 3 || r.Workers[0].Threads != 8 {
			t.Errorf("route after the reload: %+v", r)
		}
		if s := h.status(); s.State != AppRunning || s.Config.Threads != 8 {
			t.Errorf("status after the reload: %s, threads %d", s.State, s.Config.Threads)
		}
		want := []string{"starting new worker 1 of 3", "new worker 1 is ready; starting 2 more", "all 3 new workers are ready; draining the old ones", "old workers stopped"}
		if !slices.Equal(progress, want) {
			t.Errorf("progress %q, want %q", progress, want)
		}
	})
}

func TestReloadAbortedByImportError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, testConfig(2), nil)
		h.readyAll()
		var progress []string
		done := h.reload(testConfig(2), &progress)
		h.st.proc(t, 2).importFail()
		synctest.Wait()
		err, ok := result(done)
		var rerr *ReloadError
		if !ok || !errors.As(err, &rerr) {
			t.Fatalf("Reload: %v, want a ReloadError", err)
		}
		if !strings.Contains(rerr.Traceback, "ModuleNotFoundError") || !strings.Contains(rerr.Reason, "import failed") {
			t.Errorf("ReloadError %+v lacks the import error", rerr)
		}
		if h.st.count() != 3 {
			t.Errorf("%d workers started; the rest must not start after a failed first", h.st.count())
		}
		for i := range 2 {
			if p := h.st.proc(t, i); p.isGone() || len(p.stopped()) > 0 {
				t.Errorf("old worker %d touched by a failed reload", i)
			}
		}
		if s := h.status(); s.State != AppRunning || s.Restarts != 0 || !strings.Contains(s.LastError, "Traceback") {
			t.Errorf("after the abort: %s, restarts %d, last error %q", s.State, s.Restarts, s.LastError)
		}
		if h.serving() != 2 {
			t.Errorf("%d serving, want the 2 old", h.serving())
		}
	})
}

func TestReloadAbortedWhenANewWorkerDies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, testConfig(2), nil)
		h.readyAll()
		var progress []string
		done := h.reload(testConfig(2), &progress)
		h.st.proc(t, 2).becomeReady()
		synctest.Wait()
		// The first new worker dies while the second starts.
		h.st.proc(t, 2).crash(3)
		synctest.Wait()
		err, ok := result(done)
		var rerr *ReloadError
		if !ok || !errors.As(err, &rerr) || rerr.Reason != "exited with status 3" {
			t.Fatalf("Reload: %v, want aborted with the exit status", err)
		}
		if p := h.st.proc(t, 3); !p.isGone() || len(p.stopped()) != 1 || p.stopped()[0] != time.Second {
			t.Errorf("the other new worker: stops %v, want one with a second's grace", p.stopped())
		}
		for i := range 2 {
			if p := h.st.proc(t, i); p.isGone() {
				t.Errorf("old worker %d gone", i)
			}
		}
		if s := h.state(); s != AppRunning || h.serving() != 2 {
			t.Errorf("state %s, %d serving after the abort", s, h.serving())
		}
	})
}

func TestOldWorkerDyingDuringReloadIsReplaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, testConfig(2), nil)
		h.readyAll()
		var progress []string
		done := h.reload(testConfig(2), &progress)
		h.st.proc(t, 0).crash(1)
		synctest.Wait()
		// A crash of the serving generation is replaced at once, with its
		// configuration, while the reload goes on.
		if n := h.st.count(); n != 4 {
			t.Fatalf("%d started, want the old replacement too", n)
		}
		if s := h.status(); s.Restarts != 1 {
			t.Errorf("restarts %d, want 1", s.Restarts)
		}
		h.readyAll()
		h.readyAll()
		h.drainAll()
		if err, ok := result(done); !ok || err != nil {
			t.Fatalf("Reload: %v (returned %v)", err, ok)
		}
		if s := h.state(); s != AppRunning || h.serving() != 2 || len(h.st.live()) != 2 {
			t.Errorf("after the reload: %s, %d serving, %d live", s, h.serving(), len(h.st.live()))
		}
	})
}

func TestStopDuringReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, testConfig(1), nil)
		h.readyAll()
		var progress []string
		done := h.reload(testConfig(1), &progress)
		if err := h.app.Stop(context.Background()); !errors.Is(err, ErrReloadRunning) {
			t.Fatalf("Stop during a reload: %v, want ErrReloadRunning", err)
		}
		h.readyAll()
		h.drainAll()
		if err, ok := result(done); !ok || err != nil {
			t.Fatalf("Reload: %v", err)
		}
		ownerStopped := make(chan error, 1)
		go func() { ownerStopped <- h.app.Stop(context.Background()) }()
		synctest.Wait()
		if _, ok := result(ownerStopped); ok {
			t.Fatal("Stop returned while a worker drains")
		}
		h.drainAll()
		if err, ok := result(ownerStopped); !ok || err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if s := h.state(); s != AppStopped || len(h.st.live()) != 0 || h.routeState() != proxymsg.AppStopped {
			t.Fatalf("after Stop: %s, %d live, route %s", s, len(h.st.live()), h.routeState())
		}
		resumed := make(chan error, 1)
		go func() { resumed <- h.app.Start(context.Background()) }()
		synctest.Wait()
		if s := h.state(); s != AppStarting {
			t.Errorf("state %s after Start, want starting", s)
		}
		h.readyAll()
		if err, ok := result(resumed); !ok || err != nil {
			t.Fatalf("Start: %v", err)
		}
		if s := h.state(); s != AppRunning {
			t.Errorf("state %s, want running", s)
		}
	})
}

func TestReloadStartsAStoppedApp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, testConfig(1), nil)
		h.readyAll()
		if err := halt(h); err != nil {
			t.Fatal(err)
		}
		var progress []string
		done := h.reload(testConfig(1), &progress)
		if s := h.state(); s != AppReloading {
			t.Errorf("state %s, want reloading", s)
		}
		h.readyAll()
		if err, ok := result(done); !ok || err != nil {
			t.Fatalf("Reload: %v", err)
		}
		if s := h.state(); s != AppRunning {
			t.Errorf("state %s, want running", s)
		}
		// A failed reload of a stopped app leaves it stopped.
		if err := halt(h); err != nil {
			t.Fatal(err)
		}
		done = h.reload(testConfig(1), &progress)
		h.st.live()[0].importFail()
		synctest.Wait()
		if err, _ := result(done); err == nil {
			t.Fatal("Reload succeeded with a failing import")
		}
		if s := h.state(); s != AppStopped {
			t.Errorf("state %s, want stopped again", s)
		}
	})
}

// halt runs Stop, playing the proxy's drained reports meanwhile.
func halt(h *harness) error {
	ownerStopped := make(chan error, 1)
	go func() { ownerStopped <- h.app.Stop(context.Background()) }()
	synctest.Wait()
	h.drainAll()
	err, ok := result(ownerStopped)
	if !ok {
		return errors.New("Stop did not return")
	}
	return err
}

func TestIdleStopAndWake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(2)
		cfg.IdleTimeout = time.Minute
		h := start(t, cfg, func(o *Options) { o.ForkServer = true })
		// No boot storm (D8): it starts idle, with no process at all,
		// and counts as started.
		if s := h.state(); s != AppIdle || h.routeState() != proxymsg.AppIdle {
			t.Fatalf("state %s, route %s at start, want idle", s, h.routeState())
		}
		if h.st.count() != 0 || len(h.st.servers) != 0 {
			t.Fatalf("%d workers and %d fork servers at start, want none", h.st.count(), len(h.st.servers))
		}
		if err := h.app.WaitStarted(context.Background()); err != nil {
			t.Fatalf("WaitStarted: %v, want nil for an app that starts idle", err)
		}
		// Its first request wakes it; the fork server starts then.
		h.app.Wake()
		synctest.Wait()
		h.readyAll()
		if len(h.st.servers) != 1 {
			t.Fatalf("%d fork servers after the first wake, want 1", len(h.st.servers))
		}
		a, b := h.st.proc(t, 0), h.st.proc(t, 1)
		h.served.set(h.id(a), 10, 0)
		time.Sleep(50 * time.Second)
		synctest.Wait()
		h.served.set(h.id(b), 3, 0) // a request: the minute starts again
		time.Sleep(50 * time.Second)
		synctest.Wait()
		if s := h.state(); s != AppRunning {
			t.Fatalf("state %s 50 s after the last request, want running", s)
		}
		time.Sleep(15 * time.Second)
		synctest.Wait()
		if s := h.state(); s != AppIdle || h.routeState() != proxymsg.AppIdle {
			t.Fatalf("state %s, route %s after a minute without requests, want idle", s, h.routeState())
		}
		h.drainAll()
		if len(h.st.live()) != 0 {
			t.Fatalf("%d workers left in an idle app", len(h.st.live()))
		}
		if fs := h.st.servers[0]; !fs.closed {
			t.Error("the fork server outlived the idle app's last worker")
		}
		// Many first requests at once wake it: one start, not one per
		// request.
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(h.app.Wake)
		}
		wg.Wait()
		synctest.Wait()
		if n := len(h.st.live()); n != 2 {
			t.Fatalf("%d workers after 8 concurrent wakes, want 2", n)
		}
		if s := h.state(); s != AppStarting || h.routeState() != proxymsg.AppStarting {
			t.Errorf("state %s, route %s after the wake, want starting", s, h.routeState())
		}
		h.readyAll()
		if s := h.state(); s != AppRunning {
			t.Errorf("state %s, want running", s)
		}
		if len(h.st.servers) != 2 {
			t.Errorf("%d fork servers, want a new one for the woken app", len(h.st.servers))
		}
	})
}

func TestForkServerDeathIsOneCrash(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, testConfig(3), func(o *Options) { o.ForkServer = true })
		h.readyAll()
		if len(h.st.servers) != 1 || len(h.st.servers[0].kids) != 3 {
			t.Fatalf("want 3 workers forked from one server")
		}
		h.st.servers[0].die()
		synctest.Wait()
		s := h.status()
		if s.Restarts != 1 {
			t.Errorf("restarts %d, want 1 for one server's death", s.Restarts)
		}
		if n := len(h.st.live()); n != 3 {
			t.Errorf("%d workers after the server died, want 3 replacements at once", n)
		}
		if len(h.st.servers) != 2 {
			t.Errorf("%d servers, want a new one", len(h.st.servers))
		}
		for _, p := range h.st.live() {
			if p.via != h.st.servers[1] {
				t.Errorf("replacement %d not forked from the new server", p.pid)
			}
		}
		h.readyAll()
		if st := h.state(); st != AppRunning {
			t.Errorf("state %s, want running", st)
		}
	})
}

func TestForkServerFailureFallsBackToDirectStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &fakeStarter{}
		st.fail = func(_ workerproc.Spec, via ForkServer) error {
			if via != nil {
				return workerproc.ErrForkServer
			}
			return nil
		}
		h := start(t, testConfig(2), func(o *Options) { o.ForkServer = true; o.Starter = st })
		h.st = st
		if n := st.count(); n != 2 || st.procs[0].via != nil || st.procs[1].via != nil {
			t.Fatalf("want 2 workers started directly, got %d", n)
		}
		if len(st.servers) != 1 {
			t.Errorf("%d servers tried, want 1 and a minute's pause", len(st.servers))
		}
	})
}

func TestMaxRequestsRecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(2)
		cfg.MaxRequests = 100
		h := start(t, cfg, nil)
		h.readyAll()
		a, b := h.st.proc(t, 0), h.st.proc(t, 1)
		// The proxy's report: a replacement starts, a serves on meanwhile.
		h.app.BudgetSpent(h.id(a))
		synctest.Wait()
		if n := h.st.count(); n != 3 {
			t.Fatalf("%d started, want a replacement", n)
		}
		if draining, ok := h.routed()[a.pid]; !ok || draining {
			t.Errorf("spent worker left the rotation before its replacement is ready")
		}
		h.st.proc(t, 2).becomeReady()
		synctest.Wait()
		if !h.routed()[a.pid] {
			t.Errorf("spent worker not draining once its replacement is ready")
		}
		h.drainAll()
		if !a.isGone() {
			t.Errorf("spent worker still runs")
		}
		// The polled counters are the backstop for a lost report.
		h.served.set(h.id(b), 1000, 0)
		time.Sleep(time.Second)
		synctest.Wait()
		if n := h.st.count(); n != 4 {
			t.Fatalf("%d started, want b's replacement from the polled counters", n)
		}
		if s := h.status(); s.Restarts != 0 {
			t.Errorf("restarts %d: a recycle is no crash", s.Restarts)
		}
	})
}

func TestMemoryRecycleAndCeiling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(2)
		cfg.MemoryLimit = 100 << 20
		h := start(t, cfg, nil)
		h.readyAll()
		a, b := h.st.proc(t, 0), h.st.proc(t, 1)
		a.setRSS(120 << 20)
		b.setRSS(20 << 20)
		time.Sleep(time.Second)
		synctest.Wait()
		// Over the limit: out of the rotation at once, replaced.
		if !h.routed()[a.pid] {
			t.Errorf("worker over memory_limit still takes requests")
		}
		if n := h.st.count(); n != 3 {
			t.Fatalf("%d started, want a's replacement", n)
		}
		h.drainAll()
		h.readyAll()
		// Over the ceiling: killed, not waited for, counted as recycled.
		b.setRSS(160 << 20)
		time.Sleep(time.Second)
		synctest.Wait()
		if b.killed() != 1 || !b.isGone() {
			t.Errorf("worker over the hard ceiling not killed")
		}
		if n := h.st.count(); n != 4 {
			t.Errorf("%d started, want b's replacement", n)
		}
		if s := h.status(); s.Restarts != 0 || !strings.Contains(s.LastError, "hard memory ceiling") {
			t.Errorf("restarts %d, last error %q", s.Restarts, s.LastError)
		}
	})
}

// The backoff's timer runs on Options.Clock: an hour of the bubble's own
// time restarts nothing, the injected clock's 400 ms does.
func TestRestartBackoffOnTheInjectedClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := newFakeClock()
		h := start(t, testConfig(1), func(o *Options) {
			o.Clock = clock
			o.Starter.(*fakeStarter).now = clock.Now
		})
		h.readyAll()
		h.st.proc(t, 0).crash(1)
		synctest.Wait()
		if n := h.st.count(); n != 2 {
			t.Fatalf("%d started: the first death is replaced at once", n)
		}
		h.st.proc(t, 1).crash(1)
		synctest.Wait()
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := h.st.count(); n != 2 {
			t.Fatalf("%d started before the backoff passed on the app's clock", n)
		}
		if rs := h.routeState(); rs != proxymsg.AppStarting {
			t.Errorf("route %s while a restart is held back, want starting", rs)
		}
		clock.advance(400 * time.Millisecond)
		synctest.Wait()
		if n := h.st.count(); n != 3 {
			t.Fatalf("%d started after the backoff, want 3", n)
		}
		// Five deaths within a minute: failing, until a worker is ready.
		for i := 2; i < 5; i++ {
			h.st.proc(t, i).crash(1)
			synctest.Wait()
			clock.advance(5 * time.Second)
			synctest.Wait()
		}
		if s := h.status(); s.State != AppFailing || h.routeState() != proxymsg.AppFailing || s.Restarts != 5 {
			t.Fatalf("after 5 deaths: %s, route %s, restarts %d", s.State, h.routeState(), s.Restarts)
		}
		h.readyAll()
		if s := h.status(); s.State != AppRunning || s.LastError != "" {
			t.Errorf("after a ready worker: %s, last error %q", s.State, s.LastError)
		}
	})
}

func TestTimeoutRecycleDumpsStacks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var lines []string
		h := start(t, testConfig(2), func(o *Options) {
			o.Output = func(app string, pid int, line string) {
				mu.Lock()
				lines = append(lines, line)
				mu.Unlock()
			}
		})
		h.readyAll()
		a := h.st.proc(t, 0)
		for range 2 {
			h.app.RecycleWorker(h.id(a), RecycleReason{RecycleTimeout, "request over request_timeout 30s"}, true)
		}
		synctest.Wait()
		a.mu.Lock()
		dumps := a.dumps
		a.mu.Unlock()
		if dumps != 1 {
			t.Errorf("stacks dumped %d times, want once", dumps)
		}
		if !h.routed()[a.pid] || h.st.count() != 3 {
			t.Errorf("the stuck worker is not out of rotation with a replacement on its way")
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Contains(lines, "pyhost: request over request_timeout 30s; stacks of every thread follow") {
			t.Errorf("app log %q lacks the dump's heading", lines)
		}
	})
}
