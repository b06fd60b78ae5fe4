package master

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// The watchdog's question (issue 13): systemd's WatchdogSec= restarts a
// daemon that stops pinging, so pyhostd pings only while its main loop
// and every app's actor still answer. An actor may be busy for seconds
// (a spawn waits up to the fork server's ready and reply timeouts, 5 s
// together), which must not make systemd restart every app: each part is
// asked on its own, concurrently, and only one that has not answered for
// healthStale counts as wedged.
const (
	healthEvery = time.Second
	healthStale = 10 * time.Second
)

// healthCheck is one part of the daemon that must answer.
type healthCheck struct {
	name string
	ask  func(ctx context.Context) error
}

// healthMonitor remembers when each part last answered.
type healthMonitor struct {
	mu       sync.Mutex
	answered map[string]time.Time // by check name; set when first asked
	asking   map[string]bool      // a question is out
	now      func() time.Time     // when an answer came; time.Now but in tests
}

func newHealthMonitor() *healthMonitor {
	return &healthMonitor{answered: map[string]time.Time{}, asking: map[string]bool{}, now: time.Now}
}

// ask puts the question to every check that has none out, each in its
// own goroutine bounded by ctx and healthStale, and forgets the parts
// that are gone (an app removed). now is when a new part is first seen.
func (h *healthMonitor) ask(ctx context.Context, checks []healthCheck, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	current := map[string]bool{}
	for _, c := range checks {
		current[c.name] = true
		if _, seen := h.answered[c.name]; !seen {
			h.answered[c.name] = now
		}
		if h.asking[c.name] {
			continue
		}
		h.asking[c.name] = true
		go func() {
			qctx, cancel := context.WithTimeout(ctx, healthStale)
			defer cancel()
			err := c.ask(qctx)
			h.mu.Lock()
			defer h.mu.Unlock()
			delete(h.asking, c.name)
			if err == nil || qctx.Err() == nil {
				// An answer, even "gone" (ErrStopped), is an answer.
				if _, still := h.answered[c.name]; still {
					h.answered[c.name] = h.now()
				}
			}
		}()
	}
	for name := range h.answered {
		if !current[name] {
			delete(h.answered, name)
		}
	}
}

// wedged names the parts that have not answered for longer than limit
// at now; nil when every part is alive.
func (h *healthMonitor) wedged(now time.Time, limit time.Duration) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var stuck []string
	for name, at := range h.answered {
		if now.Sub(at) > limit {
			stuck = append(stuck, fmt.Sprintf("%s (%s)", name, now.Sub(at).Round(time.Second)))
		}
	}
	if len(stuck) == 0 {
		return nil
	}
	sort.Strings(stuck)
	return fmt.Errorf("no answer for over %s from %v", limit, stuck)
}

// monitorHealth asks every healthEvery until ctx ends and returns the
// watchdog's alive: false once some part has not answered for
// healthStale (logged once, until all answer again).
func (m *Master) monitorHealth(ctx context.Context, ping chan<- chan struct{}) func() bool {
	h := newHealthMonitor()
	var mu sync.Mutex
	failing := false
	go func() {
		t := time.NewTicker(healthEvery)
		defer t.Stop()
		for {
			h.ask(ctx, m.healthChecks(ping), time.Now())
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() bool {
		err := h.wedged(time.Now(), healthStale)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil && !failing:
			m.log.Error("not pinging systemd's watchdog: the daemon does not answer itself", "error", err)
		case err == nil && failing:
			m.log.Info("the daemon answers itself again; pinging systemd's watchdog")
		}
		failing = err != nil
		return err == nil
	}
}

// pingLoop asks the master's main loop to answer on ping.
func pingLoop(ping chan<- chan struct{}) func(context.Context) error {
	return func(ctx context.Context) error {
		reply := make(chan struct{})
		select {
		case ping <- reply:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-reply:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// healthChecks are the main loop, then every app's actor.
func (m *Master) healthChecks(ping chan<- chan struct{}) []healthCheck {
	checks := []healthCheck{{"the master's main loop", pingLoop(ping)}}
	for _, app := range m.set.all() {
		checks = append(checks, healthCheck{"app " + app.Key(), app.Ping})
	}
	return checks
}
