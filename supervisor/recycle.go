package supervisor

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/control"
)

// RecycleKind names why a worker is replaced while it still runs.
type RecycleKind string

// Recycle reasons. Each is logged with the figure that triggered it.
const (
	RecycleMemory   RecycleKind = "memory"   // RSS over memory_limit
	RecycleRequests RecycleKind = "requests" // served max_requests
	RecycleTimeout  RecycleKind = "timeout"  // a request exceeded request_timeout
	RecycleManual   RecycleKind = "restart"  // pyctl restart
)

// RecycleReason is a decision to recycle, with its evidence.
type RecycleReason struct {
	Kind   RecycleKind
	Detail string // "rss 812MiB > limit 768MiB"
}

func (r RecycleReason) String() string { return string(r.Kind) + ": " + r.Detail }

// Limits are the per-worker limits of an app.
type Limits struct {
	MemoryLimit int64 // bytes; 0: none
	MaxRequests int   // 0: none
}

// WorkerFacts are what is known about one worker at a check.
type WorkerFacts struct {
	RSS    int64  // bytes; 0 when unknown
	Served uint64 // requests completed, from the proxy's polled counters
	// RequestBudget is this worker's own max_requests after jitter
	// (see RequestBudget); 0: none.
	RequestBudget int
	// BudgetSpent: the proxy reported the request that completed the
	// budget, which Served (polled) may not show yet.
	BudgetSpent bool
}

// CheckLimits is the pure decision "is this worker over its limits?".
func CheckLimits(lim Limits, f WorkerFacts) (RecycleReason, bool) {
	if lim.MemoryLimit > 0 && f.RSS > lim.MemoryLimit {
		return RecycleReason{RecycleMemory, fmt.Sprintf("rss %s > limit %s", FormatBytes(f.RSS), FormatBytes(lim.MemoryLimit))}, true
	}
	if f.RequestBudget > 0 && (f.BudgetSpent || f.Served >= uint64(f.RequestBudget)) {
		served := max(f.Served, uint64(f.RequestBudget))
		return RecycleReason{RecycleRequests, fmt.Sprintf("served %d requests (max_requests %d)", served, lim.MaxRequests)}, true
	}
	return RecycleReason{}, false
}

// PlanRecycles decides, for one check, which of an app's workers to
// recycle (by index into facts, in order): every worker over a limit.
//
// A worker over its request budget goes at once, even when another is
// already being replaced: it never serves more than its budget plus what
// reaches it while its replacement starts (docs/config.md,
// max_requests), and a recycle keeps capacity anyway (the old worker
// serves until the new one is ready).
// What keeps a group from recycling together is the jitter of
// RequestBudget, now that the proxy reports each budget the moment it is
// spent; the rule of one requests-recycle at a time was for a check that
// polled once a second, when every worker passed its budget between two
// checks. During a reload (reloading) no worker is recycled for its
// requests: the reload replaces them all, and a replacement started now
// would be of the generation on its way out. Memory is never held back.
func PlanRecycles(lim Limits, facts []WorkerFacts, reloading bool) []PlannedRecycle {
	var plan []PlannedRecycle
	for i, f := range facts {
		r, ok := CheckLimits(lim, f)
		if !ok || (r.Kind == RecycleRequests && reloading) {
			continue
		}
		plan = append(plan, PlannedRecycle{Index: i, Reason: r})
	}
	return plan
}

// PlannedRecycle is one worker PlanRecycles chose, by index, and why.
type PlannedRecycle struct {
	Index  int
	Reason RecycleReason
}

