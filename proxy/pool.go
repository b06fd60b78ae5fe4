package proxy

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/proxymsg"
	"github.com/pyhost/pyhost/wsgiadapter"
)

var (
	// errUnavailable: the app has no worker and none is coming (503).
	errUnavailable = errors.New("app unavailable")
	// errFailing: the app is marked failing by the supervisor (503).
	errFailing = errors.New("app failing")
	// errQueueTimeout: no thread became free within queue_timeout (503).
	errQueueTimeout = errors.New("queue timeout")
	// errQueueFull: queue_limit requests are already waiting (503).
	errQueueFull = errors.New("queue full")
)

// upstream is one worker process as the proxy sees it. Its mutable fields
// are guarded by the owning appPool's mutex.
type upstream struct {
	id      string
	pid     int
	socket  string
	threads int // the app's threads, at least 1 (config validates it)

	inflight int
	served   uint64
	draining bool
	gone     bool
	drained  bool // the drained event was sent
	idle     []*wsgiadapter.Conn

	// budget is how many requests the worker serves before it is
	// recycled; 0: no limit. spent is set, and the budget event sent,
	// when served reaches it: from then on the worker only takes what no
	// other worker has a free thread for, until the supervisor drains it.
	budget int
	spent  bool

	// down: the proxy saw this worker die (its socket refused a
	// connection) or hang (a request on it passed request_timeout). It
	// takes no new request from that moment, whatever the table says:
	// the master learns of it a moment later and its table drops or
	// drains the worker. Worker ids are never reused, so the mark cannot
	// fall on a successor.
	down bool
}

// routable reports whether w may be given a new request at all.
func (w *upstream) routable() bool { return !w.draining && !w.down }

// appPool holds one app's workers, their idle connections and the queue of
// requests waiting for a free thread. One mutex guards it all: the
// critical sections are a few comparisons long.
//
// The queue is strictly first come, first served: a thread that frees up
// while requests wait is handed to the first of them directly, so a newly
// arriving request can never take it and send a waiter to the back. (An
// earlier version only woke the waiter, and the tail latency showed it.)
type appPool struct {
	key string

	mu             sync.Mutex
	state          proxymsg.AppState
	queueTimeout   time.Duration
	startupTimeout time.Duration
	queueLimit     int
	workers        []*upstream
	waiters        []chan grant // FIFO; each buffered(1)
	wakeSent       bool         // EventWake sent for this idle period

	onDrained func(app, worker string)
	onWake    func(app string)
	// onBudget is called once per worker, outside the lock, when it
	// completes its request budget; nil: not reported.
	onBudget func(app, worker string)

	// logs keeps lines that come once per request (a full queue under a
	// flood) to one per second, with a count.
	logs rateLog

	// metrics, when set, are the app's instruments (metrics.go); fixed
	// when the pool is made.
	metrics *appMetrics
}

// lease is one request's hold on a worker thread.
type lease struct {
	w    *upstream
	conn *wsgiadapter.Conn // an idle pooled connection, or nil to dial
	// again is the request, once delivered, when it may be sent again
	// (its body is held whole); nil otherwise.
	again *delivery
}

// grant is what a waiting request is given: a lease, or why it cannot
// have one.
type grant struct {
	l   lease
	err error
}

// acquire reserves a thread on the least busy worker, waiting in arrival
// order up to the queue timeout when all are busy.
func (p *appPool) acquire(ctx context.Context) (lease, error) {
	return p.acquireAsked(ctx, time.Now())
}

