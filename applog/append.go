package applog

// Append writes lines, whole lines each ending in a newline, as they are:
// no timestamp or pid is added. It is for logs whose lines come
// formatted, as the per-app access log's do (package accesslog), and
// otherwise behaves like Line: one write, followers woken.
func (l *Log) Append(lines []byte) {
	if len(lines) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Write(lines)
	}
	l.wakeLocked()
}
