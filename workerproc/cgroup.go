package workerproc

import (
	"os/exec"

	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/child"
	"github.com/pyhost/pyhost/privdrop"
)

// startChild starts cmd, wrapped by wrap (the sandbox's trampoline) if set,
// through the spawner, in g when it is not nil.
func startChild(sp *privdrop.Spawner, g *cgroup.Group, wrap func(*exec.Cmd) error, cmd *exec.Cmd) (*child.Process, error) {
	if wrap != nil {
		if err := wrap(cmd); err != nil {
			return nil, err
		}
	}
	return child.Start(starter(sp, g), cmd)
}

// starter is what starts a worker or fork server: the spawner itself,
// or, with a cgroup, the spawner calling Group.Start on its thread, so
// that the child is in its group from its first instruction (issue 14,
// C1): there is no moment in which it could fork outside it.
func starter(sp *privdrop.Spawner, g *cgroup.Group) interface{ Start(*exec.Cmd) error } {
	if g == nil {
		return sp
	}
	return groupStarter{sp, g}
}

type groupStarter struct {
	sp *privdrop.Spawner
	g  *cgroup.Group
}

func (s groupStarter) Start(cmd *exec.Cmd) error { return s.sp.StartWith(cmd, s.g.Start) }

// StarterIn is what starts the daemon's own children in g (the proxy in
// the daemon's cpu group, cgroup.Tree.Daemon): the spawner, placing the
// child from its first instruction; the spawner alone when g is nil.
func StarterIn(sp *privdrop.Spawner, g *cgroup.Group) interface{ Start(*exec.Cmd) error } {
	return starter(sp, g)
}
