package supervisor

import (
	"testing"
	"time"
)

func TestRestartTrackerBackoff(t *testing.T) {
	p := RestartPolicy{First: 0, Max: 2 * time.Second, StableAfter: 10 * time.Second, FailAfter: 5, FailWindow: time.Minute}
	tr := NewRestartTracker(p, func() float64 { return 0.5 })
	now := time.Unix(1000, 0)
	want := []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 2 * time.Second, 2 * time.Second}
	for i, w := range want {
		d := tr.Died(now, time.Second)
		if d.Delay != w {
			t.Errorf("death %d: delay %v, want %v", i+1, d.Delay, w)
		}
		if d.Streak != i+1 {
			t.Errorf("death %d: streak %d", i+1, d.Streak)
		}
		now = now.Add(d.Delay + time.Second)
	}
}

func TestRestartTrackerStableWorkerResetsStreak(t *testing.T) {
	tr := NewRestartTracker(DefaultRestartPolicy, func() float64 { return 0.5 })
	now := time.Unix(1000, 0)
	tr.Died(now, time.Second)
	if d := tr.Died(now.Add(time.Second), time.Second); d.Delay == 0 {
		t.Fatalf("second quick death restarts at once; want a backoff")
	}
	d := tr.Died(now.Add(time.Hour), time.Hour)
	if d.Delay != 0 || d.Streak != 1 {
		t.Fatalf("a death after a long stable life: delay %v streak %d, want 0 and 1", d.Delay, d.Streak)
	}
}

func TestRestartTrackerFailing(t *testing.T) {
	p := RestartPolicy{First: 0, Max: time.Second, StableAfter: 10 * time.Second, FailAfter: 3, FailWindow: 10 * time.Second}
	tr := NewRestartTracker(p, func() float64 { return 0.5 })
	now := time.Unix(1000, 0)
	cases := []struct {
		at      time.Duration
		failing bool
	}{
		{0, false},
		{time.Second, false},
		{2 * time.Second, true},   // 3 deaths in 10 s
		{30 * time.Second, false}, // the window has passed: 1 death in it
		{31 * time.Second, false},
		{32 * time.Second, true},
	}
	for i, c := range cases {
		if d := tr.Died(now.Add(c.at), 0); d.Failing != c.failing {
			t.Errorf("death %d at +%v: failing=%v, want %v", i+1, c.at, d.Failing, c.failing)
		}
	}
	tr.Reset()
	if d := tr.Died(now.Add(33*time.Second), 0); d.Failing || d.Streak != 1 {
		t.Errorf("after Reset: failing=%v streak=%d", d.Failing, d.Streak)
	}
}

func TestJitterStaysWithinBounds(t *testing.T) {
	for _, r := range []float64{0, 0.25, 0.5, 0.999} {
		d := jitter(time.Second, 0.2, func() float64 { return r })
		if d < 800*time.Millisecond || d > 1200*time.Millisecond {
			t.Errorf("jitter(1s, 0.2) with rand %v = %v, outside ±20%%", r, d)
		}
	}
	if d := jitter(0, 0.2, func() float64 { return 0.9 }); d != 0 {
		t.Errorf("jitter of zero = %v", d)
	}
}

func TestStateMoves(t *testing.T) {
	legal := [][2]WorkerState{
		{WorkerStarting, WorkerReady}, {WorkerReady, WorkerDraining}, {WorkerDraining, WorkerStopping},
		{WorkerStopping, WorkerGone}, {WorkerStarting, WorkerGone}, {WorkerReady, WorkerGone},
	}
	for _, m := range legal {
		if err := checkWorkerMove(m[0], m[1]); err != nil {
			t.Errorf("%s → %s refused: %v", m[0], m[1], err)
		}
	}
	illegal := [][2]WorkerState{
		{WorkerGone, WorkerReady}, {WorkerDraining, WorkerReady}, {WorkerStopping, WorkerReady}, {WorkerStarting, WorkerDraining},
	}
	for _, m := range illegal {
		if err := checkWorkerMove(m[0], m[1]); err == nil {
			t.Errorf("%s → %s allowed", m[0], m[1])
		}
	}
	if err := checkAppMove(AppStopped, AppRunning); err == nil {
		t.Error("stopped → running allowed without starting")
	}
	if err := checkAppMove(AppReloading, AppRunning); err != nil {
		t.Errorf("reloading → running refused: %v", err)
	}
}

func TestLogRing(t *testing.T) {
	r := NewLogRing(3)
	if got := r.Lines(); len(got) != 0 {
		t.Fatalf("empty ring has %v", got)
	}
	for _, l := range []string{"a", "b"} {
		r.Add(l)
	}
	if got := r.Lines(); len(got) != 2 || got[0] != "a" {
		t.Fatalf("got %v", got)
	}
	for _, l := range []string{"c", "d", "e"} {
		r.Add(l)
	}
	got := r.Lines()
	if len(got) != 3 || got[0] != "c" || got[2] != "e" {
		t.Fatalf("got %v, want [c d e]", got)
	}
}
