package master

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pyhost/pyhost/supervisor"
)

// healthTimeout is how long the main loop and each app's actor get to
// answer the watchdog's question (issue 13: a wedged daemon must stop
// pinging, so that systemd's WatchdogSec= restarts it).
const healthTimeout = time.Second

// healthCheck is one part of the daemon that must answer.
type healthCheck struct {
	name string
	ask  func(ctx context.Context) error
}

// checkHealth asks every check in turn, all within timeout together, and
// names the first that did not answer. A check that finds its part gone
// (an app removed meanwhile) counts as an answer.
func checkHealth(ctx context.Context, timeout time.Duration, checks []healthCheck) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, c := range checks {
		err := c.ask(ctx)
		if err == nil || errors.Is(err, supervisor.ErrStopped) {
			continue
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s did not answer within %s", c.name, timeout)
		}
		return fmt.Errorf("%s: %w", c.name, err)
	}
	return nil
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

// healthEvery is how often the daemon asks itself; healthStale is how
// long it may go unanswered before the watchdog stops pinging. An actor
// may be busy for a few seconds (a spawn waits up to the fork server's
// ready and reply timeouts, 5 s together), which must not make systemd
// restart every app: only a loop that stays wedged does.
const (
	healthEvery = time.Second
	healthStale = 10 * time.Second
)

// monitorHealth asks checkHealth every healthEvery until ctx ends and
// returns the watchdog's alive: true while the last passing check is
// under healthStale old. A failure is logged once until a check passes.
func (m *Master) monitorHealth(ctx context.Context, ping chan<- chan struct{}) func() bool {
	var lastOK atomic.Int64
	lastOK.Store(time.Now().UnixNano())
	go func() {
		t := time.NewTicker(healthEvery)
		defer t.Stop()
		failing := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := checkHealth(ctx, healthTimeout, m.healthChecks(ping)); err != nil {
				if !failing && ctx.Err() == nil {
					m.log.Warn("the daemon did not answer itself; systemd's watchdog stops being pinged if this lasts", "error", err, "after", healthStale)
				}
				failing = true
				continue
			}
			if failing {
				m.log.Info("the daemon answers itself again")
			}
			failing = false
			lastOK.Store(time.Now().UnixNano())
		}
	}()
	return func() bool { return stale(lastOK.Load(), time.Now(), healthStale) == nil }
}

// stale says why a last passing check at lastOK (unix ns) is too old at
// now, or nil.
func stale(lastOK int64, now time.Time, limit time.Duration) error {
	if age := now.Sub(time.Unix(0, lastOK)); age > limit {
		return fmt.Errorf("no passing health check for %s", age.Round(time.Second))
	}
	return nil
}

// healthChecks are the main loop, then every app's actor.
func (m *Master) healthChecks(ping chan<- chan struct{}) []healthCheck {
	checks := []healthCheck{{"the master's main loop", pingLoop(ping)}}
	for _, app := range m.set.all() {
		checks = append(checks, healthCheck{"app " + app.Key(), app.Ping})
	}
	return checks
}
