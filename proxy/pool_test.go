package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/proxymsg"
)

func newTestPool(state proxymsg.AppState, queue time.Duration, workers ...proxymsg.Worker) (*appPool, chan string) {
	drained := make(chan string, 16)
	p := &appPool{key: "u/app", onDrained: func(_, id string) { drained <- id }}
	p.update(proxymsg.App{Key: "u/app", State: state, QueueTimeout: queue, Workers: workers})
	return p, drained
}

func TestAcquireSpreadsByLeastBusy(t *testing.T) {
	p, _ := newTestPool(proxymsg.AppRunning, time.Second,
		proxymsg.Worker{ID: "a", Threads: 2}, proxymsg.Worker{ID: "b", Threads: 2})
	var got []string
	for i := 0; i < 4; i++ {
		l, err := p.acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, l.w.id)
	}
	want := []string{"a", "b", "a", "b"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("leases went to %v, want %v", got, want)
		}
	}
}

func TestAcquireQueuesInOrderAndTimesOut(t *testing.T) {
	p, _ := newTestPool(proxymsg.AppRunning, time.Hour, proxymsg.Worker{ID: "a", Threads: 1})
	held, err := p.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Two waiters; the first to arrive must be served first.
	order := make(chan int, 2)
	var started sync.WaitGroup
	for i := 1; i <= 2; i++ {
		started.Add(1)
		go func() {
			started.Done()
			l, err := p.acquire(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			order <- i
			p.release(l, nil)
		}()
		started.Wait()
		waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.waiters) == i })
	}
	p.release(held, nil)
	if a, b := <-order, <-order; a != 1 || b != 2 {
		t.Fatalf("served in order %d, %d; want 1, 2", a, b)
	}

	p2, _ := newTestPool(proxymsg.AppRunning, 20*time.Millisecond, proxymsg.Worker{ID: "a", Threads: 1})
	if _, err := p2.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := p2.acquire(context.Background()); !errors.Is(err, errQueueTimeout) {
		t.Fatalf("acquire on a full app: %v, want errQueueTimeout", err)
	}
	p2.mu.Lock()
	defer p2.mu.Unlock()
	if len(p2.waiters) != 0 {
		t.Fatalf("a timed-out waiter stayed queued")
	}
}

func TestAcquireCancelledPassesWakeup(t *testing.T) {
	p, _ := newTestPool(proxymsg.AppRunning, time.Hour, proxymsg.Worker{ID: "a", Threads: 1})
	held, _ := p.acquire(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := p.acquire(ctx); errc <- err }()
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.waiters) == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire: %v", err)
	}
	p.release(held, nil)
	if _, err := p.acquire(context.Background()); err != nil {
		t.Fatalf("thread lost after a cancelled waiter: %v", err)
	}
}

func TestAcquireUnavailable(t *testing.T) {
	cases := []struct {
		state   proxymsg.AppState
		workers []proxymsg.Worker
		want    error
	}{
		{proxymsg.AppFailing, []proxymsg.Worker{{ID: "a", Threads: 1}}, errFailing},
		{proxymsg.AppStopped, nil, errUnavailable},
		{proxymsg.AppRunning, nil, errUnavailable},
		{proxymsg.AppRunning, []proxymsg.Worker{{ID: "a", Threads: 1, Draining: true}}, errUnavailable},
	}
	for _, c := range cases {
		p, _ := newTestPool(c.state, time.Hour, c.workers...)
		if _, err := p.acquire(context.Background()); !errors.Is(err, c.want) {
			t.Errorf("state %s with %d workers: %v, want %v", c.state, len(c.workers), err, c.want)
		}
	}
}

func TestStartingAppQueuesUntilWorkerArrives(t *testing.T) {
	p, _ := newTestPool(proxymsg.AppStarting, time.Hour)
	got := make(chan error, 1)
	go func() { _, err := p.acquire(context.Background()); got <- err }()
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.waiters) == 1 })
	p.update(proxymsg.App{Key: "u/app", State: proxymsg.AppRunning, QueueTimeout: time.Hour, Workers: []proxymsg.Worker{{ID: "a", Threads: 1}}})
	if err := <-got; err != nil {
		t.Fatalf("queued request after the worker arrived: %v", err)
	}
}

