// Package cgroup is pyhost's kernel side of containment (issue 14,
// PRODUCT.md C1–C4, C6): it finds out what the host's cgroups offer,
// builds one group per user and per app under the daemon, writes the
// app's limits there, places a child in its group at birth, reports the
// group's figures and its OOM kills, and kills everything in a group,
// double-forked descendants included.
//
// It owns the cgroup files and nothing else: it does not read the config
// (config parses the app keys with the helpers here and hands over a
// Limits), start processes of its own (the spawner calls Group.Start on
// its thread), decide when to kill (the supervisor does) or log (it
// returns errors, and the caller says once what the host cannot enforce).
//
// # Hosts
//
// Detect reports one of four shapes, and everything else follows from it:
//
//   - ModeV2, pure cgroup v2 (Debian 12, Ubuntu 22.04 and later): one
//     hierarchy for membership, kill, events and limits; the controllers
//     are those in the daemon's cgroup.controllers.
//   - ModeHybrid (this project's machines): cgroup2 mounted apart (often at
//     /sys/fs/cgroup/unified) with no controllers, still good for
//     membership, cgroup.kill and cgroup.events; the limits live in the v1
//     hierarchies memory, cpu and pids, where a group of the same path is
//     made in each.
//   - ModeV1: v1 hierarchies only; memory, cpu, cpuacct and pids for limits
//     and figures, freezer for killing.
//   - ModeNone: no cgroups; the caller keeps process groups and polling.
//
// # The tree
//
// Open builds the tree's base in every hierarchy: the daemon's own cgroup
// (under systemd, pyhost.service with Delegate=yes), or a named directory
// below it (TreeOptions). Apps go to base/apps/USER/APP, the user's group
// carrying the per-user totals. On v2, the controllers memory, cpu, pids
// and io are switched on in cgroup.subtree_control along the way down to
// the user's group. Because v2 forbids processes in a group whose
// controllers are given to its children, a daemon whose base is its own
// cgroup first moves itself into base/daemon; Open must therefore run
// before the daemon starts any child. Where the cpu controller is a v1
// hierarchy, the proxy is started in base/daemon of that hierarchy
// (Tree.Daemon), a cpu group of its own among the apps'.
//
// An app group's own subtree_control stays empty, so the app group may
// hold processes (its fork server) and also have per-worker leaves,
// base/apps/USER/APP/WORKER (App.Worker): these carry membership only —
// cgroup.kill for one worker's descendants at recycle, cgroup.events, and
// cpu.stat's usage, which v2 keeps in every group — not limits or
// memory.current. Hence memory_limit's graceful recycle stays per process
// (RSS from /proc, as before): a worker forked from a fork server shares
// pages that v2 charges to the group that first touched them, and a
// process moved between groups leaves its charges behind, so a
// per-worker memory.current would not mean "this worker's memory"; and
// memory.current counts page cache, which memory_limit never did. The
// kernel enforces the hard limits on the app's group as a whole.
//
// # Placement
//
// Group.Start starts a command inside the group from its first
// instruction. On v2 that is CLONE_INTO_CGROUP (SysProcAttr.UseCgroupFD).
// CLONE_INTO_CGROUP does not reach v1 hierarchies, so for those Start
// uses a v1 property instead: v1 groups hold threads, and a child is
// born in the groups of the thread that forked it. Start moves its own
// (locked) OS thread into the app's v1 groups by writing its thread id to
// each hierarchy's tasks file, starts the child, and moves the thread
// back. The alternatives were worse: writing the pid to cgroup.procs after
// Start leaves a window where the child runs, and may fork, outside its
// limits, and v1 does not move the memory charged in that window; a helper
// that places itself and then execs costs an exec per spawn. Go creates
// new runtime threads from a clean template thread, never from a locked
// one, so the move cannot leak into the runtime's threads. Start must run
// on a locked thread that is not the process's main thread (moving the
// main thread would move the daemon's memory accounting for that moment):
// privdrop's spawner thread.
//
// A child that the fork server forks is born in the fork server's groups,
// the app's. To reach its worker leaf before any app code runs, it moves
// itself there as its first act (writing "0" to the leaf's
// cgroup.procs), which Group.LetMove allows: the app's user gets the
// cgroup.procs files of the app's group and its leaves, and so can move
// its processes among them and nowhere else (v2's delegation rule wants
// write access to the destination's and the common ancestor's
// cgroup.procs). Attach does the same from the daemon's side, for a
// process already running.
//
// # Limits
//
// Limits maps the app keys to files: memory_max to memory.max
// (v1 memory.limit_in_bytes), memory_high to memory.high (v1
// memory.soft_limit_in_bytes, which is weaker: v1 only reclaims down to it
// under global memory pressure and never throttles), cpu_weight to
// cpu.weight (v1 cpu.shares, weight×1024/100 as systemd maps it), cpu_max
// to cpu.max (v1 cpu.cfs_quota_us and cpu.cfs_period_us), tasks_max to
// pids.max, io_weight to io.weight (v2 only: v1 blkio has a weight only
// under the CFQ and BFQ schedulers, and pyhost does not chase those). A
// limit the host cannot enforce is an UnsupportedError naming what is
// missing; the caller decides, and logs it once.
//
// # OOM kills
//
// Group.WatchOOM reports increases of the OOM-kill counter. On v2 that is
// memory.events' oom_kill, read when inotify reports IN_MODIFY, which the
// kernel raises on every change of memory.events. On v1 it is
// memory.oom_control's oom_kill, polled (TreeOptions.PollInterval, 1 s by
// default): v1 counts a kill only in the victim's own group, not its
// ancestors, so the watch sums the subtree; and v1's eventfd notice
// (cgroup.event_control) fires when the group starts to be out of memory,
// before the kill is counted, so it would need a poll behind it anyway.
//
// # Killing
//
// Group.Kill writes 1 to the v2 cgroup.kill (Linux 5.14 and later; it
// kills the whole subtree, including processes that setsid() and
// double-forked away from the worker) and waits for cgroup.events to say
// "populated 0". Without cgroup.kill it freezes the group (v2
// cgroup.freeze or the v1 freezer), SIGKILLs every process listed in the
// subtree's cgroup.procs, thaws, and repeats until the subtree is empty or
// the context ends. Group.Remove then removes the directories, retrying
// while the kernel still counts exiting tasks (EBUSY). An app's and a
// user's groups, which take new children after a kill, are always killed
// the freezer's way: on kernels with per-group kill counts a child
// placed by CLONE_INTO_CGROUP into a group once killed through
// cgroup.kill is killed at birth (seen on 6.18).
//
// Because the app's user may write the app group's cgroup.procs (to
// move a forked worker into its leaf), a process may also move itself
// out of its worker's leaf into the app's group; Group.KillStrays kills
// what sits there that the caller does not know as its own.
//
// # Changes
//
// Limits change while processes run: Limits.Looser is what a rolling
// reload writes while old and new workers run side by side (a lowered
// memory limit would make v2 OOM-kill, and v1 refuse with EBUSY, for
// memory the old ones hold); the new limits follow once they are gone. A
// user's totals follow the admin's config through Tree.SetUserLimits
// and Group.SettleUser.
//
// # Dead daemons
//
// Tree.Claim marks a tree's base with its daemon (an xattr: pid, start
// time, pid namespace); Tree.Orphans finds the trees next to it whose
// daemon died, for the next daemon to kill and remove, whatever its own
// tree's name (pyhostd serve takes a new one each run).
package cgroup
