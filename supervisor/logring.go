package supervisor

import "sync"

// LogRing keeps the last lines of an app's output for `pyctl status`, so
// an owner sees why a failing app fails without opening its log.
type LogRing struct {
	mu    sync.Mutex
	lines []string
	next  int
	full  bool
}

// NewLogRing keeps up to n lines.
func NewLogRing(n int) *LogRing { return &LogRing{lines: make([]string, n)} }

// Add appends a line, forgetting the oldest when full.
func (r *LogRing) Add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines[r.next] = line
	r.next = (r.next + 1) % len(r.lines)
	if r.next == 0 {
		r.full = true
	}
}

// Lines returns the kept lines, oldest first.
func (r *LogRing) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]string(nil), r.lines[:r.next]...)
	}
	out := make([]string, 0, len(r.lines))
	out = append(out, r.lines[r.next:]...)
	return append(out, r.lines[:r.next]...)
}
