package master

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyhost/pyhost/supervisor"
)

// waitAsking polls until n questions of h are still out.
func waitAsking(t *testing.T, h *healthMonitor, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		out := len(h.asking)
		h.mu.Unlock()
		if out == n {
			return
		}
		time.Sleep(time.Millisecond) // polling for the answers, not timing them
	}
	t.Fatalf("questions out: want %d", n)
}

func TestHealthMonitor(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ok := func(context.Context) error { return nil }
	gone := func(context.Context) error { return supervisor.ErrStopped }
	release := make(chan struct{})
	busy := func(ctx context.Context) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	h := newHealthMonitor()
	var clockMu sync.Mutex
	t0 := time.Now()
	clock := t0
	h.now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	setClock := func(at time.Time) { clockMu.Lock(); clock = at; clockMu.Unlock() }

	h.ask(ctx, []healthCheck{{"loop", ok}, {"app a/gone", gone}, {"app a/busy", busy}}, t0)
	waitAsking(t, h, 1) // the loop and the removed app answered; busy did not
	if err := h.wedged(t0.Add(5*time.Second), 10*time.Second); err != nil {
		t.Errorf("5 s into a busy spell: %v", err)
	}
	// 11 s on: the loop answers again, the app a/gone is no more, busy
	// is still out (one question at a time: no second one piles up).
	setClock(t0.Add(11 * time.Second))
	h.ask(ctx, []healthCheck{{"loop", ok}, {"app a/busy", busy}}, t0.Add(11*time.Second))
	waitAsking(t, h, 1)
	err := h.wedged(t0.Add(11*time.Second), 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "app a/busy (11s)") || strings.Contains(err.Error(), "loop") || strings.Contains(err.Error(), "a/gone") {
		t.Errorf("11 s into it: %v, want only app a/busy named", err)
	}
	close(release)
	waitAsking(t, h, 0)
	if err := h.wedged(t0.Add(11*time.Second), 10*time.Second); err != nil {
		t.Errorf("after it answered: %v", err)
	}
}

func TestPingLoop(t *testing.T) {
	ping := make(chan chan struct{})
	go func() { r := <-ping; close(r) }()
	if err := pingLoop(ping)(context.Background()); err != nil {
		t.Errorf("a serving loop: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := pingLoop(ping)(ctx); err == nil {
		t.Error("a wedged loop answered")
	}
}