func TestDrainReportsWhenIdle(t *testing.T) {
	ws := []proxymsg.Worker{{ID: "a", Threads: 2}, {ID: "b", Threads: 2}}
	p, drained := newTestPool(proxymsg.AppRunning, time.Hour, ws...)
	l, _ := p.acquire(context.Background()) // on a
	ws[0].Draining = true
	p.update(proxymsg.App{Key: "u/app", State: proxymsg.AppRunning, QueueTimeout: time.Hour, Workers: ws})
	select {
	case id := <-drained:
		t.Fatalf("worker %s reported drained with a request in flight", id)
	default:
	}
	if l2, _ := p.acquire(context.Background()); l2.w.id != "b" {
		t.Fatalf("a draining worker got a new request")
	}
	p.release(l, nil)
	if id := <-drained; id != "a" {
		t.Fatalf("drained %s, want a", id)
	}
	// An idle worker marked draining reports at once.
	ws[1].Draining = true
	p2, drained2 := newTestPool(proxymsg.AppRunning, time.Hour, ws...)
	_ = p2
	if len(drained2) != 2 {
		t.Fatalf("idle draining workers reported %d times, want 2", len(drained2))
	}
}

// waitFor polls a condition on in-memory state that has no channel to
// wait on (the length of a queue). Bounded; never a timing assumption.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFreedThreadGoesToTheFirstWaiter(t *testing.T) {
	p, _ := newTestPool(proxymsg.AppRunning, time.Hour, proxymsg.Worker{ID: "a", Threads: 1})
	held, _ := p.acquire(context.Background())
	got := make(chan error, 1)
	go func() { _, err := p.acquire(context.Background()); got <- err }()
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.waiters) == 1 })
	p.release(held, nil)
	// A request arriving right after the release must not take the thread
	// that was handed to the waiter: it queues, and here gives up at once.
	late, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.acquire(late); !errors.Is(err, context.Canceled) {
		t.Fatalf("a late arrival got the freed thread: %v", err)
	}
	if err := <-got; err != nil {
		t.Fatalf("the waiter: %v", err)
	}
}

func TestFailingAppFailsWaiters(t *testing.T) {
	p, _ := newTestPool(proxymsg.AppRunning, time.Hour, proxymsg.Worker{ID: "a", Threads: 1})
	p.acquire(context.Background())
	got := make(chan error, 1)
	go func() { _, err := p.acquire(context.Background()); got <- err }()
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.waiters) == 1 })
	p.update(proxymsg.App{Key: "u/app", State: proxymsg.AppFailing, QueueTimeout: time.Hour, Workers: []proxymsg.Worker{{ID: "a", Threads: 1}}})
	if err := <-got; !errors.Is(err, errFailing) {
		t.Fatalf("waiter of a failing app: %v, want errFailing", err)
	}
}

// newBudgetPool is newTestPool that also records budget events.
func newBudgetPool(workers ...proxymsg.Worker) (*appPool, chan string) {
	spent := make(chan string, 16)
	p := &appPool{key: "u/app", onBudget: func(app, id string) {
		if app == "u/app" {
			spent <- id
		}
	}}
	p.update(proxymsg.App{Key: "u/app", State: proxymsg.AppRunning, QueueTimeout: time.Hour, Workers: workers})
	return p, spent
}

// budgetEvents is what was reported so far, without waiting: the event
// is sent by the call that completes the request, before it returns.
func budgetEvents(c chan string) []string {
	var got []string
	for {
		select {
		case id := <-c:
			got = append(got, id)
		default:
			return got
		}
	}
}

