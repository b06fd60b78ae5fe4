package supervisor

import (
	"testing"
	"time"

	"github.com/pyhost/pyhost/proxymsg"
	"github.com/pyhost/pyhost/workerproc"
)

func TestIdleCheck(t *testing.T) {
	now := time.Unix(1000, 0)
	cases := []struct {
		timeout time.Duration
		last    time.Time
		want    bool
	}{
		{0, now.Add(-time.Hour), false},
		{time.Minute, now.Add(-59 * time.Second), false},
		{time.Minute, now.Add(-time.Minute), true},
		{time.Minute, now.Add(-time.Hour), true},
	}
	for _, c := range cases {
		if got := IdleCheck(c.timeout, c.last, now); got != c.want {
			t.Errorf("IdleCheck(%v, %v ago) = %v, want %v", c.timeout, now.Sub(c.last), got, c.want)
		}
	}
}

// When the core idles an app: the proxy's counters over a minute of
// ticks, as a table.
func TestCoreCheckIdle(t *testing.T) {
	type tick struct {
		after    time.Duration
		requests uint64 // the app's total so far
		busy     int
	}
	cases := []struct {
		name    string
		timeout time.Duration
		noProxy bool // no counters at all (Options.Served nil)
		ticks   []tick
		idle    bool
	}{
		{"quiet for the timeout", time.Minute, false, []tick{{30 * time.Second, 0, 0}, {31 * time.Second, 0, 0}}, true},
		{"a request resets it", time.Minute, false, []tick{{30 * time.Second, 0, 0}, {20 * time.Second, 5, 0}, {50 * time.Second, 5, 0}}, false},
		{"then quiet again", time.Minute, false, []tick{{20 * time.Second, 5, 0}, {61 * time.Second, 5, 0}}, true},
		{"a long request keeps it", time.Minute, false, []tick{{30 * time.Second, 0, 1}, {40 * time.Second, 0, 1}, {40 * time.Second, 0, 1}}, false},
		{"no idle_timeout", 0, false, []tick{{time.Hour, 0, 0}}, false},
		{"no counters", time.Minute, true, []tick{{time.Hour, 0, 0}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := running(t, 2)
			d.c.cfg.IdleTimeout = tc.timeout
			ids := d.in(WorkerReady)
			for _, k := range tc.ticks {
				d.after(k.after)
				var served map[string]counters
				if !tc.noProxy {
					served = map[string]counters{ids[0]: {Requests: k.requests, Busy: k.busy}, ids[1]: {}}
				}
				d.do(evTick{served})
			}
			if idle := d.c.state() == AppIdle; idle != tc.idle {
				t.Fatalf("idle %v, want %v", idle, tc.idle)
			}
			if tc.idle && len(d.in(WorkerDraining)) != 2 {
				t.Errorf("idle with %d draining, want all 2", len(d.in(WorkerDraining)))
			}
		})
	}
}

func TestCoreWake(t *testing.T) {
	d := running(t, 2)
	idleApp(d)
	// Many requests wake it at once: one start of processes workers.
	for range 5 {
		d.do(evWake{})
	}
	if n := len(effectsOf[effSpawn](d.out)); n != 4 {
		t.Errorf("%d spawns in all, want the first 2 and 2 after the wake", n)
	}
	if s := d.c.state(); s != AppStarting {
		t.Errorf("state %s, want starting", s)
	}
	if d.c.lastServed != 0 || !d.c.lastActive.Equal(d.now) {
		t.Errorf("the idle clock did not restart at the wake")
	}
	// A running app, a stopped one: nothing to wake.
	d.readyAll()
	before := len(d.out)
	d.do(evWake{})
	d.do(evShutdown{})
	d.do(evWake{})
	if n := len(effectsOf[effSpawn](d.out[before:])); n != 0 {
		t.Errorf("%d spawns from wakes of a running or stopped app", n)
	}
}

