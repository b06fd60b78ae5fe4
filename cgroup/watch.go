package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"
)

// OOMEvent is an increase of a group's OOM-kill count.
type OOMEvent struct {
	Kills int64 // kills since the previous event (or since WatchOOM)
	Total int64 // the group's count, its subgroups' included
}

// WatchOOM reports each increase of the group's OOM-kill count after the
// call. The channel is closed when ctx ends or the group is removed.
// Nothing is lost to a slow receiver: kills counted meanwhile add up in
// the next event. On cgroup2 the kernel wakes the watch (inotify on
// memory.events); on v1 it polls memory.oom_control every
// TreeOptions.PollInterval. A group without a memory controller (a
// worker's leaf, a host without one) is ErrUnsupported.
func (g *Group) WatchOOM(ctx context.Context) (<-chan OOMEvent, error) {
	var count func() (int64, bool, error)
	var wake func(context.Context) bool // false: stop
	var done func()
	switch {
	case g.v2 != "" && g.t.hasV2("memory") && g.kind != kindWorker:
		file := filepath.Join(g.v2, "memory.events")
		w, err := watchModify(file)
		if err != nil {
			return nil, fmt.Errorf("cgroup: %w", err)
		}
		count = func() (int64, bool, error) {
			b, err := g.t.k.read(file)
			if errors.Is(err, fs.ErrNotExist) {
				return 0, false, nil
			}
			if err != nil {
				return 0, false, err
			}
			return parseKeyed(b)["oom_kill"], true, nil
		}
		wake = func(ctx context.Context) bool {
			gone, err := w.wait(ctx)
			return err == nil && !gone
		}
		done = w.close
	case g.v1dir("memory") != "" && g.kind != kindWorker:
		dir := g.v1dir("memory")
		count = func() (int64, bool, error) { return g.v1OOMKills(dir) }
		tick := time.NewTicker(g.t.opts.PollInterval)
		wake = func(ctx context.Context) bool {
			select {
			case <-ctx.Done():
				return false
			case <-tick.C:
				return true
			}
		}
		done = tick.Stop
	default:
		return nil, fmt.Errorf("cgroup: OOM kills of %s: no memory controller: %w", g.rel, ErrUnsupported)
	}
	last, _, err := count()
	if err != nil {
		done()
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	ch := make(chan OOMEvent)
	go func() {
		defer close(ch)
		defer done()
		for wake(ctx) {
			n, ok, err := count()
			if !ok || err != nil {
				return // the group is gone
			}
			if n <= last {
				continue
			}
			select {
			case ch <- OOMEvent{Kills: n - last, Total: n}:
				last = n
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}
