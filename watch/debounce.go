package watch

import (
	"sort"
	"strconv"
	"strings"
	"time"
)

// debouncer decides when a burst of events is over. It is pure: the
// caller feeds it the time of each event and asks when to flush, so the
// policy is tested without a clock.
//
// A burst ends after quiet with no event, or at the latest max after its
// first event, so a stream that never pauses (a build writing files in a
// loop) still yields a change every max.
type debouncer struct {
	quiet, max  time.Duration
	first, last time.Time
	pending     bool
}

// event records an event at now.
func (d *debouncer) event(now time.Time) {
	if !d.pending {
		d.pending, d.first = true, now
	}
	d.last = now
}

// due reports when the pending burst should be flushed; ok is false when
// nothing is pending.
func (d *debouncer) due() (at time.Time, ok bool) {
	if !d.pending {
		return time.Time{}, false
	}
	at = d.last.Add(d.quiet)
	if limit := d.first.Add(d.max); limit.Before(at) {
		at = limit
	}
	return at, true
}

// reset forgets the pending burst (it was flushed).
func (d *debouncer) reset() { d.pending = false }

// MaxPaths bounds Change.Paths: a `git checkout` of 10,000 files is one
// change, and listing them all helps no one.
const MaxPaths = 100

// Change is one debounced batch of changes.
type Change struct {
	// Paths are the changed files (and removed or added directories) of
	// a tree watch, and the fired triggers, as absolute paths under the
	// root and trigger paths given in Options (not symlink-resolved),
	// sorted, at most MaxPaths of them.
	Paths []string
	// More counts further changed paths not listed in Paths.
	More int
	// Overflow: the kernel's event queue overflowed, so something may
	// have changed that Paths does not name. Treat it as a change.
	Overflow bool
}

// String is a short description for a log line: "app.py, views.py and
// 3 more".
func (c Change) String() string {
	var b strings.Builder
	b.WriteString(strings.Join(c.Paths, ", "))
	if c.More > 0 {
		b.WriteString(" and " + strconv.Itoa(c.More) + " more")
	}
	if c.Overflow {
		if b.Len() > 0 {
			b.WriteString(" ")
		}
		b.WriteString("(event queue overflowed: changes unknown)")
	}
	return b.String()
}

// batch accumulates changed paths until they are handed out, bounded by
// MaxPaths.
type batch struct {
	paths    map[string]struct{}
	more     int
	overflow bool
}

func (b *batch) add(p string) {
	if b.paths == nil {
		b.paths = map[string]struct{}{}
	}
	if _, ok := b.paths[p]; ok {
		return
	}
	if len(b.paths) >= MaxPaths {
		b.more++ // may count a path twice: "more" is a hint, not a census
		return
	}
	b.paths[p] = struct{}{}
}

func (b *batch) empty() bool { return len(b.paths) == 0 && b.more == 0 && !b.overflow }

// merge adds o into b (o is a later batch the consumer has not yet
// taken the earlier one for).
func (b *batch) merge(o batch) {
	for p := range o.paths {
		b.add(p)
	}
	b.more += o.more
	b.overflow = b.overflow || o.overflow
}

func (b *batch) change() Change {
	c := Change{More: b.more, Overflow: b.overflow}
	for p := range b.paths {
		c.Paths = append(c.Paths, p)
	}
	sort.Strings(c.Paths)
	return c
}