// No boot storm (D8): an app with idle_timeout begins idle, and only what
// follows starts it.
func TestCoreStartsIdle(t *testing.T) {
	cases := []struct {
		name    string
		timeout time.Duration
		then    func(d *driver) // after evStart
		state   AppState
		route   proxymsg.AppState
		spawns  int
	}{
		{"no idle_timeout: starts at once", 0, nil, AppStarting, proxymsg.AppStarting, 2},
		{"idle_timeout: no process", time.Minute, nil, AppIdle, proxymsg.AppIdle, 0},
		{"first request", time.Minute, func(d *driver) { d.do(evWake{}) }, AppStarting, proxymsg.AppStarting, 2},
		{"many first requests: one start", time.Minute, func(d *driver) {
			for range 5 {
				d.do(evWake{})
			}
		}, AppStarting, proxymsg.AppStarting, 2},
		{"first request served", time.Minute, func(d *driver) { d.do(evWake{}); d.readyAll() }, AppRunning, proxymsg.AppRunning, 2},
		{"pyctl start", time.Minute, func(d *driver) { d.do(evOwnerStart{make(chan error, 1)}) }, AppStarting, proxymsg.AppStarting, 2},
		{"pyctl stop", time.Minute, func(d *driver) { d.do(evOwnerStop{make(chan error, 1)}) }, AppStopped, proxymsg.AppStopped, 0},
		{"pyctl stop, then a request", time.Minute, func(d *driver) {
			d.do(evOwnerStop{make(chan error, 1)})
			d.do(evWake{})
		}, AppStopped, proxymsg.AppStopped, 0},
		{"reload: starts on the fresh code", time.Minute, func(d *driver) {
			d.do(evReload{newOp(d, make(chan error, 1))})
			readyGen(d, 1)
		}, AppRunning, proxymsg.AppRunning, 2},
		{"reload fails: idle again", time.Minute, func(d *driver) {
			d.do(evReload{newOp(d, make(chan error, 1))})
			d.exit(genIDs(d, 1)[0], &workerproc.ExitError{Code: 1})
		}, AppIdle, proxymsg.AppIdle, 1},
		{"ticks keep it idle", time.Minute, func(d *driver) {
			for range 3 {
				d.after(time.Hour)
				d.do(evTick{map[string]counters{}})
			}
		}, AppIdle, proxymsg.AppIdle, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t, 2)
			d.c.cfg.IdleTimeout = tc.timeout
			want := proxymsg.AppStarting
			if tc.timeout > 0 {
				want = proxymsg.AppIdle // a request before Run wakes it
			}
			if r := d.c.route().State; r != want {
				t.Errorf("route %s before Run, want %s", r, want)
			}
			effs := d.do(evStart{})
			if tc.timeout > 0 {
				if st := effectsOf[effStarted](effs); len(st) != 1 || st[0].err != nil {
					t.Errorf("effStarted %v at start, want one nil: WaitStarted must not wait for a request", st)
				}
			}
			if tc.then != nil {
				tc.then(d)
			}
			if s := d.c.state(); s != tc.state {
				t.Errorf("state %s, want %s", s, tc.state)
			}
			if r := d.c.route().State; r != tc.route {
				t.Errorf("route %s, want %s", r, tc.route)
			}
			if n := len(effectsOf[effSpawn](d.out)); n != tc.spawns {
				t.Errorf("%d spawns, want %d", n, tc.spawns)
			}
		})
	}
}

// enabled = false (D5): the app begins stopped, with no process, even
// with idle_timeout; a request does not start it, pyctl start does.
func TestCoreStartsDisabled(t *testing.T) {
	for _, idle := range []time.Duration{0, time.Minute} {
		d := newDriver(t, 2)
		d.c.cfg.Disabled, d.c.cfg.IdleTimeout = true, idle
		if r := d.c.route().State; r != proxymsg.AppStopped {
			t.Errorf("idle %v: route %s before Run, want stopped", idle, r)
		}
		effs := d.do(evStart{})
		if st := effectsOf[effStarted](effs); len(st) != 1 || st[0].err != nil {
			t.Errorf("idle %v: effStarted %v, want one nil", idle, st)
		}
		d.do(evWake{})
		if s, n := d.c.state(), len(effectsOf[effSpawn](d.out)); s != AppStopped || n != 0 {
			t.Errorf("idle %v: %s with %d spawns after a request, want stopped with none", idle, s, n)
		}
		d.do(evOwnerStart{make(chan error, 1)})
		d.readyAll()
		if s := d.c.state(); s != AppRunning {
			t.Errorf("idle %v: after pyctl start: %s", idle, s)
		}
	}
}