func TestBudgetReportedOnceWhenSpent(t *testing.T) {
	ws := []proxymsg.Worker{{ID: "a", Threads: 2, RequestBudget: 3}}
	p, spent := newBudgetPool(ws...)
	serve := func() {
		l, err := p.acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		p.release(l, nil)
	}
	serve()
	// A request that never reached the worker is not served.
	l, _ := p.acquire(context.Background())
	p.dropConn(l, nil)
	serve()
	if got := budgetEvents(spent); len(got) != 0 {
		t.Fatalf("budget reported after 2 of 3 requests: %v", got)
	}
	// Two in flight as the budget runs out: the first to complete spends
	// it, the second is the overshoot and is not reported again.
	l1, _ := p.acquire(context.Background())
	l2, _ := p.acquire(context.Background())
	p.release(l1, nil)
	if got := budgetEvents(spent); len(got) != 1 || got[0] != "a" {
		t.Fatalf("at the budget: events %v, want [a]", got)
	}
	p.release(l2, nil)
	serve()
	// A new table with the same worker neither forgets nor repeats it.
	p.update(proxymsg.App{Key: "u/app", State: proxymsg.AppRunning, QueueTimeout: time.Hour, Workers: ws})
	serve()
	if got := budgetEvents(spent); len(got) != 0 {
		t.Fatalf("past the budget: events %v, want none", got)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.workers[0]; w.served != 6 || !w.spent {
		t.Fatalf("served %d spent %v, want 6 true", w.served, w.spent)
	}
}

func TestBudgetNotReported(t *testing.T) {
	// No budget: never.
	p, spent := newBudgetPool(proxymsg.Worker{ID: "a", Threads: 1})
	for i := 0; i < 100; i++ {
		l, _ := p.acquire(context.Background())
		p.release(l, nil)
	}
	// Draining: on its way out already.
	ws := []proxymsg.Worker{{ID: "b", Threads: 1, RequestBudget: 1}, {ID: "c", Threads: 1}}
	p2, spent2 := newBudgetPool(ws...)
	l, _ := p2.acquire(context.Background()) // on b
	ws[0].Draining = true
	p2.update(proxymsg.App{Key: "u/app", State: proxymsg.AppRunning, QueueTimeout: time.Hour, Workers: ws})
	p2.release(l, nil)
	if got := append(budgetEvents(spent), budgetEvents(spent2)...); len(got) != 0 {
		t.Fatalf("events %v, want none", got)
	}
}

func TestBudgetLoweredBelowServedIsReported(t *testing.T) {
	ws := []proxymsg.Worker{{ID: "a", Threads: 1}}
	p, spent := newBudgetPool(ws...)
	for i := 0; i < 5; i++ {
		l, _ := p.acquire(context.Background())
		p.release(l, nil)
	}
	ws[0].RequestBudget = 4
	p.update(proxymsg.App{Key: "u/app", State: proxymsg.AppRunning, QueueTimeout: time.Hour, Workers: ws})
	if got := budgetEvents(spent); len(got) != 1 || got[0] != "a" {
		t.Fatalf("events %v, want [a]", got)
	}
}

func TestSpentWorkerTakesOnlyOverflow(t *testing.T) {
	p, spent := newBudgetPool(proxymsg.Worker{ID: "a", Threads: 2, RequestBudget: 1}, proxymsg.Worker{ID: "b", Threads: 1})
	l, _ := p.acquire(context.Background())
	if l.w.id != "a" {
		t.Fatalf("first request on %s, want a (ties go to the first)", l.w.id)
	}
	p.release(l, nil)
	<-spent
	// a is idle and first, but spent: b takes the next request, and a
	// only what b has no thread for. Capacity stays whole.
	var got []string
	for i := 0; i < 3; i++ {
		l, err := p.acquire(context.Background())
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got = append(got, l.w.id)
	}
	if fmt.Sprint(got) != "[b a a]" {
		t.Fatalf("requests went to %v, want [b a a]", got)
	}
}

func TestWorkerGoneIsOutOfRotationAtOnce(t *testing.T) {
	p, drained := newTestPool(proxymsg.AppRunning, time.Hour,
		proxymsg.Worker{ID: "a", Threads: 2}, proxymsg.Worker{ID: "b", Threads: 2})
	l, _ := p.acquire(context.Background())
	if l.w.id != "a" {
		t.Fatalf("first lease on %s, want a", l.w.id)
	}
	if !p.workerGone(l) {
		t.Fatal("workerGone did not report the first call")
	}
	// a is idle and first in the list, the least busy by count: without
	// the mark it would take every request and fail each one.
	for i := 0; i < 2; i++ {
		l, err := p.acquire(context.Background())
		if err != nil || l.w.id != "b" {
			t.Fatalf("request %d after a died: %v on %v, want b", i, err, l.w)
		}
	}
	// A second request that dialled a before the mark: not first.
	p.mu.Lock()
	p.workers[0].inflight++
	p.mu.Unlock()
	if p.workerGone(lease{w: p.workers[0]}) {
		t.Fatal("workerGone reported twice for one worker")
	}
	// The next table still lists a (the master has not heard yet): it
	// stays out. Once drained in the table, it reports drained as usual.
	p.update(proxymsg.App{Key: "u/app", State: proxymsg.AppRunning, QueueTimeout: time.Hour,
		Workers: []proxymsg.Worker{{ID: "a", Threads: 2}, {ID: "b", Threads: 2}}})
	p.mu.Lock()
	down := p.workers[0].down
	p.mu.Unlock()
	if !down {
		t.Fatal("a new table with the same worker forgot it is down")
	}
	p.update(proxymsg.App{Key: "u/app", State: proxymsg.AppRunning, QueueTimeout: time.Hour,
		Workers: []proxymsg.Worker{{ID: "a", Threads: 2, Draining: true}, {ID: "b", Threads: 2}}})
	if id := <-drained; id != "a" {
		t.Fatalf("drained %s, want a", id)
	}
}

func TestAllWorkersDownQueuesUntilReplaced(t *testing.T) {
	p, _ := newTestPool(proxymsg.AppRunning, time.Hour, proxymsg.Worker{ID: "a", Threads: 1})
	l, _ := p.acquire(context.Background())
	p.workerGone(l)
	// Not 503: the master is about to replace a (S2), so the request
	// waits as it would while the app starts.
	got := make(chan lease, 1)
	errc := make(chan error, 1)
	go func() {
		l, err := p.acquire(context.Background())
		if err != nil {
			errc <- err
			return
		}
		got <- l
	}()
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.waiters) == 1 })
	// The master's table: a gone, its replacement starting, then ready.
	p.update(proxymsg.App{Key: "u/app", State: proxymsg.AppStarting, QueueTimeout: time.Hour})
	p.update(proxymsg.App{Key: "u/app", State: proxymsg.AppRunning, QueueTimeout: time.Hour, Workers: []proxymsg.Worker{{ID: "a2", Threads: 1}}})
	select {
	case l := <-got:
		if l.w.id != "a2" {
			t.Fatalf("queued request went to %s, want a2", l.w.id)
		}
	case err := <-errc:
		t.Fatalf("queued request: %v", err)
	}
}

