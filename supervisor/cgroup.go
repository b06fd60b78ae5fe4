package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/child"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/workerproc"
	"golang.org/x/sys/unix"
)

// Containment (issue 14): an App with Options.Cgroup runs its fork server
// in the app's group and each worker in a leaf of its own below it, so
// that the kernel enforces the app's limits on all of it, and a worker's
// end (exit, recycle, stop, reload) takes everything it started along:
// the leaf is killed (cgroup.kill) once the worker is reaped, and the
// app's group once its last process should be gone. Without a group the
// App works as before: process groups, and memory_limit polled.

// cgroupKillTimeout bounds each kill and removal of a group: cgroup.kill
// is immediate, and the wait is only for the kernel to reap.
const cgroupKillTimeout = 5 * time.Second

// appCgroup is the app's group as its App uses it.
type appCgroup struct {
	g *cgroup.Group
	// oomSeen are the group's OOM kills already put down to a worker,
	// so that one kill names one worker.
	oomSeen atomic.Int64
	// serverOOM is the group's OOM-kill count at which a fork
	// server's death was put down to the OOM killer (0: never), so that
	// every worker of that server is named with it.
	serverOOM atomic.Int64
	// applied are the limits last written (on the App's loop), pending
	// whether the kernel refused some of them for now (EBUSY), lastErr
	// the refusal last said (settleLimits retries without repeating it).
	applied cgroup.Limits
	pending bool
	lastErr string
	// lastUserErr is the refusal of the user's limits last said.
	lastUserErr string
	// memMax is the memory_max last written (asked for): in force, unless
	// the kernel refused to lower it (pending); Stats says what is.
	memMax atomic.Int64
	// own are the pids of the app's workers and fork servers, as of the
	// end of the App's last step, for dropLeaf (on a watch goroutine).
	own atomic.Pointer[map[int]bool]
}

func newAppCgroup(g *cgroup.Group) *appCgroup {
	if g == nil {
		return nil
	}
	c := &appCgroup{g: g}
	if st, err := g.Stats(); err == nil {
		c.oomSeen.Store(st.OOMKills) // kills from before this App are not its workers'
	}
	return c
}

// applyLimits writes cfg's limits to the app's group and lets the app's
// user move its own processes between the group and its leaves (a
// forked worker moves itself into its leaf). A limit the host cannot
// enforce is said in the app's log; the app runs without it (C6). A
// limit the kernel refuses for now (v1 will not lower
// memory.limit_in_bytes below what the group uses: EBUSY, as when a
// reload lowers memory_max while the old workers still hold their
// memory) is retried by settleLimits as workers exit.
func (a *App) applyLimits(cfg config.App) {
	if a.cg == nil {
		return
	}
	a.cg.memMax.Store(cfg.Limits.MemoryMax)
	err := a.cg.g.Apply(cfg.Limits)
	a.cg.applied, a.cg.pending = cfg.Limits, err != nil && errors.Is(err, unix.EBUSY)
	switch {
	case err == nil:
		a.cg.lastErr = ""
	case err.Error() == a.cg.lastErr:
		// said already; settleLimits retries it on every event
	case a.cg.pending:
		a.cg.lastErr = err.Error()
		a.log.Warn("cgroup limits not all applied yet: the app uses more than the new limit; retried as its workers exit", "error", err)
		a.note("cgroup limits not all applied yet (the app uses more than the new limit; retried as its workers exit): " + err.Error())
	default:
		a.cg.lastErr = err.Error()
		a.log.Warn("cgroup limits not all applied", "error", err)
		a.note("cgroup limits not all applied: " + err.Error())
	}
	if err := a.cg.g.LetMove(int(cfg.Cred.UID), int(cfg.Cred.GID)); err != nil && !errors.Is(err, cgroup.ErrUnsupported) {
		a.log.Warn("cannot let the app's user move its workers into their own cgroups", "error", err)
	}
}

