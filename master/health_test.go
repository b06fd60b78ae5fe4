package master

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pyhost/pyhost/supervisor"
)

func TestCheckHealth(t *testing.T) {
	ok := func(context.Context) error { return nil }
	gone := func(context.Context) error { return supervisor.ErrStopped }
	stuck := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

	if err := checkHealth(context.Background(), 50*time.Millisecond, []healthCheck{{"loop", ok}, {"app a/b", gone}}); err != nil {
		t.Errorf("answering checks: %v", err)
	}
	err := checkHealth(context.Background(), 50*time.Millisecond, []healthCheck{{"loop", ok}, {"app a/b", stuck}, {"app c/d", ok}})
	if err == nil || !strings.Contains(err.Error(), "app a/b did not answer within 50ms") {
		t.Errorf("a stuck app: %v", err)
	}

	// The main loop's ping: answered while a loop serves it, not after.
	ping := make(chan chan struct{})
	served := make(chan struct{})
	go func() {
		defer close(served)
		r := <-ping
		close(r)
	}()
	if err := checkHealth(context.Background(), time.Second, []healthCheck{{"the master's main loop", pingLoop(ping)}}); err != nil {
		t.Errorf("a serving loop: %v", err)
	}
	<-served
	err = checkHealth(context.Background(), 50*time.Millisecond, []healthCheck{{"the master's main loop", pingLoop(ping)}})
	if err == nil || !strings.Contains(err.Error(), "the master's main loop did not answer") {
		t.Errorf("a wedged loop: %v", err)
	}
}

func TestStale(t *testing.T) {
	now := time.Unix(1000, 0)
	if err := stale(now.Add(-5*time.Second).UnixNano(), now, 10*time.Second); err != nil {
		t.Errorf("5 s old: %v", err)
	}
	if err := stale(now.Add(-11*time.Second).UnixNano(), now, 10*time.Second); err == nil || !strings.Contains(err.Error(), "11s") {
		t.Errorf("11 s old: %v", err)
	}
}