// acquireAsked is acquire for a request that first asked at asked: a
// request retried after its worker turned out dead waits only what is
// left of its queue timeout, not a new one.
func (p *appPool) acquireAsked(ctx context.Context, asked time.Time) (lease, error) {
	p.mu.Lock()
	if err := p.refuseLocked(); err != nil {
		p.mu.Unlock()
		return lease{}, err
	}
	if len(p.waiters) == 0 {
		if i := p.pickLocked(); i >= 0 {
			l := p.reserveLocked(p.workers[i])
			p.mu.Unlock()
			if p.metrics != nil {
				p.metrics.queueWait.Observe(0)
			}
			return l, nil
		}
	}
	if len(p.waiters) >= p.queueLimit {
		p.mu.Unlock()
		return lease{}, errQueueFull
	}
	wait := make(chan grant, 1)
	p.waiters = append(p.waiters, wait)
	timeout := p.queueTimeout
	wake := false
	if p.state == proxymsg.AppIdle || p.state == proxymsg.AppStarting || !p.hasServingWorker() {
		// Waiting for a worker to start, not for one to finish.
		timeout = max(timeout, p.startupTimeout)
		if p.state == proxymsg.AppIdle && !p.wakeSent {
			p.wakeSent, wake = true, true
		}
	}
	p.mu.Unlock()
	if wake && p.onWake != nil {
		p.onWake(p.key)
	}

	timer := time.NewTimer(time.Until(asked.Add(timeout)))
	defer timer.Stop()
	if p.metrics != nil {
		// However the wait ends: a timeout waited too.
		defer func() { p.metrics.queueWait.Observe(time.Since(asked).Seconds()) }()
	}
	var err error
	select {
	case g := <-wait:
		return g.l, g.err
	case <-timer.C:
		err = errQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	if p.dropWaiter(wait) {
		return lease{}, err
	}
	// A lease was granted just as we gave up; hand it back.
	if g := <-wait; g.err == nil {
		p.giveBack(g.l, g.l.conn, false)
	}
	return lease{}, err
}

// refuseLocked says why the app takes no request now, or nil.
func (p *appPool) refuseLocked() error {
	switch p.state {
	case proxymsg.AppFailing:
		return errFailing
	case proxymsg.AppStopped:
		return errUnavailable
	case proxymsg.AppStarting, proxymsg.AppIdle:
		return nil
	}
	if !p.hasServingWorker() && !p.hasDownWorker() {
		// A worker the proxy found dead or stuck is not in this count,
		// but the master is about to replace it: its requests wait for
		// that, as they would while the app starts.
		return errUnavailable
	}
	return nil
}

// reserveLocked takes a thread of w, with an idle connection if it has one.
func (p *appPool) reserveLocked(w *upstream) lease {
	w.inflight++
	var c *wsgiadapter.Conn
	if n := len(w.idle); n > 0 {
		c = w.idle[n-1]
		w.idle = w.idle[:n-1]
	}
	return lease{w: w, conn: c}
}

// pickLocked is pickWorker, sparing workers that spent their request
// budget: one takes a request only when no other worker has a free
// thread. Its replacement is starting meanwhile (S4), and capacity is
// kept without adding to its overshoot. The filtered copy is made only in
// that short window.
func (p *appPool) pickLocked() int {
	i := pickWorker(p.workers)
	if i < 0 || !p.workers[i].spent {
		return i
	}
	fresh := make([]*upstream, 0, len(p.workers))
	for _, w := range p.workers {
		if !w.spent {
			fresh = append(fresh, w)
		}
	}
	if j := pickWorker(fresh); j >= 0 {
		return slices.Index(p.workers, fresh[j])
	}
	return i
}

// spendLocked marks w spent when it has served its budget, and reports
// whether the budget event must be sent now (once per worker). A worker
// already draining or gone is on its way out and is not reported.
func (p *appPool) spendLocked(w *upstream) bool {
	if w.spent || w.budget <= 0 || w.served < uint64(w.budget) || w.draining || w.gone {
		return false
	}
	w.spent = true
	return true
}

func (p *appPool) hasServingWorker() bool {
	for _, w := range p.workers {
		if w.routable() {
			return true
		}
	}
	return false
}

// hasDownWorker reports a worker the proxy took out of rotation on its
// own evidence and the master has not drained or dropped yet.
func (p *appPool) hasDownWorker() bool {
	for _, w := range p.workers {
		if w.down && !w.draining {
			return true
		}
	}
	return false
}

// dropWaiter removes a waiter that gave up. It reports false when the
// waiter was no longer queued: a grant is then waiting in its channel.
func (p *appPool) dropWaiter(wait chan grant) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, c := range p.waiters {
		if c == wait {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// dispatchLocked hands free threads to waiting requests in arrival order,
// and fails them all when the app stopped taking requests.
func (p *appPool) dispatchLocked() {
	if err := p.refuseLocked(); err != nil {
		for _, c := range p.waiters {
			c <- grant{err: err}
		}
		p.waiters = nil
		return
	}
	for len(p.waiters) > 0 {
		i := p.pickLocked()
		if i < 0 {
			return
		}
		c := p.waiters[0]
		p.waiters = p.waiters[1:]
		c <- grant{l: p.reserveLocked(p.workers[i])}
	}
}

// release gives a thread back after a request was served. conn is kept
// for reuse when it finished cleanly and its worker still takes
// requests; otherwise it is closed.
func (p *appPool) release(l lease, conn *wsgiadapter.Conn) { p.giveBack(l, conn, true) }

func (p *appPool) giveBack(l lease, conn *wsgiadapter.Conn, served bool) {
	p.mu.Lock()
	w := l.w
	w.inflight--
	spent := false
	if served {
		w.served++
		spent = p.spendLocked(w)
	}
	if conn != nil {
		if conn.Reusable() && w.routable() && !w.gone {
			w.idle = append(w.idle, conn)
		} else {
			conn.Close()
		}
	}
	drained := p.checkDrainedLocked(w)
	p.dispatchLocked()
	p.mu.Unlock()
	if spent && p.onBudget != nil {
		p.onBudget(p.key, w.id)
	}
	if drained && p.onDrained != nil {
		p.onDrained(p.key, w.id)
	}
}

// checkDrainedLocked closes a draining worker's connections once it is
// idle and reports whether the drained event must be sent now.
func (p *appPool) checkDrainedLocked(w *upstream) bool {
	if !w.draining || w.inflight > 0 || w.drained {
		return false
	}
	for _, c := range w.idle {
		c.Close()
	}
	w.idle = nil
	w.drained = true
	return true
}

// dropConn is release for a lease whose request was not delivered on
// conn (nil: none was made): conn is closed, and nothing else of the
// worker's. A stale pooled connection says little about the others (the
// worker closed that one, or died; a refused dial tells which, see
// workerGone).
func (p *appPool) dropConn(l lease, conn *wsgiadapter.Conn) {
	if conn != nil {
		conn.Close()
	}
	p.giveBack(l, nil, false)
}

// unused is release for a lease whose request never went out for a
// reason of its own (it cannot be encoded): conn is as good as before and
// goes back to the pool.
func (p *appPool) unused(l lease, conn *wsgiadapter.Conn) { p.giveBack(l, conn, false) }

// notRead is dropConn for a lease whose worker closed the connection
// with the request unread (wsgiadapter.ErrNotRead). A worker does that
// when it dies, so its idle connections are closed too: the next request
// it is picked for dials, and a dead worker's refusal takes it out of
// rotation (workerGone). It is not marked down on this alone: a live
// worker may close a connection too (on its way out, or at a protocol
// error), and nothing would bring it back.
func (p *appPool) notRead(l lease, conn *wsgiadapter.Conn) {
	if conn != nil {
		conn.Close()
	}
	p.mu.Lock()
	for _, c := range l.w.idle {
		c.Close()
	}
	l.w.idle = nil
	p.mu.Unlock()
	p.giveBack(l, nil, false)
}

// workerGone is dropConn for a lease whose worker refused a connection:
// nobody listens on its socket any more, so it died (or is on its way
// out). It is out of rotation at once, with every idle connection it
// had; the request is retried elsewhere. first is true for the call
// that took it out (the one to log it).
func (p *appPool) workerGone(l lease) (first bool) {
	p.mu.Lock()
	w := l.w
	first = !w.down
	p.setDownLocked(w)
	w.inflight--
	drained := p.checkDrainedLocked(w)
	p.dispatchLocked()
	p.mu.Unlock()
	if drained && p.onDrained != nil {
		p.onDrained(p.key, w.id)
	}
	return first
}

// timedOut takes the worker of a request that passed request_timeout out
// of rotation at once (S5): one of its threads is stuck, and a new
// connection would wait in its backlog behind it. The master, told by
// EventTimeout, drains and replaces it. The lease itself is released as
// usual afterwards.
func (p *appPool) timedOut(l lease) {
	p.mu.Lock()
	p.setDownLocked(l.w)
	p.mu.Unlock()
}

func (p *appPool) setDownLocked(w *upstream) {
	w.down = true
	for _, c := range w.idle {
		c.Close()
	}
	w.idle = nil
}

// update applies the app's part of a new table.
func (p *appPool) update(a proxymsg.App) {
	p.mu.Lock()
	if a.State != proxymsg.AppIdle {
		p.wakeSent = false
	}
	p.state = a.State
	// The master sends the app's own values, which config validated
	// (both positive) and defaulted; the proxy has no defaults of its
	// own. A table that leaves them out (one written by hand, in tests)
	// gets config's built-in ones, not a queue of nothing.
	p.queueTimeout = cmp.Or(a.QueueTimeout, config.DefaultQueueTimeout)
	p.startupTimeout = a.StartupTimeout
	p.queueLimit = cmp.Or(a.QueueLimit, config.DefaultQueueLimit)
	old := make(map[string]*upstream, len(p.workers))
	for _, w := range p.workers {
		old[w.id] = w
	}
	next := make([]*upstream, 0, len(a.Workers))
	var drained, spent []string
	for _, cw := range a.Workers {
		w, ok := old[cw.ID]
		if ok {
			delete(old, cw.ID)
		} else {
			w = &upstream{id: cw.ID, pid: cw.PID, socket: cw.Socket, threads: cw.Threads}
		}
		w.budget = cw.RequestBudget
		if cw.Draining && !w.draining {
			w.draining = true
			for _, c := range w.idle {
				c.Close()
			}
			w.idle = nil
		}
		if p.checkDrainedLocked(w) {
			drained = append(drained, w.id)
		}
		if p.spendLocked(w) { // a budget lowered below what it served
			spent = append(spent, w.id)
		}
		next = append(next, w)
	}
	for _, w := range old {
		w.gone = true
		for _, c := range w.idle {
			c.Close()
		}
		w.idle = nil
	}
	p.workers = next
	p.dispatchLocked()
	p.mu.Unlock()
	if p.onBudget != nil {
		for _, id := range spent {
			p.onBudget(p.key, id)
		}
	}
	if p.onDrained != nil {
		for _, id := range drained {
			p.onDrained(p.key, id)
		}
	}
}

// stats adds the app's per-worker counters to out.
func (p *appPool) stats(out map[string]proxymsg.WorkerStats) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.workers {
		out[w.id] = proxymsg.WorkerStats{Served: w.served, Busy: w.inflight}
	}
}

// closeAll closes every idle connection (proxy shutdown).
func (p *appPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.workers {
		for _, c := range w.idle {
			c.Close()
		}
		w.idle = nil
	}
}
