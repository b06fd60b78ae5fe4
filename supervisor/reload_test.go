package supervisor

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pyhost/pyhost/workerproc"
)

// The rolling reload, as a table: how the app was, what the new workers
// do, and what the caller, the app and its old workers end up with.
func TestCoreReload(t *testing.T) {
	crash := &workerproc.ExitError{Code: 3}
	cases := []struct {
		name  string
		from  func(d *driver) // the app before the reload (running if nil)
		fail  []uint64        // spawns of the reload that fail, by order (1: its first)
		new   func(d *driver, gen int)
		err   string // the caller's answer; "" for nil
		state AppState
		old   int    // old workers left serving
		note  string // a line the app's log must have
	}{
		{
			name: "success", new: readyGen, state: AppRunning,
			note: "all 2 new workers are ready; draining the old ones",
		},
		{
			name: "import error", state: AppRunning, old: 2, err: "reload aborted: app import failed: ImportError: x",
			new: func(d *driver, gen int) {
				d.do(evExited{id: genIDs(d, gen)[0], err: crash, importErr: &workerproc.ImportError{Message: "ImportError: x", Traceback: "tb"}})
			},
			note: "reload aborted (app import failed: ImportError: x); the old workers keep serving",
		},
		{
			name: "second new worker dies", state: AppRunning, old: 2, err: "reload aborted: exited with status 3",
			new: func(d *driver, gen int) {
				ids := genIDs(d, gen)
				d.do(evReady{ids[0]})
				d.do(evExited{id: genIDs(d, gen)[1], err: crash})
			},
		},
		{
			name: "first spawn fails", fail: []uint64{1}, state: AppRunning, old: 2, err: "reload aborted: cannot start",
		},
		{
			name: "second spawn fails", fail: []uint64{2}, state: AppRunning, old: 2, err: "reload aborted: cannot start",
			new:  func(d *driver, gen int) { d.do(evReady{genIDs(d, gen)[0]}) },
			note: "reload aborted (cannot start); the old workers keep serving",
		},
		{
			name: "ownerStopped app, success", from: haltApp, new: readyGen, state: AppRunning,
			note: "all 2 new workers are ready; the app runs again",
		},
		{
			name: "ownerStopped app, failure", from: haltApp, state: AppStopped, err: "reload aborted: exited with status 3",
			new:  func(d *driver, gen int) { d.do(evExited{id: genIDs(d, gen)[0], err: crash}) },
			note: "reload aborted (exited with status 3); the app stays stopped",
		},
		{
			name: "idle app, failure", from: idleApp, state: AppIdle, err: "reload aborted: exited with status 3",
			new:  func(d *driver, gen int) { d.do(evExited{id: genIDs(d, gen)[0], err: crash}) },
			note: "reload aborted (exited with status 3); the app stays idle",
		},
		{
			name: "idle app, success", from: idleApp, new: readyGen, state: AppRunning,
		},
		{
			name: "already reloading", state: AppReloading, old: 2, err: ErrReloadRunning.Error(),
			from: func(d *driver) { d.do(evReload{newOp(d, make(chan error, 1))}) },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := running(t, 2)
			if tc.from != nil {
				tc.from(d)
			}
			for _, n := range tc.fail {
				d.fail[d.seq+n] = errors.New("cannot start")
			}
			done := make(chan error, 1)
			mark := len(d.out)
			d.do(evReload{newOp(d, done)})
			gen := d.c.gen + 1
			if tc.new != nil {
				tc.new(d, gen)
			}
			d.drainAll()
			for _, s := range effectsOf[effSpawn](d.out[mark:]) {
				if s.gen != gen && tc.name != "already reloading" {
					t.Errorf("a worker of generation %d started during the reload to %d", s.gen, gen)
				}
			}
			var err error
			select {
			case err = <-done:
			default:
				if tc.name != "already reloading" {
					t.Fatal("no answer")
				}
			}
			if got := errString(err); got != tc.err {
				t.Errorf("answer %q, want %q", got, tc.err)
			}
			if s := d.c.state(); s != tc.state {
				t.Errorf("state %s, want %s", s, tc.state)
			}
			old := 0
			for _, w := range d.c.workers {
				if w.gen < gen && w.state == WorkerReady {
					old++
				}
			}
			if old != tc.old {
				t.Errorf("%d old workers serving, want %d", old, tc.old)
			}
			if tc.note != "" && !slices.Contains(notes(d.out), tc.note) {
				t.Errorf("app log %q lacks %q", notes(d.out), tc.note)
			}
			if tc.err == "" && (d.c.gen != gen || d.c.lastErr != "") {
				t.Errorf("after success: serving generation %d (want %d), last error %q", d.c.gen, gen, d.c.lastErr)
			}
		})
	}
}

