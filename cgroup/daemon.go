package cgroup

import (
	"fmt"
	"path/filepath"
)

// Daemon returns the group of the daemon's own child that serves every
// app, the proxy: base/daemon in the v1 cpu hierarchy, made if needed.
// Without it the proxy stays in the daemon's own cpu group, which on a
// host without systemd is the root's, shared (by autogroup, per session)
// with whatever started the daemon: there the proxy's turn on a CPU was
// weighed together with that session's other work, and a capped app's
// process preempted it for a whole tick of the kernel more often than
// in a group of its own among the apps (docs/benchmarks.md, "A
// CPU-spinning neighbour"). The group carries no limit: the default
// share, as the daemon's leaf of a cgroup v2 unit has. Only the v1 cpu
// hierarchy: membership and kill are the daemon's business, not the
// tree's, so the tree's kill at exit never reaches the proxy. A host
// without a v1 cpu hierarchy (pure cgroup v2, where the daemon already
// has its leaf under systemd) is ErrUnsupported.
func (t *Tree) Daemon() (*Group, error) {
	h := t.v1For("cpu")
	if h == nil {
		return nil, fmt.Errorf("cgroup: no v1 cpu hierarchy for the daemon's group: %w", ErrUnsupported)
	}
	d := v1dir{h: h, dir: filepath.Join(h.base, "daemon")}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.mkdir(d.dir); err != nil {
		return nil, err
	}
	return &Group{t: t, kind: kindDaemon, rel: "daemon", v1: []v1dir{d}, place: []v1dir{d}}, nil
}
