package main

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// sampler reads the groups' memory and descriptors from /proc, on a
// period and on demand, and keeps every reading.
type sampler struct {
	groups []procGroup
	start  time.Time

	mu      sync.Mutex
	samples []sampleAt
}

type sampleAt struct {
	at     time.Duration // since start
	groups map[string]procUsage
}

func newSampler(groups []procGroup, start time.Time) *sampler {
	return &sampler{groups: groups, start: start}
}

// now takes a reading, keeps it and returns it.
func (s *sampler) now() sampleAt {
	t := readProcTable()
	sa := sampleAt{at: time.Since(s.start), groups: map[string]procUsage{}}
	for _, g := range s.groups {
		sa.groups[g.Name] = usageOf(t.members(g))
	}
	s.mu.Lock()
	s.samples = append(s.samples, sa)
	s.mu.Unlock()
	return sa
}

// run takes a reading every period until the returned stop is called;
// stop returns once the last reading is kept.
func (s *sampler) run(every time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				s.now()
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// summaries folds the readings per group: before and after as given, the
// peak over the readings from attackAt to after, and the processes that
// appeared meanwhile.
func (s *sampler) summaries(before, after sampleAt, attackAt time.Duration) map[string]memSummary {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]memSummary{}
	for _, g := range s.groups {
		b, a := before.groups[g.Name], after.groups[g.Name]
		m := memSummary{
			BeforeKB: b.RSSKB, AfterKB: a.RSSKB, PeakKB: max(b.RSSKB, a.RSSKB),
			FDsBefore: b.FDs, FDsAfter: a.FDs, FDsPeak: max(b.FDs, a.FDs),
			ProcsBefore: b.Procs, ProcsAfter: a.Procs,
		}
		known := map[int]bool{}
		for _, pid := range b.Pids {
			known[pid] = true
		}
		for _, sa := range s.samples {
			if sa.at < attackAt || sa.at > after.at {
				continue
			}
			u := sa.groups[g.Name]
			m.PeakKB = max(m.PeakKB, u.RSSKB)
			m.FDsPeak = max(m.FDsPeak, u.FDs)
			for _, pid := range u.Pids {
				if !known[pid] {
					known[pid] = true
					m.NewProcs++
				}
			}
		}
		out[g.Name] = m
	}
	return out
}

// timeline returns one reading per step (the first of each step), for
// the JSON result.
func (s *sampler) timeline(step time.Duration) []timelinePoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	samples := slices.Clone(s.samples)
	slices.SortFunc(samples, func(a, b sampleAt) int { return cmp.Compare(a.at, b.at) })
	var out []timelinePoint
	next := time.Duration(0)
	for _, sa := range samples {
		if sa.at < next {
			continue
		}
		out = append(out, timelinePoint{AtS: sa.at.Seconds(), Groups: sa.groups})
		next = (sa.at/step + 1) * step
	}
	return out
}
