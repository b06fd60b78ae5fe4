package supervisor

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestCheckLimits(t *testing.T) {
	lim := Limits{MemoryLimit: 768 << 20, MaxRequests: 1000}
	cases := []struct {
		name   string
		lim    Limits
		facts  WorkerFacts
		kind   RecycleKind
		detail string
	}{
		{"under both", lim, WorkerFacts{RSS: 100 << 20, Served: 10, RequestBudget: 950}, "", ""},
		{"memory", lim, WorkerFacts{RSS: 812 << 20, Served: 10, RequestBudget: 950}, RecycleMemory, "rss 812MiB > limit 768MiB"},
		{"exactly at memory limit", lim, WorkerFacts{RSS: 768 << 20, RequestBudget: 950}, "", ""},
		{"requests", lim, WorkerFacts{RSS: 1 << 20, Served: 950, RequestBudget: 950}, RecycleRequests, "served 950 requests (max_requests 1000)"},
		{"one short of the budget", lim, WorkerFacts{Served: 949, RequestBudget: 950}, "", ""},
		{"reported by the proxy, counters not polled yet", lim, WorkerFacts{Served: 0, RequestBudget: 950, BudgetSpent: true}, RecycleRequests, "served 950 requests (max_requests 1000)"},
		{"polled counters ahead of the report", lim, WorkerFacts{Served: 990, RequestBudget: 950, BudgetSpent: true}, RecycleRequests, "served 990 requests (max_requests 1000)"},
		{"reported, but no budget", lim, WorkerFacts{Served: 5000, BudgetSpent: true}, "", ""},
		{"memory wins", lim, WorkerFacts{RSS: 1 << 30, Served: 5000, RequestBudget: 950}, RecycleMemory, "rss 1.0GiB > limit 768MiB"},
		{"no limits", Limits{}, WorkerFacts{RSS: 1 << 40, Served: 1 << 40}, "", ""},
		{"unknown rss", lim, WorkerFacts{RSS: 0, Served: 1, RequestBudget: 950}, "", ""},
	}
	for _, c := range cases {
		r, ok := CheckLimits(c.lim, c.facts)
		if ok != (c.kind != "") || r.Kind != c.kind || r.Detail != c.detail {
			t.Errorf("%s: got %v %q, want %v %q", c.name, ok, r, c.kind, c.detail)
		}
	}
}

func TestRequestBudgetJitter(t *testing.T) {
	if got := RequestBudget(0, nil); got != 0 {
		t.Errorf("no max_requests: budget %d", got)
	}
	for _, r := range []float64{0, 0.5, 0.9999} {
		b := RequestBudget(1000, func() float64 { return r })
		if b < 875 || b > 1000 {
			t.Errorf("budget %d with rand %v outside [875, 1000]", b, r)
		}
	}
	if a, b := RequestBudget(1000, func() float64 { return 0 }), RequestBudget(1000, func() float64 { return 0.99 }); a == b {
		t.Errorf("jitter gives every worker the same budget %d", a)
	}
	seen := map[int]bool{}
	for i := 0; i < 50; i++ {
		seen[RequestBudget(50, nil)] = true
	}
	if len(seen) < 2 {
		t.Errorf("50 workers all got budget %v", seen)
	}
}

func TestPlanRecycles(t *testing.T) {
	lim := Limits{MemoryLimit: 100 << 20, MaxRequests: 1000}
	over := WorkerFacts{RSS: 10 << 20, Served: 5000, RequestBudget: 900}
	reported := WorkerFacts{RSS: 10 << 20, RequestBudget: 900, BudgetSpent: true}
	under := WorkerFacts{RSS: 10 << 20, Served: 10, RequestBudget: 900}
	bloated := WorkerFacts{RSS: 200 << 20, Served: 5000, RequestBudget: 900}
	cases := []struct {
		name      string
		facts     []WorkerFacts
		reloading bool
		want      []int
	}{
		// The budgets' jitter spreads a group; a worker at its budget
		// is never kept waiting for another's recycle.
		{"every worker at its budget goes", []WorkerFacts{over, reported, under, over}, false, []int{0, 1, 3}},
		{"requests wait for a reload to end", []WorkerFacts{over, reported}, true, nil},
		{"memory is never held back", []WorkerFacts{bloated, bloated, over}, true, []int{0, 1}},
		{"memory and requests", []WorkerFacts{over, bloated, over}, false, []int{0, 1, 2}},
		{"nobody over", []WorkerFacts{under, under}, false, nil},
	}
	for _, c := range cases {
		var got []int
		for _, p := range PlanRecycles(lim, c.facts, c.reloading) {
			got = append(got, p.Index)
			if want, _ := CheckLimits(lim, c.facts[p.Index]); p.Reason != want {
				t.Errorf("%s: worker %d reason %v, want %v", c.name, p.Index, p.Reason, want)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: recycles %v, want %v", c.name, got, c.want)
		}
	}
}

func TestAppMoves(t *testing.T) {
	// A reload may start a stopped or idle app, and leaves it so when the
	// new code fails (issue 9 item 10: no ERROR for a normal action).
	for _, m := range [][2]AppState{
		{AppStopped, AppReloading}, {AppReloading, AppStopped},
		{AppIdle, AppReloading}, {AppReloading, AppIdle},
		{AppReloading, AppRunning}, {AppStopped, AppStarting}, {AppStopped, AppIdle},
	} {
		if err := checkAppMove(m[0], m[1]); err != nil {
			t.Errorf("%s → %s: %v", m[0], m[1], err)
		}
	}
	for _, m := range [][2]AppState{{AppStopped, AppRunning}, {AppStarting, AppIdle}, {AppIdle, AppRunning}} {
		if err := checkAppMove(m[0], m[1]); !errors.Is(err, ErrIllegalMove) {
			t.Errorf("%s → %s allowed", m[0], m[1])
		}
	}
}

func TestCheckMemory(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		limit, rss int64
		want       MemoryAction
	}{
		{0, 1 << 40, MemoryOK},
		{100 * mib, 99 * mib, MemoryOK},
		{100 * mib, 100 * mib, MemoryOK},
		{100 * mib, 101 * mib, MemoryRecycle},
		{100 * mib, 150 * mib, MemoryRecycle}, // at the ceiling: not past it
		{100 * mib, 151 * mib, MemoryKill},
		{512 * mib, 2 << 30, MemoryKill},
	}
	for _, c := range cases {
		if got := CheckMemory(c.limit, c.rss); got != c.want {
			t.Errorf("limit %s rss %s: %v, want %v", FormatBytes(c.limit), FormatBytes(c.rss), got, c.want)
		}
	}
	if got := MemoryCeiling(100 * mib); got != 150*mib {
		t.Errorf("ceiling of 100MiB: %s, want 150MiB", FormatBytes(got))
	}
}

