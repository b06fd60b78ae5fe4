package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type groupKind int

const (
	kindApps groupKind = iota // base/apps: the daemon's whole load
	kindUser
	kindApp
	kindWorker
	kindDaemon // base/daemon: the proxy, in the v1 cpu hierarchy only (daemon.go)
)

// v1dir is a group's directory in one v1 hierarchy.
type v1dir struct {
	h   *hier
	dir string
}

// Group is one cgroup of the tree, in every hierarchy the host has: a
// user's, an app's, or a worker's leaf. A Group is a handle (paths); it
// holds no descriptor, and several handles on one group are fine.
type Group struct {
	t    *Tree
	kind groupKind
	rel  string // below the base: "apps/alice/blog"
	v2   string // directory in cgroup2; "" without it
	// v1 are the v1 directories whose limits and figures are the
	// group's; place those a child is put in. They differ for a worker,
	// whose leaf exists in v2 only: its children go into the app's v1
	// groups, whose figures are the app's, not the worker's.
	v1, place []v1dir
}

// Path is the group's path below the tree's base: "apps/alice/blog".
func (g *Group) Path() string { return g.rel }

// Dir is the group's directory in cgroup2, or in the first v1 hierarchy
// on a v1-only host.
func (g *Group) Dir() string {
	if g.v2 != "" {
		return g.v2
	}
	return g.place[0].dir
}

// Worker returns a leaf of the app's group for one worker,
// base/apps/USER/APP/ID, making it if needed. Leaves exist in cgroup2
// only and carry membership, not limits: Kill and WaitEmpty on the leaf
// reach that worker and whatever it forked; Stats has its CPU usage. A
// host without cgroup2 has no leaves: ErrUnsupported.
func (g *Group) Worker(id string) (*Group, error) {
	if g.kind != kindApp {
		return nil, fmt.Errorf("cgroup: worker leaves go below an app's group, not %s", g.rel)
	}
	if err := validName(id); err != nil {
		return nil, err
	}
	if g.v2 == "" {
		return nil, fmt.Errorf("cgroup: worker leaves need cgroup v2: %w", ErrUnsupported)
	}
	w := &Group{t: g.t, kind: kindWorker, rel: path.Join(g.rel, id), v2: filepath.Join(g.v2, id), place: g.place}
	g.t.mu.Lock()
	defer g.t.mu.Unlock()
	if err := g.t.mkdir(w.v2); err != nil {
		return nil, err
	}
	return w, nil
}

// Apply writes l to the group's limit files, every key of it: one left
// at zero is written as the kernel's default, lifting an earlier limit.
// A limit asked for that the host cannot enforce is an UnsupportedError;
// the rest is still written. Errors are joined, one per key. A worker's
// leaf carries no limits.
func (g *Group) Apply(l Limits) error {
	if g.kind == kindWorker || g.kind == kindApps || g.kind == kindDaemon {
		return fmt.Errorf("cgroup: %s carries no limits", g.rel)
	}
	var errs []error
	for _, lim := range limitKeys {
		if err := g.applyKey(l, lim.key, lim.controller); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (g *Group) applyKey(l Limits, key, controller string) error {
	var dir string
	var writes []fileWrite
	if g.v2 != "" && g.t.hasV2(controller) {
		dir, writes = g.v2, l.v2Files(key)
	} else if d := g.v1dir(controller); d != "" && controller != "io" {
		dir, writes = d, l.v1Files(key)
	} else {
		if l.set(key) {
			return &UnsupportedError{Key: key, Missing: g.t.missing(controller)}
		}
		return nil
	}
	for _, w := range writes {
		file := filepath.Join(dir, w.file)
		err := g.t.k.write(file, w.value)
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist) && !l.set(key):
			return nil // nothing to lift
		case errors.Is(err, fs.ErrNotExist):
			return &UnsupportedError{Key: key, Missing: "no " + file}
		default:
			return fmt.Errorf("cgroup: %s: %w", key, err)
		}
	}
	return nil
}

func (t *Tree) hasV2(c string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.enabled {
		if e == c {
			return true
		}
	}
	return false
}

// v1dir is the group's directory in the v1 hierarchy of controller c, or
// "".
func (g *Group) v1dir(c string) string {
	for _, d := range g.v1 {
		for _, hc := range d.h.ctrls {
			if hc == c {
				return d.dir
			}
		}
	}
	return ""
}

// Figures says which fields of Stats the host provides.
type Figures uint

