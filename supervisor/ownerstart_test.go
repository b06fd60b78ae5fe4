package supervisor

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// pyctl start of an app whose worker died and whose next waits out a
// backoff (starting, no worker, not failing) starts a worker now: Start
// used to answer nil at once and leave the held restart alone, so
// nothing started until the backoff ran out (up to 30 s).
func TestStartRetriesAHeldRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := newFakeClock()
		h := start(t, testConfig(1), func(o *Options) {
			o.Clock = clock
			o.Restart = loopPolicy
			o.Starter.(*fakeStarter).now = clock.Now
		})
		h.readyAll()
		// The first death is replaced at once; the second is held back
		// 250 ms, on a clock that does not move.
		for range 2 {
			for _, p := range h.st.live() {
				p.crash(1)
				synctest.Wait()
			}
		}
		if n, st := len(h.st.live()), h.state(); n != 0 || st != AppStarting {
			t.Fatalf("%d live, %s; want none, starting (a held restart)", n, st)
		}
		before := h.st.count()
		done := make(chan error, 1)
		go func() { done <- h.app.Start(context.Background()) }()
		synctest.Wait()
		if n := h.st.count(); n != before+1 {
			t.Fatalf("Start of a held restart started %d workers, want 1 now", n-before)
		}
		h.readyAll()
		if err, ok := result(done); !ok || err != nil {
			t.Fatalf("Start: %v (answered %v), want nil once its worker is ready", err, ok)
		}
		// The held restart's timer, when it fires, starts nothing more.
		clock.advance(time.Minute)
		synctest.Wait()
		if n := h.st.count(); n != before+1 {
			t.Errorf("%d more workers after the backoff ran out, want none", n-before-1)
		}
		// Now there is nothing to start, and Start says so.
		if err := h.app.Start(context.Background()); !errors.Is(err, ErrAlreadyStarted) {
			t.Errorf("Start of a running app: %v, want ErrAlreadyStarted", err)
		}
	})
}