// RequestBudget spreads max_requests over a worker group: each worker
// gets its own budget between 7/8 of max and max, so workers started
// together do not all recycle at the same moment. rnd returns [0,1).
func RequestBudget(max int, rnd func() float64) int {
	if max <= 0 {
		return 0
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	spread := max / 8
	return max - int(float64(spread)*rnd())
}

// FormatBytes renders a byte count the way config sizes are written.
func FormatBytes(n int64) string {
	const unit = 1024
	switch {
	case n >= unit*unit*unit:
		return fmt.Sprintf("%.1fGiB", float64(n)/(unit*unit*unit))
	case n >= unit*unit:
		return fmt.Sprintf("%dMiB", n/(unit*unit))
	case n >= unit:
		return fmt.Sprintf("%dKiB", n/unit)
	}
	return fmt.Sprintf("%dB", n)
}

// The hard memory ceiling (docs/design.md, "A hard memory ceiling"). memory_limit recycles a
// worker gracefully; one that keeps growing while it drains would
// otherwise grow until graceful_timeout (a runaway request reached 2 GB
// in 8 s under a 200 MiB limit), enough to wake the host's OOM killer.
// So a worker whose RSS passes CeilingFactor × memory_limit is killed at
// once, whatever it is doing, as mod_wsgi's memory-limit and uWSGI's
// evil-reload-on-rss stop one. (A per-app cgroup's memory.max will do it
// in the kernel once containment exists; this is the polled fallback.)
const (
	// ceilingNum/ceilingDen is the factor: 1.5.
	ceilingNum, ceilingDen = 3, 2
	// assumedGrowth is the growth rate the polling keeps up with: a
	// worker's RSS is read again before a worker growing this fast could
	// pass its ceiling. Faster growth overshoots by the difference times
	// the interval.
	assumedGrowth = 512 << 20 // bytes per second
	// minMemoryCheck bounds how often one worker is read: three system
	// calls each, against one RSS read a second when memory is far off.
	minMemoryCheck = 20 * time.Millisecond
)

// MemoryCeiling is the RSS above which a worker with memory_limit limit is
// killed without waiting for graceful_timeout.
func MemoryCeiling(limit int64) int64 { return limit / ceilingDen * ceilingNum }

// MemoryAction is what CheckMemory decides for one worker.
type MemoryAction int

// What to do about a worker's memory.
const (
	MemoryOK      MemoryAction = iota
	MemoryRecycle              // over memory_limit: replace it gracefully
	MemoryKill                 // over the ceiling: kill it now
)

// CheckMemory is the pure decision on a worker's RSS against its limit
// (0: none).
func CheckMemory(limit, rss int64) MemoryAction {
	switch {
	case limit <= 0:
		return MemoryOK
	case rss > MemoryCeiling(limit):
		return MemoryKill
	case rss > limit:
		return MemoryRecycle
	}
	return MemoryOK
}

// NextMemoryCheck is how long a worker's RSS may go unread: the time a
// worker growing at assumedGrowth would need to pass its ceiling, within
// [minMemoryCheck, most]. A worker far below its limit is read every
// most (the poll interval, a second); one near or over it, many
// times a second, so its ceiling holds. With no limit: most.
func NextMemoryCheck(limit, rss int64, most time.Duration) time.Duration {
	if limit <= 0 {
		return most
	}
	left := MemoryCeiling(limit) - rss
	d := time.Duration(float64(left) / assumedGrowth * float64(time.Second))
	return min(most, max(d, minMemoryCheck))
}

// --- the core's recycling ---

// recycle marks w for replacement (memory_limit, max_requests,
// request_timeout, pyctl restart): a new worker starts first, and w is
// drained only once the app has its full count of ready workers without
// it, so capacity never drops; or at once, for the reasons of outAtOnce.
func (c *core) recycle(w *worker, r RecycleReason) {
	if w.recycle != nil || w.state != WorkerReady {
		return
	}
	w.recycle = &r
	c.count(reasonOf(r.Kind))
	c.log(hclog.Info, "recycling worker", "worker", w.id, "pid", w.pid, "reason", string(r.Kind), "detail", r.Detail)
	c.note("recycling worker %d: %s", w.pid, r.Detail)
	c.reconcile()
	if outAtOnce(r.Kind) {
		c.drainWorker(w)
	}
	c.retireRecycled()
}

// outAtOnce reports whether a worker recycled for kind leaves the
// proxy's rotation the moment it is decided, before its replacement is
// ready (docs/design.md, "When a worker fails"): a worker with a stuck
// thread (timeout) would hold new connections in its backlog behind that
// thread, and one over its memory limit grows with every request it
// takes. Other workers and the queue serve until the replacement is
// ready. A worker that spent its request budget is healthy: it serves on
// until then, taking only what no other worker has a free thread for
// (the proxy's rule for a spent worker), so capacity holds; so does one
// restarted by pyctl.
func outAtOnce(kind RecycleKind) bool {
	return kind == RecycleTimeout || kind == RecycleMemory
}

// retireRecycled drains recycled workers while the app has enough ready
// workers without them.
func (c *core) retireRecycled() {
	ready := 0
	for _, w := range c.workers {
		if w.gen == c.gen && w.state == WorkerReady && w.recycle == nil {
			ready++
		}
	}
	for _, w := range c.workers {
		if w.recycle != nil && w.state == WorkerReady && ready >= c.cfg.Processes {
			c.drainWorker(w)
		}
	}
}

// onRecycle replaces a worker on request (a request on it timed out,
// say); dump asks it for its threads' stacks first, so the log shows
// where it hung.
func (c *core) onRecycle(ev evRecycle) {
	w := c.find(ev.id)
	if w == nil {
		return
	}
	if ev.dump && !w.dumped && (w.state == WorkerReady || w.state == WorkerDraining) {
		w.dumped = true
		c.log(hclog.Warn, "dumping the stuck worker's Python stacks to the app log", "worker", w.id, "pid", w.pid)
		c.emit(effDump{w.id, "pyhost: " + ev.reason.Detail + "; stacks of every thread follow"})
	}
	c.recycle(w, ev.reason)
}

// checkLimits recycles the ready workers that are over their request
// budget. A worker's budget is known the moment the proxy reports it
// (evBudgetSpent); served, on the tick, is the proxy's polled counters:
// the backstop that still recycles a worker whose budget report was
// lost. Memory has a check of its own, on its own clock (checkMemory).
func (c *core) checkLimits(served map[string]counters) {
	lim := Limits{MaxRequests: c.cfg.MaxRequests}
	var candidates []*worker
	var facts []WorkerFacts
	for _, w := range c.workers {
		if w.state != WorkerReady || w.recycle != nil {
			continue
		}
		f := WorkerFacts{RequestBudget: w.budget, BudgetSpent: w.spent}
		if w.budget > 0 {
			f.Served = served[w.id].Requests
		}
		candidates = append(candidates, w)
		facts = append(facts, f)
	}
	for _, p := range PlanRecycles(lim, facts, c.reload != nil) {
		c.recycle(candidates[p.Index], p.Reason)
	}
}

// checkMemory judges the RSS of every watched worker (memoryWatched):
// one over its memory_limit is recycled, and leaves the rotation at once;
// one over the hard ceiling (MemoryCeiling) is killed at once, whatever
// its state, without waiting for graceful_timeout. It returns when to
// look again: sooner for a worker nearer its ceiling (NextMemoryCheck).
func (c *core) checkMemory(rss map[string]int64) time.Duration {
	next := c.poll
	// A copy: a recycle starts a replacement, which appends a worker.
	for _, w := range slices.Clone(c.workers) {
		limit := c.cfgOf(w).MemoryLimit
		r, ok := rss[w.id]
		if limit <= 0 || !ok || w.state == WorkerGone || w.killedFor != "" {
			continue
		}
		switch CheckMemory(limit, r) {
		case MemoryKill:
			c.killOverCeiling(w, r, limit)
			continue
		case MemoryRecycle:
			if w.state == WorkerReady && w.recycle == nil {
				c.recycle(w, RecycleReason{RecycleMemory, fmt.Sprintf("rss %s > limit %s", FormatBytes(r), FormatBytes(limit))})
			}
		}
		next = min(next, NextMemoryCheck(limit, r, next))
	}
	return next
}

// killOverCeiling kills w, whose RSS passed its hard ceiling. A ready
// worker is counted as recycled, not crashed: its replacement starts now
// and the restart backoff does not apply.
func (c *core) killOverCeiling(w *worker, rss, limit int64) {
	ceiling := MemoryCeiling(limit)
	w.killedFor = fmt.Sprintf("killed: rss %s passed the hard memory ceiling %s (1.5 x memory_limit %s)", FormatBytes(rss), FormatBytes(ceiling), FormatBytes(limit))
	c.log(hclog.Warn, "worker over its hard memory ceiling; killing it without waiting for graceful_timeout", "worker", w.id, "pid", w.pid, "rss", FormatBytes(rss), "ceiling", FormatBytes(ceiling), "memory_limit", FormatBytes(limit))
	c.note("worker %d %s; not waited for", w.pid, w.killedFor)
	if w.state == WorkerReady && w.recycle == nil {
		w.recycle = &RecycleReason{RecycleMemory, w.killedFor}
		c.count(control.RestartMemory)
		c.reconcile()
	}
	c.emit(effKill{w.id})
}
