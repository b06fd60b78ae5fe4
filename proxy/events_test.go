package proxy

import (
	"fmt"
	"testing"

	"github.com/pyhost/pyhost/proxymsg"
)

func TestEventQueueNeverDrops(t *testing.T) {
	e := newEventQueue()
	// More distinct state-changing events than the old 256-slot channel
	// held: every one arrives, in order.
	for i := range 1000 {
		e.push(proxymsg.Event{Kind: proxymsg.EventDrained, App: "a/b", WorkerID: fmt.Sprint(i)})
	}
	e.push(proxymsg.Event{Kind: proxymsg.EventApplied, Serial: 7})
	<-e.ready
	got := e.take()
	if len(got) != 1001 || got[0].WorkerID != "0" || got[999].WorkerID != "999" || got[1000].Serial != 7 {
		t.Fatalf("got %d events: first %+v last %+v", len(got), got[0], got[len(got)-1])
	}
	if len(e.take()) != 0 {
		t.Error("take did not empty the queue")
	}
}

func TestEventQueueMergesWaitingDuplicates(t *testing.T) {
	e := newEventQueue()
	for range 10000 {
		e.push(proxymsg.Event{Kind: proxymsg.EventWake, App: "a/idle"})
	}
	e.push(proxymsg.Event{Kind: proxymsg.EventWake, App: "a/other"})
	e.push(proxymsg.Event{Kind: proxymsg.EventTimeout, App: "a/idle", WorkerID: "w1", Detail: "request 1 exceeded 5s"})
	e.push(proxymsg.Event{Kind: proxymsg.EventTimeout, App: "a/idle", WorkerID: "w1", Detail: "request 2 exceeded 5s"})
	if got := e.take(); len(got) != 4 {
		t.Fatalf("got %d events, want 4 (one wake per app, both timeouts): %+v", len(got), got)
	}
	// Once sent, the same event queues again.
	e.push(proxymsg.Event{Kind: proxymsg.EventWake, App: "a/idle"})
	if got := e.take(); len(got) != 1 {
		t.Fatalf("a wake after the last was sent: %d events", len(got))
	}
}