const (
	HaveMemory     Figures = 1 << iota // MemoryCurrent
	HaveMemoryPeak                     // MemoryPeak
	HaveCPU                            // CPUUsage
	HaveThrottled                      // Throttled
	HaveTasks                          // Tasks
	HaveOOMKills                       // OOMKills
	HaveMemoryMax                      // MemoryMax
)

// Stats are a group's figures, its subtree's included. A figure the host
// does not provide is zero, and its bit is clear in Have.
type Stats struct {
	MemoryCurrent int64         // bytes in use, page cache included
	MemoryPeak    int64         // the most since the group was made
	CPUUsage      time.Duration // CPU time used, user and system
	Throttled     time.Duration // time held back by cpu_max
	Tasks         int64         // processes and threads
	OOMKills      int64         // processes the kernel's OOM killer killed
	// MemoryMax is the memory limit the kernel enforces on the group
	// now, 0 for none: not always the one last asked for, since v1
	// refuses to lower it below what the group uses (EBUSY).
	MemoryMax int64
	Have      Figures
}

// Stats reads the group's figures. An error means the group is gone or
// a file could not be parsed.
func (g *Group) Stats() (Stats, error) {
	var s Stats
	read := func(file string) ([]byte, bool, error) {
		b, err := g.t.k.read(file)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, false, nil
		}
		return b, err == nil, err
	}
	if _, err := os.Stat(g.Dir()); err != nil {
		return s, fmt.Errorf("cgroup: %w", err)
	}
	value := func(file string, into *int64, bit Figures) error {
		if s.Have&bit != 0 {
			return nil
		}
		b, ok, err := read(file)
		if !ok {
			return err
		}
		n, err := parseValue(b)
		if err != nil {
			return fmt.Errorf("cgroup: %s: %w", file, err)
		}
		*into, s.Have = n, s.Have|bit
		return nil
	}
	keyed := func(file, key string, bit Figures, set func(int64)) error {
		if s.Have&bit != 0 {
			return nil
		}
		b, ok, err := read(file)
		if !ok {
			return err
		}
		if n, ok := parseKeyed(b)[key]; ok {
			set(n)
			s.Have |= bit
		}
		return nil
	}
	var errs []error
	if g.v2 != "" {
		d := g.v2
		errs = append(errs,
			value(filepath.Join(d, "memory.current"), &s.MemoryCurrent, HaveMemory),
			value(filepath.Join(d, "memory.peak"), &s.MemoryPeak, HaveMemoryPeak),
			value(filepath.Join(d, "memory.max"), &s.MemoryMax, HaveMemoryMax),
			keyed(filepath.Join(d, "memory.events"), "oom_kill", HaveOOMKills, func(n int64) { s.OOMKills = n }),
			// usage_usec is kept in every v2 group, with or without the
			// cpu controller; throttled_usec needs it.
			keyed(filepath.Join(d, "cpu.stat"), "usage_usec", HaveCPU, func(n int64) { s.CPUUsage = time.Duration(n) * time.Microsecond }),
			keyed(filepath.Join(d, "cpu.stat"), "throttled_usec", HaveThrottled, func(n int64) { s.Throttled = time.Duration(n) * time.Microsecond }),
			value(filepath.Join(d, "pids.current"), &s.Tasks, HaveTasks),
		)
	}
	if d := g.v1dir("memory"); d != "" {
		errs = append(errs,
			value(filepath.Join(d, "memory.usage_in_bytes"), &s.MemoryCurrent, HaveMemory),
			value(filepath.Join(d, "memory.max_usage_in_bytes"), &s.MemoryPeak, HaveMemoryPeak),
			value(filepath.Join(d, "memory.limit_in_bytes"), &s.MemoryMax, HaveMemoryMax))
		if s.Have&HaveOOMKills == 0 {
			n, ok, err := g.v1OOMKills(d)
			errs = append(errs, err)
			if ok {
				s.OOMKills, s.Have = n, s.Have|HaveOOMKills
			}
		}
	}
	if d := g.v1dir("cpuacct"); d != "" && s.Have&HaveCPU == 0 {
		var ns int64
		errs = append(errs, value(filepath.Join(d, "cpuacct.usage"), &ns, HaveCPU))
		s.CPUUsage = time.Duration(ns)
	}
	if d := g.v1dir("cpu"); d != "" {
		errs = append(errs, keyed(filepath.Join(d, "cpu.stat"), "throttled_time", HaveThrottled, func(n int64) { s.Throttled = time.Duration(n) }))
	}
	if d := g.v1dir("pids"); d != "" {
		errs = append(errs, value(filepath.Join(d, "pids.current"), &s.Tasks, HaveTasks))
	}
	if s.MemoryMax == unlimited {
		s.MemoryMax = 0
	}
	return s, errors.Join(errs...)
}

