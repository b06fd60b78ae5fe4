package supervisor

import (
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/workerproc"
)

// A reload of a crash-looping app (docs/design.md, "Restart policy")
// starts the fixed code at once, and the restart the backoff was holding
// back for the broken generation is forgotten: its timer neither starts
// a worker of the old code during the reload nor holds back the new
// generation's restarts after it. A reload that fails leaves the old
// generation's backoff as it was.

// loopPolicy is a crash loop's policy with no jitter: 250 ms, 500 ms, 1 s,
// 2 s, 2 s…; five deaths in a minute mark the app failing.
var loopPolicy = RestartPolicy{Max: 2 * time.Second, StableAfter: 10 * time.Second, FailAfter: 5, FailWindow: time.Minute}

// crashLooping starts an app of two processes on clock and crashes its
// workers as they come until it is failing, with a restart held back by
// the backoff (a 2 s timer) when it returns.
func crashLooping(t *testing.T, clock *fakeClock) *harness {
	h := start(t, testConfig(2), func(o *Options) {
		o.Clock = clock
		o.Restart = loopPolicy
		o.Starter.(*fakeStarter).now = clock.Now
	})
	h.readyAll()
	for round := 0; h.state() != AppFailing; round++ {
		if round == 10 {
			t.Fatalf("not failing after %d rounds of crashes", round)
		}
		clock.advance(2 * time.Second) // the held restart, if any, is due
		synctest.Wait()
		for _, p := range h.st.live() {
			p.crash(1)
			synctest.Wait()
		}
	}
	if live := h.st.live(); len(live) != 0 {
		t.Fatalf("%d workers live in the crash loop; want none (the restart held back)", len(live))
	}
	return h
}

// fixed is the app's configuration with its code fixed: a worker of it
// runs module blog.fixed.
func fixed() config.App {
	cfg := testConfig(2)
	cfg.Module = "blog.fixed"
	return cfg
}

func runsFixed(p *fakeProc) bool { return slices.Contains(p.spec.Args, "blog.fixed") }

func TestReloadOfACrashLoopForgetsItsBackoff(t *testing.T) {
	t.Run("the held restart's timer fires during the reload", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			clock := newFakeClock()
			h := crashLooping(t, clock)
			before := h.st.count()
			var progress []string
			done := h.reload(fixed(), &progress)
			if n := h.st.count(); n != before+1 || !runsFixed(h.st.proc(t, before)) {
				t.Fatalf("%d workers started by the reload; want 1 of the fixed code at once", n-before)
			}
			h.readyAll() // the first new worker: the second starts
			// The crash loop's backoff runs out while the reload is still
			// starting its second worker.
			clock.advance(2 * time.Second)
			synctest.Wait()
			h.readyAll()
			h.drainAll()
			if err, ok := result(done); !ok || err != nil {
				t.Fatalf("reload: %v (answered %v)", err, ok)
			}
			for i := before; i < h.st.count(); i++ {
				if p := h.st.proc(t, i); !runsFixed(p) {
					t.Errorf("worker %d of the broken code started after the reload began (args %q)", p.pid, p.spec.Args)
				}
			}
			if n := len(h.st.live()); n != 2 || h.state() != AppRunning {
				t.Errorf("%d live workers, state %s; want the 2 new ones, running", n, h.state())
			}
		})
	})
	t.Run("a new worker dies after the swap", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			clock := newFakeClock()
			h := crashLooping(t, clock)
			var progress []string
			done := h.reload(fixed(), &progress)
			h.readyAll()
			h.readyAll()
			if err, ok := result(done); !ok || err != nil {
				t.Fatalf("reload: %v (answered %v)", err, ok)
			}
			// The fixed code's first death in a row is replaced at once,
			// as any healthy app's: the old code's backoff is not its.
			n := h.st.count()
			h.st.live()[0].crash(1)
			synctest.Wait()
			if h.st.count() != n+1 {
				t.Fatalf("a new worker's death was not replaced at once (the crash loop's backoff held it back)")
			}
			if p := h.st.proc(t, n); !runsFixed(p) {
				t.Errorf("the replacement runs %q, not the fixed code", p.spec.Args)
			}
		})
	})
	t.Run("the reload fails", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			clock := newFakeClock()
			h := crashLooping(t, clock)
			before := h.st.count()
			var progress []string
			done := h.reload(fixed(), &progress)
			h.st.proc(t, before).importFail()
			synctest.Wait()
			var rerr *ReloadError
			if err, ok := result(done); !ok || !errors.As(err, &rerr) {
				t.Fatalf("reload: %v (answered %v), want a ReloadError", err, ok)
			}
			if s := h.state(); s != AppFailing {
				t.Errorf("state %s after the aborted reload, want failing still", s)
			}
			// The old generation's restart is held back as before: it
			// starts once the backoff has run out, not at once.
			if n := h.st.count(); n != before+1 {
				t.Fatalf("%d workers started at the abort, want none", n-before-1)
			}
			clock.advance(2 * time.Second)
			synctest.Wait()
			if n := h.st.count(); n != before+3 || runsFixed(h.st.proc(t, before+1)) || runsFixed(h.st.proc(t, before+2)) {
				t.Fatalf("after the backoff: %d workers started, want the 2 of the old code", n-before-1)
			}
		})
	})
}

