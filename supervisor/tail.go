package supervisor

import (
	"strings"
	"sync"
)

// workerTails keeps the last lines each worker wrote, by pid, until it is
// reaped. A worker that failed (its warm-up, an import that killed the
// interpreter) is explained by its own last lines; the app's LogRing,
// shared by every worker and the supervisor's notes, loses them as soon
// as the others write 50 lines, which a busy old generation, or one
// failing on the same broken file, does within a reload.
type workerTails struct {
	mu sync.Mutex
	by map[int][]string // guarded by mu; nil until the first line
}

// tailLines is how much of a worker's output its tail keeps: a
// traceback's end, where the exception is.
const tailLines = 30

// add records a line worker pid wrote. A line that comes after the
// worker was reaped (from a child it left holding its output) starts an
// entry nothing takes: at most tailLines lines for that pid.
func (t *workerTails) add(pid int, line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.by == nil {
		t.by = map[int][]string{}
	}
	l := append(t.by[pid], line)
	if len(l) > tailLines {
		l = l[len(l)-tailLines:]
	}
	t.by[pid] = l
}

// take returns the last lines pid wrote, one per line, and forgets them:
// the worker was reaped, and its pid may come back as another's.
func (t *workerTails) take(pid int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.by[pid]
	delete(t.by, pid)
	return strings.Join(l, "\n")
}
