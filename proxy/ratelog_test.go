package proxy

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestRateLogWritesOncePerIntervalWithACount(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := hclog.New(&hclog.LoggerOptions{Output: &syncWriter{w: &buf, mu: &mu}})
	var pending []func()
	r := &rateLog{after: func(_ time.Duration, f func()) { pending = append(pending, f) }}
	for i := 0; i < 1000; i++ {
		r.warn(log, "queue-full", "queue full; request refused", "app", "u/app", "request_id", i)
	}
	r.warn(log, "other", "another event", "app", "u/app")
	lines := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Split(strings.TrimSpace(buf.String()), "\n")
	}
	if got := lines(); len(got) != 2 {
		t.Fatalf("1000 repeats and one other event wrote %d lines, want 2:\n%s", len(got), strings.Join(got, "\n"))
	}
	// The interval ends: one line sums up what was held back, without
	// the first request's id; an interval with nothing held says nothing.
	for _, f := range pending {
		f()
	}
	got := lines()
	if len(got) != 3 || !strings.Contains(got[2], "repeated=999") || !strings.Contains(got[2], "app=u/app") || strings.Contains(got[2], "request_id") {
		t.Fatalf("after the interval:\n%s", strings.Join(got, "\n"))
	}
	// And the next event is written again.
	r.warn(log, "queue-full", "queue full; request refused", "app", "u/app", "request_id", 1001)
	if got := lines(); len(got) != 4 {
		t.Fatalf("next interval's first event not written:\n%s", strings.Join(got, "\n"))
	}
}

type syncWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
