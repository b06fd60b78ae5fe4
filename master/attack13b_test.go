package master

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/supervisor"
	"github.com/pyhost/pyhost/workerproc"
)

// heldStarter starts fakeProcs as fakeStarter does, but while held is
// set a new worker is not ready until release: a roll stays under way
// for as long as a test needs it to.
type heldStarter struct {
	fakeStarter
	mu      sync.Mutex
	held    bool
	waiting []*fakeProc
}

func (s *heldStarter) StartWorker(spec workerproc.Spec, fs supervisor.ForkServer) (supervisor.Proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.held {
		return s.fakeStarter.StartWorker(spec, fs)
	}
	p := &fakeProc{pid: int(1000 + s.pids.Add(1)), socket: spec.Socket, started: time.Now(), ready: make(chan struct{}), exited: make(chan struct{})}
	s.waiting = append(s.waiting, p)
	return p, nil
}

func (s *heldStarter) hold() { s.mu.Lock(); s.held = true; s.mu.Unlock() }

// release readies every worker held back, and the next ones at once.
func (s *heldStarter) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = false
	for _, p := range s.waiting {
		close(p.ready)
	}
	s.waiting = nil
}

// newHeldMaster is newTestMaster with a heldStarter.
func newHeldMaster(t *testing.T, cat Catalog) (*Master, *heldStarter) {
	t.Helper()
	st := &heldStarter{}
	return newTestMasterOf(t, cat, st), st
}

// waitState waits (bounded) until key's app is in want.
func waitState(t *testing.T, m *Master, key string, want supervisor.AppState) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for state(t, m, key) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s, want %s", key, state(t, m, key), want)
		}
		time.Sleep(5 * time.Millisecond) // polling the app's state, as eventually does
	}
}

// pyctl start of an app in the middle of a roll (pyctl restart, a
// reload) starts nothing: it runs, its old workers serve while the new
// ones start. It must say so, as for a running app, not "starting"
// and then "start done" for a start that never happened.
func TestStartDuringARollSaysItRuns(t *testing.T) {
	blog, off := testApp(alice, "blog"), testApp(alice, "off")
	off.Disabled = true
	cat := systemCatalog(blog, off)
	m, st := newHeldMaster(t, cat)
	if err := m.Act(ctxBg, aliceC, control.ActionStart, "off", noLines); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"blog", "off"} {
		key := alice.Username + "/" + name
		st.hold()
		rolled := make(chan error, 1)
		go func() { rolled <- m.Act(ctxBg, aliceC, control.ActionRestart, name, noLines) }()
		waitState(t, m, key, supervisor.AppReloading)
		pids := st.pids.Load()
		var out lines
		err := m.Act(ctxBg, aliceC, control.ActionStart, name, out.add)
		if !errors.Is(err, control.ErrNothingToDo) || !strings.Contains(out.String(), "already running, and a roll of it is under way; nothing to do") || strings.Contains(out.String(), "starting") {
			t.Errorf("pyctl start %s mid-roll: %v, said %q; want \"already running, and a roll of it is under way; nothing to do\"", name, err, out.String())
		}
		if n := st.pids.Load() - pids; n != 0 {
			t.Errorf("pyctl start %s mid-roll started %d workers", name, n)
		}
		st.release()
		if err := <-rolled; err != nil {
			t.Errorf("the roll of %s: %v", name, err)
		}
		if s := state(t, m, key); s != supervisor.AppRunning {
			t.Errorf("%s after the roll: %s, want running", name, s)
		}
	}

	// A stopped app that a restart is starting: the roll decides, and
	// start says a reload is under way (exit 1), as it did.
	if err := m.Act(ctxBg, aliceC, control.ActionStop, "blog", noLines); err != nil {
		t.Fatal(err)
	}
	st.hold()
	rolled := make(chan error, 1)
	go func() { rolled <- m.Act(ctxBg, aliceC, control.ActionRestart, "blog", noLines) }()
	waitState(t, m, alice.Username+"/blog", supervisor.AppReloading)
	var out lines
	if err := m.Act(ctxBg, aliceC, control.ActionStart, "blog", out.add); err == nil || !strings.Contains(err.Error(), supervisor.ErrReloadRunning.Error()) {
		t.Errorf("pyctl start of a stopped app a roll is starting: %v (said %q), want %q", err, out.String(), supervisor.ErrReloadRunning)
	}
	st.release()
	if err := <-rolled; err != nil || state(t, m, alice.Username+"/blog") != supervisor.AppRunning {
		t.Errorf("the restart of the stopped app: %v, %s; want it running", err, state(t, m, alice.Username+"/blog"))
	}
}