// applyRollLimits writes, as a reload of cfg begins, the looser of the
// limits in force and cfg's: the old workers keep serving beside the new
// ones until these are ready, and a lowered limit written now would make
// the kernel OOM-kill (v2) or refuse (v1) for memory the old ones hold.
// settleLimits writes cfg's own once the roll is over.
func (a *App) applyRollLimits(cfg config.App) {
	if a.cg == nil {
		return
	}
	roll := cfg
	roll.Limits = a.core.cfg.Limits.Looser(cfg.Limits)
	a.applyLimits(roll)
}

// settleLimits settles the user's group (cgroup.Group.SettleUser), and
// puts the limits of the config in force back in the app's group once no
// reload is rolling: a reload writes the new limits before its
// new workers start (they need the room a raised limit gives), so a
// failed reload leaves them written while the old version serves, and a
// lowered memory limit the kernel refused while the old workers held
// their memory (pending) is written once they are gone. It runs after
// every event on the App's loop; when nothing changed it compares only.
func (a *App) settleLimits() {
	if a.cg == nil {
		return
	}
	own := a.ownPIDs()
	a.cg.own.Store(&own)
	// The user's totals ([users.NAME] max_memory) follow the admin's
	// config, which reload-config changes without rolling the app.
	if err := a.cg.g.SettleUser(); err == nil {
		a.cg.lastUserErr = ""
	} else if err.Error() != a.cg.lastUserErr {
		a.cg.lastUserErr = err.Error()
		a.log.Warn("the user's cgroup limits not all applied", "error", err)
		a.note("the user's cgroup limits (max_memory) not all applied: " + err.Error())
	}
	if a.core.reload != nil {
		return
	}
	if a.cg.applied == a.core.cfg.Limits && !a.cg.pending {
		return
	}
	a.applyLimits(a.core.cfg)
}

// workerGroup returns worker id's leaf (nil when the host has none) and
// the group the worker is to be born in: its leaf, else the app's
// group, else nil (no cgroups).
func (a *App) workerGroup(id string, cfg config.App) (leaf, place *cgroup.Group) {
	if a.cg == nil {
		return nil, nil
	}
	leaf, err := a.cg.g.Worker(id)
	if err != nil {
		if !errors.Is(err, cgroup.ErrUnsupported) {
			a.log.Warn("no cgroup of its own for a worker; it runs in the app's", "worker", id, "error", err)
		}
		return nil, a.cg.g
	}
	if err := leaf.LetMove(int(cfg.Cred.UID), int(cfg.Cred.GID)); err != nil {
		a.log.Warn("a forked worker cannot move into its own cgroup; it stays in the app's", "worker", id, "error", err)
	}
	return leaf, leaf
}

// appGroup is the app's group, where its fork server is born; nil: none.
func (a *App) appGroup() *cgroup.Group {
	if a.cg == nil {
		return nil
	}
	return a.cg.g
}

// forkCgroupArgs tells a worker forked by the fork server (born in the
// app's group) to move itself into its leaf before the app's code runs.
func forkCgroupArgs(leaf *cgroup.Group) []string {
	if leaf == nil {
		return nil
	}
	return []string{"--cgroup", leaf.Dir()}
}