// v1OOMKills sums memory.oom_control's oom_kill over dir's subtree: v1
// counts a kill only in the victim's own group.
func (g *Group) v1OOMKills(dir string) (int64, bool, error) {
	dirs, err := subdirs(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("cgroup: %w", err)
	}
	var sum int64
	found := false
	for _, d := range append(dirs, dir) {
		b, err := g.t.k.read(filepath.Join(d, "memory.oom_control"))
		if err != nil {
			continue // removed meanwhile, or a kernel before 4.13
		}
		if n, ok := parseKeyed(b)["oom_kill"]; ok {
			sum, found = sum+n, true
		}
	}
	return sum, found, nil
}

// OpenFD opens the group's cgroup2 directory for SysProcAttr.CgroupFD
// (O_PATH: it grants nothing but naming the group). The caller closes
// it. Without cgroup2 it is ErrUnsupported.
func (g *Group) OpenFD() (int, error) {
	if g.v2 == "" {
		return -1, fmt.Errorf("cgroup: no cgroup2 directory: %w", ErrUnsupported)
	}
	fd, err := unix.Open(g.v2, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("cgroup: open %s: %w", g.v2, err)
	}
	return fd, nil
}

// errMainThread: Start cannot use the main thread for v1 placement.
var errMainThread = errors.New("cgroup: Start on the main thread would move the daemon's memory accounting into the group; start from the spawner thread")

// Start starts cmd with the child in the group from its first
// instruction: in cgroup2 by CLONE_INTO_CGROUP (it sets
// cmd.SysProcAttr's UseCgroupFD and CgroupFD; before Linux 5.7, which
// lacks it, by writing the pid to cgroup.procs as soon as cmd.Start
// returns, when the child has just exec'd), in v1 hierarchies by
// moving the calling OS thread into the group for the moment of the fork
// (see the package doc). Call it where cmd.Start would be called, on the
// spawner's locked thread; on a host with v1 hierarchies, never from the
// process's main thread. If the thread cannot be moved back, the child
// is killed and reaped, and the error says so.
func (g *Group) Start(cmd *exec.Cmd) error {
	if g.v2 != "" && g.t.cloneInto {
		fd, err := g.OpenFD()
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	}
	if len(g.place) == 0 {
		return g.joinV2(cmd, cmd.Start())
	}
	// Locking nests: on the spawner thread, which is locked for ever,
	// this changes nothing; elsewhere it keeps the goroutine on the
	// thread that was moved until it is back home.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	if tid == os.Getpid() {
		return errMainThread
	}
	if err := g.moveThread(tid); err != nil {
		return err
	}
	startErr := cmd.Start()
	if err := g.threadHome(tid); err != nil {
		if startErr == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		return errors.Join(startErr, err)
	}
	return g.joinV2(cmd, startErr)
}

// joinV2 moves a child that was started without CLONE_INTO_CGROUP (a
// kernel before 5.7) into the group's v2 directory; if it cannot, the
// child is killed and reaped.
func (g *Group) joinV2(cmd *exec.Cmd, startErr error) error {
	if startErr != nil || g.v2 == "" || g.t.cloneInto {
		return startErr
	}
	if err := g.t.k.write(filepath.Join(g.v2, "cgroup.procs"), strconv.Itoa(cmd.Process.Pid)); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("cgroup: place %s in %s: %w", cmd.Path, g.v2, err)
	}
	return nil
}

// moveThread writes tid to the tasks file of each of the group's v1
// directories; on failure it moves it back.
func (g *Group) moveThread(tid int) error {
	id := strconv.Itoa(tid)
	for i, d := range g.place {
		if err := g.t.k.write(filepath.Join(d.dir, "tasks"), id); err != nil {
			err = fmt.Errorf("cgroup: place the spawner thread in %s: %w", d.dir, err)
			return errors.Join(err, g.homeThread(id, g.place[:i]))
		}
	}
	return nil
}

// threadHome moves tid back into the daemon's own v1 cgroups.
func (g *Group) threadHome(tid int) error {
	return g.homeThread(strconv.Itoa(tid), g.place)
}

