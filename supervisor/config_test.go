package supervisor

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
)

// Config is the serving generation's settings: not a reload's until its
// new workers all took over, never an aborted one's.
func TestConfigIsTheServingGenerations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, testConfig(2), nil)
		if got := h.app.Config(); got.Threads != 4 {
			t.Fatalf("before any worker is ready: threads %d, want 4", got.Threads)
		}
		h.readyAll()
		v2 := testConfig(2)
		v2.Threads = 8
		var progress []string
		done := h.reload(v2, &progress)
		h.st.proc(t, 2).becomeReady()
		synctest.Wait()
		if got := h.app.Config(); got.Threads != 4 || h.state() != AppReloading {
			t.Errorf("during the reload (%s): threads %d, want the old 4", h.state(), got.Threads)
		}
		h.readyAll()
		h.drainAll()
		if err, ok := result(done); !ok || err != nil {
			t.Fatalf("Reload: %v", err)
		}
		if got := h.app.Config(); got.Threads != 8 {
			t.Errorf("after the reload: threads %d, want 8", got.Threads)
		}

		v3 := testConfig(2)
		v3.Threads = 16
		done = h.reload(v3, &progress)
		h.st.proc(t, 4).importFail()
		synctest.Wait()
		var rerr *ReloadError
		if err, ok := result(done); !ok || !errors.As(err, &rerr) {
			t.Fatalf("Reload of a broken import: %v", err)
		}
		if got := h.app.Config(); got.Threads != 8 {
			t.Errorf("after an aborted reload: threads %d, want 8 still", got.Threads)
		}
		h.stop()
		if got := h.app.Config(); got.Threads != 8 {
			t.Errorf("after Run returned: threads %d, want 8", got.Threads)
		}
	})
}

// Disable hands a stopped app the settings of its disabled file without
// starting anything; a reload starts it on them, or on its own.
func TestDisableKeepsTheSettingsForTheNextStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, testConfig(1), nil)
		h.readyAll()
		disable := func(threads int) error {
			t.Helper()
			cfg := testConfig(1)
			cfg.Threads, cfg.Disabled = threads, true
			done := make(chan error, 1)
			go func() { done <- h.app.Disable(context.Background(), cfg) }()
			synctest.Wait()
			h.drainAll()
			err, ok := result(done)
			if !ok {
				t.Fatal("Disable did not return once the workers were gone")
			}
			return err
		}
		if err := disable(8); err != nil {
			t.Fatal(err)
		}
		if got := h.app.Config(); got.Threads != 8 || !got.Disabled || h.state() != AppStopped || len(h.st.live()) != 0 {
			t.Fatalf("after Disable: threads %d, %s, %d live; want its 8, stopped, none", got.Threads, h.state(), len(h.st.live()))
		}
		// Stopped already: taken again, still nothing starts.
		started := h.st.count()
		if err := disable(12); err != nil {
			t.Fatal(err)
		}
		if got := h.app.Config(); got.Threads != 12 || h.st.count() != started {
			t.Errorf("a second Disable: threads %d, %d started; want 12, none", got.Threads, h.st.count()-started)
		}

		// A start that fails leaves the settings handed over in force.
		var progress []string
		done := h.reload(h.app.Config(), &progress)
		h.st.proc(t, started).importFail()
		synctest.Wait()
		if err, ok := result(done); !ok || err == nil {
			t.Fatalf("a start of broken code: %v", err)
		}
		if got := h.app.Config(); got.Threads != 12 || h.state() != AppStopped {
			t.Errorf("after the failed start: threads %d, %s; want 12, stopped", got.Threads, h.state())
		}

		// pyctl start: a reload onto them, which starts the app.
		done = h.reload(h.app.Config(), &progress)
		h.readyAll()
		if err, ok := result(done); !ok || err != nil {
			t.Fatalf("start: %v", err)
		}
		if got := h.app.Config(); got.Threads != 12 || h.state() != AppRunning || h.app.Route().Workers[0].Threads != 12 {
			t.Errorf("after the start: threads %d, %s, route %+v", got.Threads, h.state(), h.app.Route().Workers)
		}

		// Disabled again, then rolled onto other settings: the roll's
		// are in force, the ones handed over are forgotten.
		if err := disable(2); err != nil {
			t.Fatal(err)
		}
		done = h.reload(testConfig(1), &progress)
		h.readyAll()
		if err, ok := result(done); !ok || err != nil {
			t.Fatalf("reload: %v", err)
		}
		if got := h.app.Config(); got.Threads != 4 || got.Disabled {
			t.Errorf("after a reload onto an enabled file: threads %d, disabled %v", got.Threads, got.Disabled)
		}

		// A reload under way refuses it, and nothing changes.
		v5 := testConfig(1)
		v5.Threads = 5
		done = h.reload(v5, &progress)
		off := testConfig(1)
		off.Disabled = true
		if err := h.app.Disable(context.Background(), off); !errors.Is(err, ErrReloadRunning) {
			t.Errorf("Disable during a reload: %v, want ErrReloadRunning", err)
		}
		h.readyAll()
		h.drainAll()
		if err, ok := result(done); !ok || err != nil {
			t.Fatalf("reload: %v", err)
		}
		if got := h.app.Config(); got.Threads != 5 || got.Disabled || h.state() != AppRunning {
			t.Errorf("after Disable was refused: threads %d, disabled %v, %s", got.Threads, got.Disabled, h.state())
		}
	})
}

// An app whose file says enabled = false begins stopped on that file.
func TestConfigOfAnAppThatBeginsDisabled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(1)
		cfg.Disabled = true
		h := start(t, cfg, nil)
		if got := h.app.Config(); !got.Disabled || h.state() != AppStopped || h.st.count() != 0 {
			t.Errorf("threads %d disabled %v, %s, %d started", got.Threads, got.Disabled, h.state(), h.st.count())
		}
		h.stop()
		if err := h.app.Disable(context.Background(), cfg); !errors.Is(err, ErrStopped) {
			t.Errorf("Disable once Run returned: %v, want ErrStopped", err)
		}
	})
}