func TestNextMemoryCheck(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name       string
		limit, rss int64
		want       time.Duration
	}{
		{"no limit", 0, 10 * mib, time.Second},
		{"far below", 512 * mib, 60 * mib, time.Second},
		// 130 MiB to the ceiling at 512 MiB/s.
		{"small limit", 100 * mib, 20 * mib, 253906250 * time.Nanosecond},
		{"over the limit", 100 * mib, 140 * mib, minMemoryCheck},
		{"over the ceiling", 100 * mib, 400 * mib, minMemoryCheck},
	}
	for _, c := range cases {
		if got := NextMemoryCheck(c.limit, c.rss, time.Second); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	// The bound that matters: a worker growing at assumedGrowth from
	// anywhere below its ceiling is read again before it passes it.
	for rss := int64(0); rss < 150*mib; rss += 7 * mib {
		d := NextMemoryCheck(100*mib, rss, time.Second)
		if grown := rss + int64(d.Seconds()*assumedGrowth); d > minMemoryCheck && grown > MemoryCeiling(100*mib)+mib {
			t.Errorf("rss %s: read again after %v, when it could be %s", FormatBytes(rss), d, FormatBytes(grown))
		}
	}
}

func TestOutOfRotationAtOnce(t *testing.T) {
	for kind, want := range map[RecycleKind]bool{
		RecycleTimeout:  true,  // a stuck thread: new connections would wait behind it
		RecycleMemory:   true,  // grows with every request it takes
		RecycleRequests: false, // healthy: overflow only until its replacement is ready
		RecycleManual:   false,
	} {
		if got := outAtOnce(kind); got != want {
			t.Errorf("%s: %v, want %v", kind, got, want)
		}
	}
}

// Each way a worker is recycled, in the core: a replacement starts at
// once; the worker leaves the rotation at once (a stuck or growing one)
// or only once its replacement is ready (a healthy one), so capacity
// holds.
func TestCoreRecycle(t *testing.T) {
	cases := []struct {
		name   string
		recyc  func(d *driver, id string)
		atOnce bool
	}{
		{"timeout", func(d *driver, id string) {
			d.do(evRecycle{id, RecycleReason{RecycleTimeout, "request over 30s"}, true})
		}, true},
		{"memory", func(d *driver, id string) {
			d.do(evMemory{map[string]int64{id: 110 << 20}})
		}, true},
		{"pyctl restart", func(d *driver, id string) {
			d.do(evRecycle{id, RecycleReason{RecycleManual, "pyctl restart"}, false})
		}, false},
		{"budget reported", func(d *driver, id string) { d.do(evBudgetSpent{id}) }, false},
		{"budget polled", func(d *driver, id string) {
			d.do(evTick{map[string]counters{id: {Requests: 1000}}})
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := running(t, 2)
			d.c.cfg.MemoryLimit = 100 << 20
			d.c.cfg.MaxRequests = 100
			for _, w := range d.c.workers {
				w.budget = 95
			}
			id := d.in(WorkerReady)[0]
			tc.recyc(d, id)
			if n := len(d.in(WorkerStarting)); n != 1 {
				t.Fatalf("%d replacements starting, want 1", n)
			}
			if out := d.c.find(id).state == WorkerDraining; out != tc.atOnce {
				t.Errorf("out of rotation at once: %v, want %v", out, tc.atOnce)
			}
			d.readyAll()
			if s := d.c.find(id).state; s != WorkerDraining {
				t.Errorf("after its replacement is ready: %s, want draining", s)
			}
			if d.c.restarts != 0 {
				t.Errorf("a recycle counted as a crash")
			}
		})
	}
}

// During a reload no worker is recycled for its requests (the reload
// replaces them all); once it ended, a budget held back is acted on.
func TestCoreBudgetHeldDuringReload(t *testing.T) {
	d := running(t, 1)
	d.c.cfg.MaxRequests = 100
	done := make(chan error, 1)
	d.do(evReload{newOp(d, done)})
	gen := d.c.gen + 1
	readyGen(d, gen)
	// The new worker serves while the old one drains, and spends its
	// budget.
	fresh := genIDs(d, gen)[0]
	d.do(evBudgetSpent{fresh})
	if d.c.find(fresh).recycle != nil {
		t.Fatal("recycled for its requests during a reload")
	}
	d.drainAll()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if w := d.c.find(fresh); w.recycle == nil || len(d.in(WorkerStarting)) != 1 {
		t.Errorf("the budget held back was not acted on once the reload ended")
	}
}