// dropLeaf kills whatever is left in a worker's leaf, double-forked
// daemons included, and removes it. It runs once the worker is reaped,
// whatever ended it.
func (a *App) dropLeaf(id string, leaf *cgroup.Group) {
	if leaf == nil {
		return
	}
	// A tenant may have moved one of the app's own processes, its fork
	// server say, into this leaf (cgroup.Group.MoveOut): it goes back to
	// the app's group rather than die with the leaf.
	moved, err := leaf.MoveOut(a.cg.g, a.cg.spared)
	if err != nil {
		a.log.Warn("cannot move the app's processes out of a worker's cgroup before it is killed", "worker", id, "error", err)
	}
	for _, pid := range moved {
		a.log.Warn("moved a process of the app's back out of a worker's cgroup, which it had been moved into", "worker", id, "pid", pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cgroupKillTimeout)
	defer cancel()
	if err := leaf.Kill(ctx); err != nil {
		a.log.Warn("cannot kill what a worker left in its cgroup", "worker", id, "error", err)
		return
	}
	if err := leaf.Remove(ctx); err != nil {
		a.log.Warn("cannot remove a worker's cgroup", "worker", id, "error", err)
	}
}

// killStrays kills what sits in the app's group itself but is neither a
// fork server of the app nor one of its workers (a forked worker is
// there until it has moved into its leaf, or for good if it could not):
// a process a worker started that moved itself out of the worker's leaf,
// which the leaf's kill missed (cgroup.Group.KillStrays). It runs on the
// App's loop as a worker's end is handled, when every worker started is
// in a.procs.
func (a *App) killStrays() {
	if a.cg == nil {
		return
	}
	keep := a.ownPIDs()
	killed, err := a.cg.g.KillStrays(func(pid int) bool { return keep[pid] })
	if err != nil {
		a.log.Warn("cannot look for processes that left their worker's cgroup", "error", err)
	}
	for _, pid := range killed {
		a.log.Warn("killed a process that had moved out of its worker's cgroup", "pid", pid)
		a.note(fmt.Sprintf("killed process %d: it had moved itself out of its worker's cgroup, which is killed when the worker ends", pid))
	}
}

// ownPIDs are the pids of the app's workers and fork servers. It runs
// on the App's loop.
func (a *App) ownPIDs() map[int]bool {
	own := map[int]bool{}
	for _, p := range a.procs {
		own[p.PID()] = true
	}
	for _, fs := range append([]ForkServer{a.forks.cur}, a.forks.retired...) {
		if fs != nil {
			own[fs.PID()] = true
		}
	}
	return own
}

// spared says whether pid, found in a worker's leaf that is about to be
// killed, is one of the app's own processes: a worker or fork server the
// App knew at the end of its last step, or any child of the daemon's (a
// fork server started in the step under way; tenants' processes are
// never the daemon's children).
func (c *appCgroup) spared(pid int) bool {
	if own := c.own.Load(); own != nil && (*own)[pid] {
		return true
	}
	return parentOf(pid) == os.Getpid()
}

// parentOf is pid's parent's pid from /proc, or 0.
func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// "pid (comm) state ppid ...": comm may hold anything, ")" included.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// oomVictim says whether p, just reaped, was killed by the kernel's OOM
// killer: it died of a SIGKILL pyhost did not send, and the app's group
// counts an OOM kill not yet put down to another worker. It returns the
// limit reached, as the log says it ("memory.max 512MiB reached"), or "".
func (a *App) oomVictim(p Proc) string {
	if a.cg == nil {
		return ""
	}
	var ee *child.ExitError
	err := p.ExitErr()
	serverDied := errors.Is(err, workerproc.ErrForkServer) && !errors.Is(err, workerproc.ErrNoReport)
	if !serverDied && (!errors.As(err, &ee) || !ee.External) {
		return ""
	}
	st, serr := a.cg.g.Stats()
	if serr != nil || st.Have&cgroup.HaveOOMKills == 0 {
		return ""
	}
	if serverDied {
		// The OOM killer may pick the fork server (the biggest process,
		// or a tenant raised its oom_score_adj): its workers die with
		// it, by a signal of the kernel's, not the OOM killer's. Each of
		// them went for the one kill; the first claims it.
		for {
			seen := a.cg.oomSeen.Load()
			if st.OOMKills <= seen {
				break
			}
			if a.cg.oomSeen.CompareAndSwap(seen, seen+1) {
				a.cg.serverOOM.Store(st.OOMKills)
				return a.cg.limitReached() + serverOOMNote
			}
		}
		if n := a.cg.serverOOM.Load(); n == 0 || n != st.OOMKills {
			return ""
		}
		return a.cg.limitReached() + serverOOMNote
	}
	for {
		seen := a.cg.oomSeen.Load()
		if st.OOMKills <= seen {
			return ""
		}
		if a.cg.oomSeen.CompareAndSwap(seen, seen+1) {
			break
		}
	}
	return a.cg.limitReached()
}

// serverOOMNote ends the OOM reason of a worker whose fork server the
// OOM killer killed.
const serverOOMNote = " (it killed the app's fork server, and the worker died with it)"

func (c *appCgroup) limitReached() string {
	m := c.memMax.Load()
	if st, err := c.g.Stats(); err == nil && st.Have&cgroup.HaveMemoryMax != 0 {
		m = st.MemoryMax // the kernel's: a lowered limit may be pending
	}
	if m > 0 {
		return "memory.max " + config.FormatSize(m) + " reached"
	}
	return "the memory limit of the user's apps (max_memory) reached"
}

// watchOOM says in the app's log each time the kernel's OOM killer kills
// a process of the app (a worker, or anything it started), as it
// happens; the worker's own end is logged by the core with the same
// figure.
func (a *App) watchOOM(ctx context.Context) {
	if a.cg == nil {
		return
	}
	ch, err := a.cg.g.WatchOOM(ctx)
	if err != nil {
		if !errors.Is(err, cgroup.ErrUnsupported) {
			a.log.Warn("cannot watch the app's cgroup for OOM kills", "error", err)
		}
		return
	}
	go func() {
		for ev := range ch {
			what := "a process"
			if ev.Kills > 1 {
				what = strconv.FormatInt(ev.Kills, 10) + " processes"
			}
			msg := fmt.Sprintf("the kernel's OOM killer killed %s of this app: %s (%d since the app's cgroup was made)", what, a.cg.limitReached(), ev.Total)
			a.log.Warn(msg)
			a.note(msg)
		}
	}()
}

// killGroup kills everything left in the app's group once it has no
// worker and no fork server: what they double-forked, on a host without
// worker leaves.
func (a *App) killGroup() {
	if a.cg == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cgroupKillTimeout)
	defer cancel()
	if err := a.cg.g.Kill(ctx); err != nil {
		a.log.Warn("cannot kill what is left in the app's cgroup", "error", err)
	}
}

