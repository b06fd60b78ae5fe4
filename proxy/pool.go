package proxy

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/pyhost/pyhost/channel"
	"github.com/pyhost/pyhost/wsgiadapter"
)

var (
	// errUnavailable: the app has no worker and none is coming (503).
	errUnavailable = errors.New("app unavailable")
	// errFailing: the app is marked failing by the supervisor (503).
	errFailing = errors.New("app failing")
	// errQueueTimeout: no thread became free within queue_timeout (503).
	errQueueTimeout = errors.New("queue timeout")
)

// upstream is one worker process as the proxy sees it. Its mutable fields
// are guarded by the owning appPool's mutex.
type upstream struct {
	id      string
	pid     int
	socket  string
	threads int

	inflight int
	served   uint64
	draining bool
	gone     bool
	drained  bool // the drained event was sent
	idle     []*wsgiadapter.Conn
}

// appPool holds one app's workers, their idle connections and the queue of
// requests waiting for a free thread. One mutex guards it all: the
// critical sections are a few comparisons long.
type appPool struct {
	key string

	mu           sync.Mutex
	state        channel.AppState
	queueTimeout time.Duration
	workers      []*upstream
	waiters      []chan struct{} // FIFO; each buffered(1)

	onDrained func(app, worker string)
}

// lease is one request's hold on a worker thread.
type lease struct {
	w    *upstream
	conn *wsgiadapter.Conn // an idle pooled connection, or nil to dial
}

// acquire reserves a thread on the least busy worker, waiting in arrival
// order up to the queue timeout when all are busy.
func (p *appPool) acquire(ctx context.Context) (lease, error) {
	var timer *time.Timer
	var timeout <-chan time.Time
	for {
		p.mu.Lock()
		switch p.state {
		case channel.AppFailing:
			p.mu.Unlock()
			return lease{}, errFailing
		case channel.AppStopped:
			p.mu.Unlock()
			return lease{}, errUnavailable
		}
		if i := pickWorker(p.workers); i >= 0 {
			w := p.workers[i]
			w.inflight++
			var c *wsgiadapter.Conn
			if n := len(w.idle); n > 0 {
				c = w.idle[n-1]
				w.idle = w.idle[:n-1]
			}
			p.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return lease{w: w, conn: c}, nil
		}
		if p.state != channel.AppStarting && !p.hasServingWorker() {
			p.mu.Unlock()
			return lease{}, errUnavailable
		}
		wake := make(chan struct{}, 1)
		p.waiters = append(p.waiters, wake)
		queueTimeout := p.queueTimeout
		p.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(queueTimeout)
			timeout = timer.C
		}
		select {
		case <-wake:
		case <-timeout:
			p.dropWaiter(wake)
			return lease{}, errQueueTimeout
		case <-ctx.Done():
			p.dropWaiter(wake)
			timer.Stop()
			return lease{}, ctx.Err()
		}
	}
}

func (p *appPool) hasServingWorker() bool {
	for _, w := range p.workers {
		if !w.draining {
			return true
		}
	}
	return false
}

// dropWaiter removes a waiter that gave up; if it had been woken already,
// the wake-up is passed on so no free thread goes unnoticed.
func (p *appPool) dropWaiter(wake chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, c := range p.waiters {
		if c == wake {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			return
		}
	}
	select {
	case <-wake:
		p.wakeOneLocked()
	default:
	}
}

func (p *appPool) wakeOneLocked() {
	if len(p.waiters) == 0 {
		return
	}
	c := p.waiters[0]
	p.waiters = p.waiters[1:]
	c <- struct{}{}
}

func (p *appPool) wakeAllLocked() {
	for _, c := range p.waiters {
		c <- struct{}{}
	}
	p.waiters = nil
}

// release gives a thread back. conn is kept for reuse when it finished
// cleanly and its worker still takes requests; otherwise it is closed.
func (p *appPool) release(l lease, conn *wsgiadapter.Conn) {
	p.mu.Lock()
	w := l.w
	w.inflight--
	w.served++
	if conn != nil {
		if conn.Reusable() && !w.draining && !w.gone {
			w.idle = append(w.idle, conn)
		} else {
			conn.Close()
		}
	}
	drained := p.checkDrainedLocked(w)
	p.wakeOneLocked()
	p.mu.Unlock()
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

// dropConn is release for a lease whose worker could not be reached: the
// worker is probably dead, so its idle connections go too.
func (p *appPool) dropConn(l lease, conn *wsgiadapter.Conn) {
	if conn != nil {
		conn.Close()
	}
	p.release(l, nil)
}

// update applies the app's part of a new table.
func (p *appPool) update(a channel.App) {
	p.mu.Lock()
	p.state = a.State
	p.queueTimeout = a.QueueTimeout
	if p.queueTimeout <= 0 {
		p.queueTimeout = 30 * time.Second
	}
	old := make(map[string]*upstream, len(p.workers))
	for _, w := range p.workers {
		old[w.id] = w
	}
	next := make([]*upstream, 0, len(a.Workers))
	var drained []string
	for _, cw := range a.Workers {
		w, ok := old[cw.ID]
		if ok {
			delete(old, cw.ID)
		} else {
			w = &upstream{id: cw.ID, pid: cw.PID, socket: cw.Socket, threads: cw.Threads}
		}
		if w.threads <= 0 {
			w.threads = 1
		}
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
	p.wakeAllLocked()
	p.mu.Unlock()
	if p.onDrained != nil {
		for _, id := range drained {
			p.onDrained(p.key, id)
		}
	}
}

// stats adds the app's per-worker counters to out.
func (p *appPool) stats(out map[string]channel.WorkerStats) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.workers {
		out[w.id] = channel.WorkerStats{Served: w.served, Busy: w.inflight}
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
