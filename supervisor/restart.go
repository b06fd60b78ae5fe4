package supervisor

import (
	"math/rand/v2"
	"time"
)

// RestartPolicy configures how quickly dead workers are replaced.
type RestartPolicy struct {
	// First is the delay after the first death in a row; it doubles with
	// each further death up to Max.
	First time.Duration
	Max   time.Duration
	// Jitter spreads delays by ± this fraction so that the workers of
	// many apps that died together do not restart in lockstep.
	Jitter float64
	// StableAfter: a worker that lived this long resets the streak.
	StableAfter time.Duration
	// FailAfter deaths within FailWindow mark the app failing.
	FailAfter  int
	FailWindow time.Duration
}

// DefaultRestartPolicy replaces the first death at once (within a second,
// docs/design.md, "Restart policy") and backs off to half a minute for a
// crash loop.
var DefaultRestartPolicy = RestartPolicy{
	First:       0,
	Max:         30 * time.Second,
	Jitter:      0.2,
	StableAfter: 10 * time.Second,
	FailAfter:   5,
	FailWindow:  60 * time.Second,
}

// RestartTracker is the pure decision "a worker died: what now?". Feed it
// each death; it answers how long to wait before the replacement and
// whether the app should be considered failing. It does no I/O and reads
// no clock: the caller passes the time, which is what makes it testable.
type RestartTracker struct {
	policy RestartPolicy
	rand   func() float64 // in [0,1); injectable for tests
	streak int            // deaths in a row without a stable worker
	deaths []time.Time    // within FailWindow
}

// NewRestartTracker returns a tracker for policy; rnd may be nil for the
// default random source.
func NewRestartTracker(policy RestartPolicy, rnd func() float64) *RestartTracker {
	if rnd == nil {
		rnd = rand.Float64
	}
	return &RestartTracker{policy: policy, rand: rnd}
}

// RestartDecision is the tracker's answer.
type RestartDecision struct {
	Delay   time.Duration
	Failing bool
	Streak  int // deaths in a row, including this one
}

// Died records a worker death at now after it lived for uptime.
func (t *RestartTracker) Died(now time.Time, uptime time.Duration) RestartDecision {
	p := t.policy
	if uptime >= p.StableAfter {
		t.streak = 0
	}
	t.streak++
	cut := now.Add(-p.FailWindow)
	kept := t.deaths[:0]
	for _, d := range t.deaths {
		if d.After(cut) {
			kept = append(kept, d)
		}
	}
	t.deaths = append(kept, now)
	return RestartDecision{
		Delay:   t.delay(),
		Failing: p.FailAfter > 0 && len(t.deaths) >= p.FailAfter,
		Streak:  t.streak,
	}
}

// Reset forgets the history (after a successful reload or a manual start).
func (t *RestartTracker) Reset() {
	t.streak = 0
	t.deaths = t.deaths[:0]
}

func (t *RestartTracker) delay() time.Duration {
	p := t.policy
	if t.streak <= 1 {
		return jitter(p.First, p.Jitter, t.rand)
	}
	base := p.First
	if base <= 0 {
		base = 250 * time.Millisecond
	}
	d := base
	for i := 2; i < t.streak && d < p.Max; i++ {
		d *= 2
	}
	if p.Max > 0 && d > p.Max {
		d = p.Max
	}
	return jitter(d, p.Jitter, t.rand)
}

func jitter(d time.Duration, frac float64, rnd func() float64) time.Duration {
	if d <= 0 || frac <= 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + frac*(2*rnd()-1)))
}
