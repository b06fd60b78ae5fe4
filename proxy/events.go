package proxy

import (
	"sync"

	"github.com/pyhost/pyhost/proxymsg"
)

// eventQueue carries the proxy's events to the goroutine that sends them
// to the master. Every one changes the master's state (a drained worker
// may be stopped, a timeout recycles, a wake starts an idle app, applied
// ends a reload's wait, budget recycles), so none is ever dropped: the
// queue is unbounded, and an event equal to one still waiting is merged
// into it instead. That bounds it in practice: at most one of each kind
// per app and worker, and a crowd of requests to an idle app makes one
// wake, not one per request. (It used to be a 256-slot channel that
// dropped whatever did not fit, issue 13.)
type eventQueue struct {
	mu     sync.Mutex
	q      []proxymsg.Event
	queued map[eventKey]struct{}
	ready  chan struct{} // holds a token while q is not empty
}

// eventKey is what makes two waiting events the same.
type eventKey struct {
	kind        proxymsg.EventKind
	app, worker string
	detail      string
	serial      uint64
}

func newEventQueue() *eventQueue {
	return &eventQueue{queued: map[eventKey]struct{}{}, ready: make(chan struct{}, 1)}
}

// push queues ev unless an equal event is still waiting. It never blocks.
func (e *eventQueue) push(ev proxymsg.Event) {
	k := eventKey{ev.Kind, ev.App, ev.WorkerID, ev.Detail, ev.Serial}
	e.mu.Lock()
	if _, dup := e.queued[k]; dup {
		e.mu.Unlock()
		return
	}
	e.queued[k] = struct{}{}
	e.q = append(e.q, ev)
	e.mu.Unlock()
	select {
	case e.ready <- struct{}{}:
	default:
	}
}

// take returns every waiting event, oldest first, and empties the queue.
func (e *eventQueue) take() []proxymsg.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	q := e.q
	e.q = nil
	clear(e.queued)
	return q
}
