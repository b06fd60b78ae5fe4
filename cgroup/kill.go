package cgroup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Kill SIGKILLs every process in the group and its subgroups, those that
// setsid() and double-forked away included, and waits until the group is
// empty or ctx ends. With cgroup.kill (cgroup2, Linux 5.14 and later) the
// kernel does it in one write, and no process can fork its way out. The
// fallback freezes the group where it can (cgroup2 cgroup.freeze, the v1
// freezer), signals every listed process, thaws, and repeats.
//
// An app's or a user's group, which takes new children after the kill
// (the app's next fork server), is killed the freezer's way, never by
// cgroup.kill: on kernels that count kills per group (kill_seq, seen on
// 6.18), a child placed by CLONE_INTO_CGROUP into a group that was ever
// killed through cgroup.kill is SIGKILLed at birth, its kill count taken
// from its parent's group (TestRealStartAfterKill). Worker leaves and
// base/apps are removed after their kill, never reused.
func (g *Group) Kill(ctx context.Context) error {
	if g.v2 != "" && g.kind != kindApp && g.kind != kindUser {
		err := g.t.k.write(filepath.Join(g.v2, "cgroup.kill"), "1")
		switch {
		case err == nil:
			return g.WaitEmpty(ctx)
		case errors.Is(err, fs.ErrNotExist) && g.exists():
			// a kernel before 5.14: no cgroup.kill
		case errors.Is(err, fs.ErrNotExist):
			return nil // the group is gone, and so is everything in it
		default:
			return fmt.Errorf("cgroup: kill %s: %w", g.rel, err)
		}
	}
	return g.killEach(ctx)
}

func (g *Group) exists() bool {
	_, err := os.Stat(g.Dir())
	return err == nil
}

// freezer is how the fallback freezes the group, or nil.
type freezer struct {
	file           string // cgroup.freeze or freezer.state
	freeze, thaw   string
	state, stateIs string // where frozen-ness is read: file, and the value that means frozen
	key            bool   // state is a keyed file (cgroup.events "frozen 1")
}

func (g *Group) freezer() *freezer {
	if g.v2 != "" {
		f := filepath.Join(g.v2, "cgroup.freeze")
		if _, err := os.Stat(f); err == nil {
			return &freezer{file: f, freeze: "1", thaw: "0", state: filepath.Join(g.v2, "cgroup.events"), stateIs: "frozen", key: true}
		}
		return nil
	}
	dir := g.members()
	f := filepath.Join(dir, "freezer.state")
	if _, err := os.Stat(f); err == nil {
		return &freezer{file: f, freeze: "FROZEN", thaw: "THAWED", state: f, stateIs: "FROZEN"}
	}
	return nil
}

// frozen reports whether the freezer has finished freezing.
func (f *freezer) frozen(k kernel) bool {
	b, err := k.read(f.state)
	if err != nil {
		return false
	}
	if f.key {
		return parseKeyed(b)[f.stateIs] == 1
	}
	return strings.TrimSpace(string(b)) == f.stateIs
}

// killEach is Kill without cgroup.kill: rounds of freeze, signal each
// listed process, thaw, until the subtree is empty or ctx ends.
func (g *Group) killEach(ctx context.Context) error {
	fr := g.freezer()
	pause := time.Millisecond
	for {
		pids, err := g.Procs()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if fr != nil {
			if err := g.t.k.write(fr.file, fr.freeze); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("cgroup: freeze %s: %w", g.rel, err)
			}
			// Frozen tasks cannot fork, so the list read next is
			// complete. Freezing takes a moment; not waiting for it
			// only costs another round.
			fctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			poll(fctx, func() bool { return fr.frozen(g.t.k) })
			cancel()
			if pids, err = g.Procs(); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		for _, pid := range pids {
			g.signal(pid)
		}
		if fr != nil {
			// SIGKILL is pending on the frozen tasks; they die as they
			// thaw.
			if err := g.t.k.write(fr.file, fr.thaw); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("cgroup: thaw %s: %w", g.rel, err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cgroup: kill %s: %d processes left: %w", g.rel, len(pids), ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, 20*time.Millisecond)
	}
}

// poll calls done with growing pauses until it is true or ctx ends, and
// reports which.
func poll(ctx context.Context, done func() bool) bool {
	pause := time.Millisecond
	for !done() {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(pause):
		}
		pause = min(2*pause, 20*time.Millisecond)
	}
	return true
}

// signal SIGKILLs pid if it is still in the group. The pid was read from
// cgroup.procs and may have exited and been reused since: a pidfd pins
// the process, then /proc/PID/cgroup says whether it is ours.
func (g *Group) signal(pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			// before Linux 5.3; a frozen task cannot exit, so its pid is
			// not reused while the group is frozen.
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		return
	}
	defer unix.Close(fd)
	if !g.holds(pid) {
		return
	}
	_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
}

// holds reports whether pid's cgroup, in the hierarchy that lists the
// group's members, is the group or below it.
func (g *Group) holds(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return false
	}
	var want, key string
	if g.v2 != "" {
		want, key = g.t.v2.cgPath(g.v2), ""
	} else {
		dir := g.members()
		for _, d := range g.place {
			if d.dir == dir {
				want, key = d.h.cgPath(dir), d.h.ctrls[0]
			}
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		match := parts[0] == "0" && parts[1] == "" && key == ""
		if key != "" {
			for _, c := range strings.Split(parts[1], ",") {
				match = match || c == key
			}
		}
		if match {
			return parts[2] == want || strings.HasPrefix(parts[2], want+"/")
		}
	}
	return false
}