// closeGroup ends the app's group when Run returns: the app is removed,
// or the daemon stops.
func (a *App) closeGroup() {
	if a.cg == nil {
		return
	}
	a.killGroup()
	ctx, cancel := context.WithTimeout(context.Background(), cgroupKillTimeout)
	defer cancel()
	if err := a.cg.g.Remove(ctx); err != nil {
		a.log.Warn("cannot remove the app's cgroup", "error", err)
		return
	}
	// The user's group goes with their last app.
	if _, err := a.cg.g.RemoveUser(ctx); err != nil {
		a.log.Warn("cannot remove the cgroup of the app's user", "error", err)
	}
}

// cgroupStatus adds the group's figures to s: MemoryMax is the
// memory_max last asked for, CgroupStats.MemoryMax the one in force
// (cgroup.MemoryLimits tells them apart).
func (a *App) cgroupStatus(s *Status) {
	if a.cg == nil {
		return
	}
	s.Cgroup = a.cg.g.Path()
	s.MemoryMax = a.cg.memMax.Load()
	if st, err := a.cg.g.Stats(); err == nil {
		s.CgroupStats = st
	}
}

// reasonOf maps a recycle to the restart reason it is counted as.
func reasonOf(k RecycleKind) string {
	switch k {
	case RecycleMemory:
		return control.RestartMemory
	case RecycleRequests:
		return control.RestartRequests
	case RecycleTimeout:
		return control.RestartTimeout
	}
	return control.RestartReload
}