func (g *Group) homeThread(id string, dirs []v1dir) error {
	var errs []error
	for _, d := range dirs {
		if err := g.t.k.write(filepath.Join(d.h.home, "tasks"), id); err != nil {
			errs = append(errs, fmt.Errorf("cgroup: the spawner thread stays in %s: %w", d.dir, err))
		}
	}
	return errors.Join(errs...)
}

// Attach moves the running process pid (all its threads) into the group
// in every hierarchy: for a worker forked by the fork server, which is
// born in the app's group, into its own leaf. Whatever pid forked before
// the move stays where it was born.
func (g *Group) Attach(pid int) error {
	id := strconv.Itoa(pid)
	var errs []error
	if g.v2 != "" {
		if err := g.t.k.write(filepath.Join(g.v2, "cgroup.procs"), id); err != nil {
			errs = append(errs, fmt.Errorf("cgroup: attach %d: %w", pid, err))
		}
	}
	for _, d := range g.place {
		if err := g.t.k.write(filepath.Join(d.dir, "cgroup.procs"), id); err != nil {
			errs = append(errs, fmt.Errorf("cgroup: attach %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

// LetMove lets processes of uid move themselves between the app's group
// and its worker leaves, and nowhere else: it gives uid the cgroup.procs
// file of each (cgroup v2's delegation rule: a process may move a process
// of its own uid when it can write the cgroup.procs of the destination
// and of the common ancestor). Call it on the app's group and on each
// worker leaf; a forked worker then writes "0" to its leaf's
// cgroup.procs as the first thing it does, before any app code runs.
// Limits stay root's: no other file changes hands, and the user cannot
// make groups. Without cgroup2 it is ErrUnsupported.
func (g *Group) LetMove(uid, gid int) error {
	if g.kind != kindApp && g.kind != kindWorker {
		return fmt.Errorf("cgroup: only an app's group and its leaves are shared with the app's user, not %s", g.rel)
	}
	if g.v2 == "" {
		return fmt.Errorf("cgroup: moves need cgroup v2: %w", ErrUnsupported)
	}
	f := filepath.Join(g.v2, "cgroup.procs")
	if err := os.Chown(f, uid, gid); err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	return nil
}

// members is the directory whose subtree lists the group's processes:
// cgroup2's, else the v1 freezer's (which Kill can freeze), else the
// first v1 hierarchy's.
func (g *Group) members() string {
	if g.v2 != "" {
		return g.v2
	}
	for _, d := range g.place {
		for _, c := range d.h.ctrls {
			if c == "freezer" {
				return d.dir
			}
		}
	}
	return g.place[0].dir
}

// Procs lists the processes in the group and below it.
func (g *Group) Procs() ([]int, error) {
	dir := g.members()
	dirs, err := subdirs(dir)
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	var all []int
	for _, d := range append(dirs, dir) {
		b, err := g.t.k.read(filepath.Join(d, "cgroup.procs"))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("cgroup: %w", err)
		}
		pids, err := parsePIDs(b)
		if err != nil {
			return nil, err
		}
		all = append(all, pids...)
	}
	return all, nil
}

// Remove removes the group's directories, its subgroups first, in every
// hierarchy (a worker's leaf: in cgroup2). The group must be empty (see
// Kill); rmdir is retried while the kernel still counts exiting tasks,
// until ctx ends. A group already gone is no error.
func (g *Group) Remove(ctx context.Context) error {
	var errs []error
	roots := []string{}
	if g.v2 != "" {
		roots = append(roots, g.v2)
	}
	if g.kind != kindWorker {
		for _, d := range g.place {
			roots = append(roots, d.dir)
		}
	}
	for _, r := range roots {
		dirs, err := subdirs(r)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("cgroup: %w", err))
			continue
		}
		for _, d := range append(dirs, r) {
			if err := g.t.rmdir(ctx, d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// rmdir removes one group directory, retrying EBUSY (tasks still
// exiting) with a growing pause until ctx ends. Each attempt holds t.mu,
// so that it never interleaves with making a group below it, but the
// pauses do not: one app's slow death does not hold up the others.
func (t *Tree) rmdir(ctx context.Context, dir string) error {
	pause := time.Millisecond
	for {
		t.mu.Lock()
		err := t.k.rmdir(dir)
		t.mu.Unlock()
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("cgroup: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cgroup: %w (%w)", err, ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}
