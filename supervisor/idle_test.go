package supervisor

import (
	"testing"
	"time"
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