// WaitEmpty waits until no process is left in the group or below it, or
// ctx ends. On cgroup2 it sleeps on cgroup.events ("populated 0"), which
// the kernel signals through inotify; otherwise it polls the members.
func (g *Group) WaitEmpty(ctx context.Context) error {
	if g.v2 != "" {
		events := filepath.Join(g.v2, "cgroup.events")
		w, err := watchModify(events)
		if err == nil {
			defer w.close()
			for {
				b, err := g.t.k.read(events)
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				if err != nil {
					return fmt.Errorf("cgroup: %w", err)
				}
				if parseKeyed(b)["populated"] == 0 {
					return nil
				}
				if gone, err := w.wait(ctx); err != nil {
					return fmt.Errorf("cgroup: wait for %s to empty: %w", g.rel, err)
				} else if gone {
					return nil
				}
			}
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cgroup: %w", err)
		}
		return nil // the group is gone
	}
	pause := time.Millisecond
	for {
		pids, err := g.Procs()
		if errors.Is(err, fs.ErrNotExist) || err == nil && len(pids) == 0 {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cgroup: wait for %s to empty: %d processes left: %w", g.rel, len(pids), ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, 20*time.Millisecond)
	}
}

// Kill kills every process in every app's group (the daemon's own leaf
// is not below base/apps), and waits until they are gone: C4's "the
// daemon exiting", and the sweep of what a crashed daemon left behind.
func (t *Tree) Kill(ctx context.Context) error {
	return t.apps().Kill(ctx)
}

// Remove removes every group of the tree, and the base in each
// hierarchy where Open made it (not where it is the daemon's own
// cgroup). Kill first.
func (t *Tree) Remove(ctx context.Context) error {
	if err := t.apps().Remove(ctx); err != nil {
		return err
	}
	var errs []error
	for i := range t.v1 {
		// The proxy's group (Daemon), empty once the proxy is gone.
		errs = append(errs, t.rmdir(ctx, filepath.Join(t.v1[i].base, "daemon")))
	}
	for _, h := range t.hiers() {
		if !h.own {
			errs = append(errs, t.rmdir(ctx, h.base))
		}
	}
	return errors.Join(errs...)
}

// hiers are the tree's hierarchies, cgroup2's first.
func (t *Tree) hiers() []*hier {
	var out []*hier
	if t.v2 != nil {
		out = append(out, t.v2)
	}
	for i := range t.v1 {
		out = append(out, &t.v1[i])
	}
	return out
}

// KillStrays SIGKILLs each process directly in the app's group (not in
// a worker's leaf) for which keep is false, and returns their pids. The
// app's user may write the group's cgroup.procs (LetMove: a forked
// worker moves itself into its leaf), so a process a worker started can
// move itself out of the worker's leaf into the app's group, where the
// leaf's kill does not reach it; the caller, knowing which processes
// belong there (its fork servers, workers not yet in their leaves), kills
// the rest as a worker ends. Without cgroup2 there are no leaves to leave.
func (g *Group) KillStrays(keep func(pid int) bool) ([]int, error) {
	if g.kind != kindApp || g.v2 == "" {
		return nil, nil
	}
	pids, err := g.v2Procs()
	if err != nil {
		return nil, err
	}
	var killed []int
	for _, pid := range pids {
		if !keep(pid) {
			g.signal(pid)
			killed = append(killed, pid)
		}
	}
	return killed, nil
}

// MoveOut moves each process directly in the worker's leaf g for which
// keep is true into the app's group app, and returns their pids. The
// app's user may write the cgroup.procs of the app's group and of every
// leaf below it (LetMove), so a tenant can move a process that is not
// the leaf's worker's into the leaf, its own fork server or another
// worker among them, and the leaf's kill when its worker ends would kill
// that too. The caller, which knows its own processes, calls MoveOut
// before Kill: the kill then takes only what the worker left behind.
// (A tenant racing to move a process back between the two only kills
// its own process, as it could with a signal.)
func (g *Group) MoveOut(app *Group, keep func(pid int) bool) ([]int, error) {
	if g.kind != kindWorker || app.kind != kindApp || g.v2 == "" {
		return nil, nil
	}
	pids, err := g.v2Procs()
	if err != nil {
		return nil, err
	}
	var moved []int
	var errs []error
	for _, pid := range pids {
		if !keep(pid) {
			continue
		}
		if err := app.Attach(pid); errors.Is(err, unix.ESRCH) {
			continue // gone meanwhile
		} else if err != nil {
			errs = append(errs, err)
			continue
		}
		moved = append(moved, pid)
	}
	return moved, errors.Join(errs...)
}

// v2Procs are the pids directly in g's cgroup2 directory; none once the
// directory is gone.
func (g *Group) v2Procs() ([]int, error) {
	b, err := g.t.k.read(filepath.Join(g.v2, "cgroup.procs"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	return parsePIDs(b)
}
