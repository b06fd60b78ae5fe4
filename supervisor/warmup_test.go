package supervisor

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/workerproc"
)

// --- the core ---

func TestCoreWarmupFailure(t *testing.T) {
	fail500 := &WarmupError{Path: "/healthz", Status: 500}
	const tail = "Traceback (most recent call last):\nNameError: name 'viewz' is not defined"
	t.Run("a reload aborts, the old workers serve", func(t *testing.T) {
		d := running(t, 2)
		old := d.in(WorkerReady)
		done := make(chan error, 1)
		d.do(evReload{newOp(d, done)})
		id := genIDs(d, 1)[0]
		effs := d.do(evWarmupFailed{id, fail500})
		if k := effectsOf[effKill](effs); len(k) != 1 || k[0].id != id {
			t.Fatalf("kills %v, want the new worker killed", k)
		}
		d.do(evExited{id: id, err: &workerproc.ExitError{Signal: 9}, tail: tail})
		var rerr *ReloadError
		if err := <-done; !errors.As(err, &rerr) {
			t.Fatalf("reload: %v, want a ReloadError", err)
		}
		if !strings.Contains(rerr.Reason, "warm-up GET /healthz answered 500") || rerr.Traceback != tail {
			t.Errorf("reload error %q, traceback %q: want the path, the status and the log's tail", rerr.Reason, rerr.Traceback)
		}
		if got := d.in(WorkerReady); len(got) != 2 || got[0] != old[0] || got[1] != old[1] {
			t.Errorf("ready after the abort: %v, want the old %v", got, old)
		}
		if d.c.gen != 0 || d.c.reload != nil {
			t.Errorf("generation %d, reload %v: nothing swapped", d.c.gen, d.c.reload)
		}
	})
	t.Run("a first start fails as an import error does", func(t *testing.T) {
		d := newDriver(t, 1)
		d.do(evStart{})
		id := d.in(WorkerStarting)[0]
		d.do(evWarmupFailed{id, fail500})
		effs := d.do(evExited{id: id, err: &workerproc.ExitError{Signal: 9}, tail: tail})
		st := effectsOf[effStarted](d.out)
		var werr *WarmupError
		if len(st) != 1 || !errors.As(st[0].err, &werr) || werr.Status != 500 || werr.Traceback != tail {
			t.Fatalf("started %v, want the warm-up error with its traceback", st)
		}
		if !strings.Contains(d.c.lastErr, "answered 500") || !strings.Contains(d.c.lastErr, "NameError") {
			t.Errorf("last error %q, want the failure and the traceback", d.c.lastErr)
		}
		if len(effectsOf[effSpawn](effs))+len(effectsOf[effTimer](effs)) == 0 {
			t.Errorf("no restart after a failed warm-up: %v", effs)
		}
		if len(d.in(WorkerReady)) != 0 {
			t.Errorf("a worker that failed its warm-up counted as ready")
		}
	})
	t.Run("a warm-up past startup_timeout names the path", func(t *testing.T) {
		d := running(t, 1)
		done := make(chan error, 1)
		d.do(evReload{newOp(d, done)})
		id := genIDs(d, 1)[0]
		d.after(30 * time.Second)
		if k := effectsOf[effKill](d.do(evStartupTimeout{id})); len(k) != 1 {
			t.Fatalf("kills %v at startup_timeout", k)
		}
		// The kill breaks the warm-up's connection: its failure comes
		// before the worker's exit, and kills nothing more.
		if k := effectsOf[effKill](d.do(evWarmupFailed{id, &WarmupError{Path: "/slow", Err: context.Canceled}})); len(k) != 0 {
			t.Errorf("killed again: %v", k)
		}
		d.do(evExited{id: id, err: &workerproc.ExitError{Signal: 9}})
		var rerr *ReloadError
		if err := <-done; !errors.As(err, &rerr) || !strings.Contains(rerr.Reason, "warm-up GET /slow did not answer within startup_timeout 30s") {
			t.Errorf("reload: %v, want the path and the timeout", err)
		}
	})
	t.Run("a stopped worker's failed warm-up is no failure", func(t *testing.T) {
		d := newDriver(t, 1)
		d.do(evStart{})
		id := d.in(WorkerStarting)[0]
		d.do(evShutdown{})
		if k := effectsOf[effKill](d.do(evWarmupFailed{id, &WarmupError{Path: "/", Err: context.Canceled}})); len(k) != 0 {
			t.Errorf("killed a stopping worker for its warm-up: %v", k)
		}
	})
}

// --- the App, on fake processes and a fake warmer ---

// fakeWarmer answers each warm-up as answer says; nil answer: every path
// passes. It records what it was asked.
type fakeWarmer struct {
	mu     sync.Mutex
	asked  []WarmupRequest
	answer func(ctx context.Context, socket string) error
}

func (w *fakeWarmer) Warm(ctx context.Context, socket string, req WarmupRequest) error {
	w.mu.Lock()
	w.asked = append(w.asked, req)
	answer := w.answer
	w.mu.Unlock()
	if answer == nil {
		return nil
	}
	return answer(ctx, socket)
}

func (w *fakeWarmer) set(answer func(ctx context.Context, socket string) error) {
	w.mu.Lock()
	w.answer = answer
	w.mu.Unlock()
}

