package proxy

import (
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// logEvery is how often a repeated per-request event is written: one
// line, then the count of those held back. A flood of 503s under a full
// queue once wrote a line each, 409,852 lines (49 MB) in 15 s.
const logEvery = time.Second

// rateLog writes a repeated event (a full queue, a request that found no
// worker) once per logEvery per key, and counts the others: when the
// interval that held some back ends, one more line says how many. The
// zero value is ready to use; it is safe for concurrent use.
type rateLog struct {
	mu   sync.Mutex
	open map[string]*logWindow // guarded by mu; by key
	// after runs f once d has passed; nil: time.AfterFunc. Tests set it.
	after func(d time.Duration, f func())
}

// logWindow is one key's interval: the lines held back in it, and the
// first line's message and facts, repeated in the summary (but its
// request_id: the access log has every held-back request's).
type logWindow struct {
	held int
	msg  string
	args []any
	log  hclog.Logger
}

// warn writes msg with args at WARN level unless key was written less
// than logEvery ago; then the line is only counted.
func (r *rateLog) warn(log hclog.Logger, key, msg string, args ...any) {
	r.mu.Lock()
	if r.open == nil {
		r.open = map[string]*logWindow{}
	}
	if w := r.open[key]; w != nil {
		w.held++
		r.mu.Unlock()
		return
	}
	r.open[key] = &logWindow{msg: msg, args: args, log: log}
	after := r.after
	if after == nil {
		after = func(d time.Duration, f func()) { time.AfterFunc(d, f) }
	}
	r.mu.Unlock()
	log.Warn(msg, args...)
	after(logEvery, func() { r.close(key) })
}

// close ends key's interval: the next event is written again, and the
// ones held back in this one are summed up in one line.
func (r *rateLog) close(key string) {
	r.mu.Lock()
	w := r.open[key]
	delete(r.open, key)
	r.mu.Unlock()
	if w == nil || w.held == 0 {
		return
	}
	args := []any{"repeated", w.held, "within", logEvery}
	for i := 0; i+1 < len(w.args); i += 2 {
		if w.args[i] != "request_id" {
			args = append(args, w.args[i], w.args[i+1])
		}
	}
	w.log.Warn(w.msg+" (more like it, not logged one by one)", args...)
}