// The same as the core decides it: an old worker that dies during the
// reload with its restart backed off arms no timer; the abort holds the
// restart back for what is left of its delay, and it starts the old code.
func TestCoreReloadDefersTheOldGenerationsBackoff(t *testing.T) {
	for _, firstSpawnFails := range []bool{false, true} {
		d := running(t, 2)
		old := d.in(WorkerReady)
		d.exit(old[0], &workerproc.ExitError{Code: 1}) // first in a row: replaced at once
		replacement := d.in(WorkerStarting)
		if len(replacement) != 1 {
			t.Fatalf("%d replacements, want 1", len(replacement))
		}
		done := make(chan error, 1)
		if firstSpawnFails {
			// The death comes first, then the reload: the restart was held
			// when it began.
			d.exit(replacement[0], &workerproc.ExitError{Code: 1})
			if !d.c.restartHeld {
				t.Fatal("no restart held after the second death in a row")
			}
			d.fail[d.seq+1] = errors.New("cannot start")
			d.after(100 * time.Millisecond)
			d.do(evReload{newOp(d, done)})
		} else {
			d.do(evReload{newOp(d, done)})
			effs := d.exit(replacement[0], &workerproc.ExitError{Code: 1})
			for _, tm := range effectsOf[effTimer](effs) {
				if _, ok := tm.ev.(evRestartDue); ok {
					t.Errorf("an old worker's death during the reload armed the backoff's timer (%v)", tm.after)
				}
			}
			if n := len(effectsOf[effSpawn](effs)); n != 0 {
				t.Errorf("%d workers started for the dead old one during the reload", n)
			}
			d.after(100 * time.Millisecond)
			d.do(evExited{id: genIDs(d, d.c.gen+1)[0], err: &workerproc.ExitError{Code: 1}, importErr: &workerproc.ImportError{Message: "ImportError: x"}})
		}
		if err := <-done; err == nil {
			t.Fatal("the reload succeeded")
		}
		var due []effTimer
		for _, tm := range effectsOf[effTimer](d.out) {
			if _, ok := tm.ev.(evRestartDue); ok {
				due = append(due, tm)
			}
		}
		if !d.c.restartHeld || len(due) == 0 || due[len(due)-1].after != 150*time.Millisecond {
			t.Fatalf("first spawn fails %v: held %v, restart timers %+v; want the 150 ms left of 250", firstSpawnFails, d.c.restartHeld, due)
		}
		effs := d.do(due[len(due)-1].ev)
		for _, s := range effectsOf[effSpawn](effs) {
			if s.gen != d.c.gen {
				t.Errorf("the restart started generation %d, want the old %d", s.gen, d.c.gen)
			}
		}
		if n := len(effectsOf[effSpawn](effs)); n != 1 {
			t.Errorf("first spawn fails %v: %d workers started when the backoff ran out, want the 1 missing", firstSpawnFails, n)
		}
	}
}