// pyctl status lists an app whose file was refused (state refused);
// start, stop and restart of it said "no such app", as of a name that
// means nothing. They say its file was refused and what to do, still as
// no such app (there is none to act on).
func TestActOnARefusedAppSaysItsFileWasRefused(t *testing.T) {
	m, _ := newTestMaster(t, systemCatalog())
	rows, err := m.Status(ctxBg, aliceC, "draft")
	if err != nil || len(rows) != 1 || rows[0].State != "refused" {
		t.Fatalf("pyctl status draft: %v %v, want one refused row", rows, err)
	}
	for _, a := range []control.Action{control.ActionStart, control.ActionStop, control.ActionRestart} {
		err := m.Act(ctxBg, aliceC, a, "draft", noLines)
		if !errors.Is(err, control.ErrNoSuchApp) || !strings.Contains(err.Error(), "its file was refused") || !strings.Contains(err.Error(), "pyctl reload draft") {
			t.Errorf("pyctl %s draft (refused): %v, want it to say the file was refused", a, err)
		}
	}
	if err := m.Act(ctxBg, aliceC, control.ActionStart, "nosuch", noLines); !errors.Is(err, control.ErrNoSuchApp) || strings.Contains(err.Error(), "refused") {
		t.Errorf("pyctl start nosuch: %v, want plain no such app", err)
	}
}

// spawnFails is fakeStarter whose spawns fail while fail is set (python
// gone, EAGAIN under tasks_max).
type spawnFails struct {
	fakeStarter
	fail atomic.Bool
}

func (s *spawnFails) StartWorker(spec workerproc.Spec, fs supervisor.ForkServer) (supervisor.Proc, error) {
	if s.fail.Load() {
		return nil, errors.New("fork/exec /usr/bin/python3: resource temporarily unavailable")
	}
	return s.fakeStarter.StartWorker(spec, fs)
}

// An app whose worker died, or could not be spawned, waits out a
// back-off before the next try, and shows as starting meanwhile with no
// worker at all (its deaths have not made it failing yet, or a slow
// crash loop never does). pyctl start of it said "already starting;
// nothing to do" and nothing started for as long as the back-off lasts
// (30 s at most, by default): it retries it now, as it does a failing
// app.
func TestStartOfAnAppInBackOffRetriesIt(t *testing.T) {
	for _, c := range []struct {
		how      string
		disabled bool
	}{{"died", false}, {"died", true}, {"spawn failed", false}} {
		cat := &fakeCatalog{mode: "system", rereads: true, listed: listed12}
		st := &spawnFails{}
		m := newTestMasterOf(t, cat, st)
		// A back-off that outlasts the test: only a start can end it.
		m.set.opts.Restart = supervisor.RestartPolicy{First: time.Hour, Max: time.Hour, StableAfter: time.Hour, FailAfter: 100, FailWindow: time.Hour}
		blog := testApp(alice, "blog")
		blog.File, blog.Disabled = "/home/alice/.config/pyhost/apps/blog.toml", c.disabled
		st.fail.Store(c.how == "spawn failed")
		if err := m.set.add(blog); err != nil {
			t.Fatal(err)
		}
		switch {
		case c.how == "spawn failed":
		case c.disabled:
			// Started by pyctl start, as a disabled app runs at all.
			if err := m.Act(ctxBg, aliceC, control.ActionStart, "blog", noLines); err != nil {
				t.Fatal(err)
			}
		default:
			if err := m.set.get(blog.Key()).WaitStarted(ctxBg); err != nil {
				t.Fatal(err)
			}
		}
		if c.how == "died" {
			// Its worker dies (an uncaught exception in a thread, say).
			s, err := m.set.get(blog.Key()).Status(ctxBg)
			if err != nil || len(s.Workers) != 1 {
				t.Fatalf("status: %v, %d workers", err, len(s.Workers))
			}
			s.Workers[0].Process.(*fakeProc).Stop(0)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			s, err := m.set.get(blog.Key()).Status(ctxBg)
			if err != nil {
				t.Fatal(err)
			}
			if s.State == supervisor.AppStarting && len(s.Workers) == 0 && (s.Restarts > 0 || s.LastError != "") {
				break // the next try waits an hour
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the app never waited out a back-off: %s, %d workers, %d restarts", c.how, s.State, len(s.Workers), s.Restarts)
			}
			time.Sleep(5 * time.Millisecond) // polling the app's state, as eventually does
		}
		st.fail.Store(false)
		var out lines
		err := m.Act(ctxBg, aliceC, control.ActionStart, "blog", out.add)
		if err != nil || strings.Contains(out.String(), "nothing to do") || state(t, m, blog.Key()) != supervisor.AppRunning {
			t.Errorf("pyctl start of the app in back-off (%s, disabled %v): %v, said %q, left it %s; want it started now", c.how, c.disabled, err, out.String(), state(t, m, blog.Key()))
		}
		if m.set.get(blog.Key()).Config().Disabled != c.disabled {
			t.Errorf("the start changed enabled = false (%s, disabled %v)", c.how, c.disabled)
		}
	}
}