func (w *fakeWarmer) requests() []WarmupRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]WarmupRequest(nil), w.asked...)
}

func warmupOpts(w *fakeWarmer) func(*Options) {
	return func(o *Options) {
		o.Warmer = w
		o.WarmupPaths = func(config.App) []string { return []string{"/", "/healthz"} }
	}
}

func TestWarmupBeforeReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hold := make(chan struct{})
		w := &fakeWarmer{answer: func(ctx context.Context, _ string) error {
			<-hold
			return nil
		}}
		cfg := testConfig(1)
		cfg.Domains = []string{"blog.example.com", "www.example.com"}
		h := start(t, cfg, warmupOpts(w))
		h.readyAll()
		// Imported, warming up: not ready, not routed.
		if s := h.state(); s != AppStarting || h.serving() != 0 {
			t.Fatalf("state %s, %d serving while the warm-up runs, want starting and none", s, h.serving())
		}
		close(hold)
		synctest.Wait()
		if s := h.state(); s != AppRunning || h.serving() != 1 {
			t.Fatalf("state %s, %d serving after the warm-up, want running", s, h.serving())
		}
		if err := h.app.WaitStarted(context.Background()); err != nil {
			t.Errorf("WaitStarted: %v", err)
		}
		r := w.requests()
		if len(r) != 1 || r[0].Host != "blog.example.com" || strings.Join(r[0].Paths, " ") != "/ /healthz" {
			t.Errorf("warm-ups %+v, want one of / and /healthz as blog.example.com", r)
		}
	})
}

func TestWarmup500AbortsReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &fakeWarmer{}
		h := start(t, testConfig(2), warmupOpts(w))
		h.readyAll()
		if h.serving() != 2 {
			t.Fatalf("%d serving", h.serving())
		}
		old := h.routed()
		w.set(func(context.Context, string) error {
			return &WarmupError{Path: "/healthz", Status: 500}
		})
		var progress []string
		done := h.reload(testConfig(2), &progress)
		newest := h.st.proc(t, 2)
		newest.becomeReady()
		synctest.Wait()
		err, ok := result(done)
		var rerr *ReloadError
		if !ok || !errors.As(err, &rerr) || !strings.Contains(rerr.Reason, "warm-up GET /healthz answered 500") {
			t.Fatalf("reload: %v (done %v), want aborted for the warm-up", err, ok)
		}
		if newest.killed() != 1 || !newest.isGone() {
			t.Errorf("the new worker that failed its warm-up was not killed")
		}
		got := h.routed()
		_, a := got[h.st.proc(t, 0).pid]
		_, b := got[h.st.proc(t, 1).pid]
		if len(got) != 2 || !a || !b || got[h.st.proc(t, 0).pid] || got[h.st.proc(t, 1).pid] {
			t.Errorf("routed %v after the abort, want the old workers %v", got, old)
		}
		if h.st.count() != 3 {
			t.Errorf("%d workers started, want the one new worker only", h.st.count())
		}
	})
}

func TestWarmupTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A warm-up path that never answers: the worker is killed at
		// startup_timeout, and the warm-up sees it go.
		w := &fakeWarmer{answer: func(ctx context.Context, _ string) error {
			<-ctx.Done()
			return &WarmupError{Path: "/slow", Err: ctx.Err()}
		}}
		h := start(t, testConfig(1), warmupOpts(w))
		p := h.st.proc(t, 0)
		p.becomeReady()
		synctest.Wait()
		time.Sleep(31 * time.Second)
		synctest.Wait()
		if p.killed() != 1 {
			t.Fatalf("the worker stuck in its warm-up was killed %d times, want once", p.killed())
		}
		err := h.app.WaitStarted(context.Background())
		var werr *WarmupError
		if !errors.As(err, &werr) || werr.Path != "/slow" || !strings.Contains(err.Error(), "startup_timeout") {
			t.Errorf("WaitStarted: %v, want the path and startup_timeout", err)
		}
		if s := h.status(); !strings.Contains(s.LastError, "warm-up GET /slow did not answer within startup_timeout") {
			t.Errorf("status: last error %q", s.LastError)
		}
	})
}

func TestWarmupRequest(t *testing.T) {
	cases := []struct {
		domains []string
		host    string
	}{
		{nil, "localhost"},
		{[]string{"blog.example.com", "x.example.com"}, "blog.example.com"},
		{[]string{"*.example.com"}, "example.com"},
	}
	for _, tc := range cases {
		if r := warmupRequest(config.App{Domains: tc.domains}, []string{"/"}); r.Host != tc.host {
			t.Errorf("domains %v: host %q, want %q", tc.domains, r.Host, tc.host)
		}
	}
	env := warmupEnviron(WarmupRequest{Host: "example.com", Prefix: "/blog"}, "/blog/feed?page=2", 0)
	got := map[string]string{}
	for i := 0; i+1 < len(env); i += 2 {
		got[env[i]] = env[i+1]
	}
	want := map[string]string{"SCRIPT_NAME": "/blog", "PATH_INFO": "/feed", "QUERY_STRING": "page=2", "REQUEST_URI": "/blog/feed?page=2", "HTTP_HOST": "example.com", "SERVER_NAME": "example.com", "REQUEST_METHOD": "GET"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}