func TestTimedOutWorkerTakesNoNewRequest(t *testing.T) {
	p, _ := newTestPool(proxymsg.AppRunning, time.Hour,
		proxymsg.Worker{ID: "a", Threads: 2}, proxymsg.Worker{ID: "b", Threads: 2})
	la, _ := p.acquire(context.Background()) // a
	lb, _ := p.acquire(context.Background()) // b
	p.timedOut(la)
	p.release(la, nil) // the relay gives the lease back after its 504
	// a has no request in flight and is first: still b's.
	l, err := p.acquire(context.Background())
	if err != nil || l.w.id != "b" {
		t.Fatalf("after a's timeout: %v on %v, want b", err, l.w)
	}
	// b is full; a stays out: the request waits (and here gives up).
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := p.acquire(ctx); errc <- err }()
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.waiters) == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiter: %v", err)
	}
	p.release(lb, nil)
	p.release(l, nil)
}

func TestRetryWaitsOnlyWhatIsLeftOfTheQueueTimeout(t *testing.T) {
	p, _ := newTestPool(proxymsg.AppRunning, time.Minute, proxymsg.Worker{ID: "a", Threads: 1})
	// A free thread is taken however long the request waited before.
	l, err := p.acquireAsked(context.Background(), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatalf("free thread refused to a request asked an hour ago: %v", err)
	}
	// A request whose queue_timeout has passed (in an earlier try) does
	// not wait a new one.
	if _, err := p.acquireAsked(context.Background(), time.Now().Add(-time.Hour)); !errors.Is(err, errQueueTimeout) {
		t.Fatalf("busy app, queue_timeout spent: %v, want errQueueTimeout", err)
	}
	p.release(l, nil)
}

// The proxy keeps no defaults of its own: a table that leaves an app's
// queue bounds out (only a hand-made one does; the master sends the
// app's config) gets config's built-in ones, and a table's own win.
func TestPoolQueueBoundsComeFromConfig(t *testing.T) {
	p := &appPool{key: "u/app"}
	p.update(proxymsg.App{Key: "u/app", State: proxymsg.AppRunning})
	if p.queueTimeout != config.DefaultQueueTimeout || p.queueLimit != config.DefaultQueueLimit {
		t.Errorf("bounds left out: %v and %d, want config's %v and %d", p.queueTimeout, p.queueLimit, config.DefaultQueueTimeout, config.DefaultQueueLimit)
	}
	p.update(proxymsg.App{Key: "u/app", State: proxymsg.AppRunning, QueueTimeout: time.Second, QueueLimit: 3})
	if p.queueTimeout != time.Second || p.queueLimit != 3 {
		t.Errorf("bounds given: %v and %d, want 1s and 3", p.queueTimeout, p.queueLimit)
	}
}
