package master

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/child"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/supervisor"
	"github.com/pyhost/pyhost/workerproc"
)

// The daemon's side of containment (issue 14, C1–C4, C6): it finds out
// once what the host's cgroups offer, builds the daemon's tree before any
// child starts, sweeps what a daemon that died left in it, hands each app
// its group (limits and placement are the supervisor's), and kills and
// removes the whole tree when the daemon exits. Without a writable
// hierarchy there is no tree: workers keep their process groups, and
// memory_limit is polled, as before; the log says so once.

// cgroupSweepTimeout bounds the start-up sweep and the exit kill of the
// whole tree: cgroup.kill is immediate, the wait is for reaping.
const cgroupSweepTimeout = 10 * time.Second

// openCgroups detects the host's cgroups, logs what they offer once,
// and opens the daemon's tree when it may write there. It must run
// before the daemon starts any child (on cgroup v2 the daemon may move
// itself into a leaf of its own). Failure is not fatal: the daemon runs
// without cgroups, and says why.
func (m *Master) openCgroups() {
	if os.Getenv("PYHOST_CGROUPS") == "0" {
		// The admin's way out (and the benchmark's baseline): as on a
		// host without cgroups.
		m.log.Warn("PYHOST_CGROUPS=0: no cgroups; limits are enforced by polling only, and workers are contained by process groups")
		return
	}
	host, err := cgroup.Detect()
	if err != nil {
		m.log.Warn("cannot read the host's cgroups; workers are contained by process groups and limits are enforced by polling only", "error", err)
		return
	}
	if host.Mode == cgroup.ModeNone || !host.Writable {
		// Expected of express mode as an ordinary user, so said plainly;
		// a root daemon was meant to contain its apps.
		say := m.log.Info
		if os.Geteuid() == 0 {
			say = m.log.Warn
		}
		say(host.String())
		say("no cgroup the daemon may write: limits (memory_max, cpu_max, tasks_max, ...) are not enforced by the kernel; memory_limit is enforced by polling only, and workers are contained by process groups")
		return
	}
	opts := cgroup.TreeOptions{Name: treeName(host, m.cfg.SocketDir)}
	tree, err := cgroup.Open(host, opts)
	if err != nil {
		m.log.Warn("cannot make the daemon's cgroups; limits are enforced by polling only, and workers are contained by process groups", "cgroups", host.String(), "error", err)
		return
	}
	// A daemon that died (SIGKILL, a crash) left its workers and what
	// they forked in the tree, which this daemon's name finds again.
	// Its groups go too, and the tree is made anew: a group killed
	// through cgroup.kill must not take children again (cgroup.Kill).
	ctx, cancel := context.WithTimeout(context.Background(), cgroupSweepTimeout)
	defer cancel()
	if err := tree.Kill(ctx); err != nil {
		m.log.Warn("cannot kill what a previous daemon left in its cgroups", "error", err)
	} else if err := tree.Remove(ctx); err != nil {
		m.log.Warn("cannot remove what a previous daemon left in its cgroups", "error", err)
	} else if tree, err = cgroup.Open(host, opts); err != nil {
		m.log.Warn("cannot make the daemon's cgroups; limits are enforced by polling only, and workers are contained by process groups", "cgroups", host.String(), "error", err)
		return
	}
	m.log.Info(host.String())
	m.log.Info(tree.String())
	if opts.Name != "" {
		m.sweepOrphans(ctx, tree)
	}
	if f := m.userMaxMemory(); f != nil {
		// [users.NAME] max_memory as in force now: reload-config
		// changes it without touching the user's apps.
		tree.SetUserLimits(func(user string) cgroup.Limits { return cgroup.Limits{MemoryMax: f(user)} })
	}
	m.cgroups = tree
}

// sweepOrphans marks the tree as this daemon's, then kills and removes
// the trees next to it whose daemon died: the sweep above finds only a
// tree of this daemon's name, and `pyhostd serve` takes a new name (a new
// temporary state directory) each run, so what a SIGKILLed serve left,
// double-forked children included, would otherwise run on for ever.
func (m *Master) sweepOrphans(ctx context.Context, tree *cgroup.Tree) {
	if err := tree.Claim(); err != nil {
		m.log.Info("the daemon's cgroups are not marked as its own; should it die, no later daemon will sweep them", "error", err)
	}
	for _, name := range tree.Orphans() {
		o, err := tree.OpenOrphan(name)
		if err == nil {
			err = o.Kill(ctx)
		}
		if err == nil {
			err = o.Remove(ctx)
		}
		if err != nil {
			m.log.Warn("cannot sweep the cgroups a dead daemon left", "tree", name, "error", err)
			continue
		}
		m.log.Info("swept the cgroups a dead daemon left", "tree", name)
	}
}