func newOp(d *driver, done chan error) *reloadOp {
	return &reloadOp{cfg: d.c.cfg, progress: make(chan string, 64), done: done}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// genIDs is the starting or ready workers of generation gen.
func genIDs(d *driver, gen int) []string {
	var ids []string
	for _, w := range d.c.workers {
		if w.gen == gen && (w.state == WorkerStarting || w.state == WorkerReady) {
			ids = append(ids, w.id)
		}
	}
	return ids
}

// readyGen makes the new workers ready as they come.
func readyGen(d *driver, gen int) {
	for i := 0; i < 10; i++ {
		for _, w := range d.c.workers {
			if w.gen == gen && w.state == WorkerStarting {
				d.do(evReady{w.id})
			}
		}
	}
}

func haltApp(d *driver) {
	d.do(evOwnerStop{make(chan error, 1)})
	d.drainAll()
	if s := d.c.state(); s != AppStopped {
		d.t.Fatalf("ownerStopped: %s", s)
	}
}

func idleApp(d *driver) {
	d.c.cfg.IdleTimeout = 1
	served := map[string]counters{}
	d.do(evTick{served})
	d.after(2)
	d.do(evTick{served})
	d.drainAll()
	if s := d.c.state(); s != AppIdle {
		d.t.Fatalf("idle: %s", s)
	}
}

// The reload's steps as the caller reads them.
func TestCoreReloadProgress(t *testing.T) {
	d := running(t, 3)
	done := make(chan error, 1)
	progress := make(chan string, 64)
	d.do(evReload{&reloadOp{cfg: d.c.cfg, progress: progress, done: done}})
	readyGen(d, d.c.gen+1)
	d.drainAll()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(progress)
	var lines []string
	for l := range progress {
		lines = append(lines, l)
	}
	want := "starting new worker 1 of 3|new worker 1 is ready; starting 2 more|all 3 new workers are ready; draining the old ones|old workers stopped"
	if got := strings.Join(lines, "|"); got != want {
		t.Errorf("progress %q\nwant     %q", got, want)
	}
}

// An old worker that was already on its way out (a recycle) and exits
// during a reload must not start the rest of the new workers before the
// first is ready: a broken import would cost every process, not one
// (found by review).
func TestCoreReloadOldExitBeforeFirstReady(t *testing.T) {
	d := running(t, 4)
	oldIDs := genIDs(d, d.c.gen)
	d.do(evRecycle{id: oldIDs[0], reason: RecycleReason{RecycleMemory, "test"}})
	// The recycle's replacement is ready: the recycled one drains.
	readyGen(d, d.c.gen)
	if w := d.c.find(oldIDs[0]); w == nil || w.state != WorkerDraining {
		t.Fatalf("the recycled worker: %+v", w)
	}
	d.do(evReload{newOp(d, make(chan error, 1))})
	gen := d.c.gen + 1
	d.do(evExited{id: oldIDs[0]})
	if n := len(genIDs(d, gen)); n != 1 {
		t.Errorf("%d new workers after an old one exited, the first not ready; want 1", n)
	}
	if slices.Contains(notes(d.out), "new worker 1 is ready; starting 3 more") {
		t.Errorf("the log says the first new worker is ready: %q", notes(d.out))
	}
	// Once it is ready, the rest start.
	d.do(evReady{genIDs(d, gen)[0]})
	if n := len(genIDs(d, gen)); n != 4 {
		t.Errorf("%d new workers once the first is ready; want 4", n)
	}
}