// treeName names the daemon's tree below its own cgroup. Two daemons of
// the host may share that cgroup (serve runs next to a system daemon,
// tests run several), and each must find, and sweep, only its own; the
// state directory is what tells daemons apart (one per directory, O6).
// The exception is a pure cgroup v2 systemd unit with Delegate=yes, a
// cgroup of its own: there the tree is the unit's cgroup itself, as
// cgroup.Open recommends, since a group below it could not be handed
// controllers while the daemon's own process sits in the unit's.
func treeName(h cgroup.Host, stateDir string) string {
	if h.Mode == cgroup.ModeV2 && strings.HasSuffix(h.V2.Self, ".service") {
		return ""
	}
	sum := sha256.Sum256([]byte(filepath.Clean(stateDir)))
	return "pyhost-" + hex.EncodeToString(sum[:4])
}

// appCgroup returns the group of an app about to start, with its user's
// totals applied to the user's group; nil when the daemon has no tree
// (then the app runs as without cgroups).
func (m *Master) appCgroup(a config.App) *cgroup.Group {
	if m.cgroups == nil {
		return nil
	}
	user := a.Cred.Username
	g, err := m.cgroups.App(user, a.Name)
	if err != nil {
		m.log.Warn("no cgroup for the app; it runs without one", "app", a.Key(), "error", err)
		return nil
	}
	// The user's totals, before the app's first process; the app's
	// supervisor settles them again as the admin's config changes.
	if err := g.SettleUser(); err != nil && !errors.Is(err, cgroup.ErrUnsupported) {
		m.log.Warn("cannot apply the user's max_memory to their cgroup", "user", user, "error", err)
	} else if err != nil {
		m.log.Warn("the user's max_memory is not enforced by the kernel", "user", user, "error", err)
	}
	return g
}

// closeCgroups kills everything left in the tree and removes it, once
// every app has stopped: whatever an app double-forked dies with the
// daemon (C4).
func (m *Master) closeCgroups() {
	if m.cgroups == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cgroupSweepTimeout)
	defer cancel()
	if err := m.cgroups.Kill(ctx); err != nil {
		m.log.Warn("cannot kill what is left in the daemon's cgroups", "error", err)
	}
	if err := m.cgroups.Remove(ctx); err != nil {
		m.log.Warn("cannot remove the daemon's cgroups", "error", err)
	}
}

// containmentStatus adds the app's cgroup figures and its restarts by
// reason to its row of pyctl status.
func containmentStatus(as *control.AppStatus, st supervisor.Status) {
	as.RestartsByReason = st.RestartsByReason
	if as.RestartsByReason == nil {
		as.RestartsByReason = map[string]int{}
	}
	if st.Cgroup == "" {
		return
	}
	cs := st.CgroupStats
	as.Cgroup = st.Cgroup
	as.MemoryCurrentBytes = cs.MemoryCurrent
	as.MemoryMaxBytes, as.MemoryMaxPendingBytes = cgroup.MemoryLimits(st.MemoryMax, cs)
	as.CgroupCPUSeconds = cs.CPUUsage.Seconds()
	as.Tasks = cs.Tasks
	as.OOMKills = cs.OOMKills
	as.ThrottledSeconds = cs.Throttled.Seconds()
}

// proxyStarter starts the proxy in the daemon's cpu group
// (cgroup.Tree.Daemon) where the host has one, else as before.
func (m *Master) proxyStarter() child.Starter {
	if m.cgroups == nil {
		return m.spawner
	}
	g, err := m.cgroups.Daemon()
	if err != nil {
		if !errors.Is(err, cgroup.ErrUnsupported) {
			m.log.Warn("no cpu group of its own for the proxy; it runs in the daemon's", "error", err)
		}
		return m.spawner
	}
	return workerproc.StarterIn(m.spawner, g)
}
