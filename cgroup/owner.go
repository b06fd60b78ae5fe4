package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A tree's base says which daemon made it, so that a later daemon can
// tell a tree whose daemon died from one in use. The start-up sweep of a
// daemon's own tree (found again by its name) is not enough: a name is
// derived from the state directory, and `pyhostd serve` runs in a new
// temporary directory each time, so the tree a SIGKILLed serve left,
// with whatever its apps double-forked still running under the limits,
// would never be found again. The mark is an extended attribute in the
// trusted namespace (cgroupfs keeps them since Linux 5.7; only root may
// set or read them): "PID STARTTIME PIDNS", the start time from
// /proc/PID/stat telling a dead daemon's reused pid from a live one, and
// the pid namespace telling a daemon whose pids this one cannot see (a
// container sharing the cgroup) from a dead one: such a tree is left
// alone.

const ownerAttr = "trusted.pyhost.owner"

// TreePrefix begins the name of every tree a daemon names below a
// shared cgroup (master's "pyhost-" + hash); Orphans looks at those.
const TreePrefix = "pyhost-"

// Claim marks the tree's base as this process's. An error (a kernel or
// filesystem without trusted xattrs) only means a later daemon will not
// sweep the tree should this one die.
func (t *Tree) Claim() error {
	st, err := startTime(os.Getpid())
	if err != nil {
		return err
	}
	v := strconv.Itoa(os.Getpid()) + " " + st + " " + pidNS()
	if err := unix.Setxattr(t.Base(), ownerAttr, []byte(v), 0); err != nil {
		return fmt.Errorf("cgroup: mark %s as this daemon's: %w", t.Base(), err)
	}
	return nil
}

// Orphans names the trees next to this one (siblings of its base whose
// name begins with TreePrefix) whose daemon is dead: marked by Claim
// with a pid that no longer runs, or runs a process started since. A
// tree without a mark (being made, or made by a daemon that could not
// mark it) is never an orphan. Pass a name to OpenOrphan.
func (t *Tree) Orphans() []string {
	base := t.Base()
	parent := filepath.Dir(base)
	ents, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		name := e.Name()
		dir := filepath.Join(parent, name)
		if !e.IsDir() || !strings.HasPrefix(name, TreePrefix) || dir == base {
			continue
		}
		if ownerDead(dir) {
			out = append(out, name)
		}
	}
	return out
}

// ownerDead reports whether dir carries a mark whose process is gone.
func ownerDead(dir string) bool {
	buf := make([]byte, 64)
	n, err := unix.Getxattr(dir, ownerAttr, buf)
	if err != nil {
		return false
	}
	f := strings.Fields(string(buf[:n]))
	if len(f) != 3 || f[2] != pidNS() {
		return false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return false
	}
	st, err := startTime(pid)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	return err == nil && st != f[1]
}

// OpenOrphan opens the tree named name next to t's (one Orphans
// reported), to Kill and Remove it.
func (t *Tree) OpenOrphan(name string) (*Tree, error) {
	if !strings.HasPrefix(name, TreePrefix) {
		return nil, fmt.Errorf("cgroup: %q is not a pyhost tree", name)
	}
	opts := t.opts
	opts.Name = name
	return open(t.k, t.host, opts)
}

// pidNS names this process's pid namespace ("pid:[4026531836]").
func pidNS() string {
	s, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return "?"
	}
	return s
}

// startTime is field 22 of /proc/PID/stat: when the process started, in
// clock ticks since boot.
func startTime(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", fmt.Errorf("cgroup: /proc/%d/stat: %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", fmt.Errorf("cgroup: /proc/%d/stat: %q", pid, b)
	}
	return f[19], nil // field 22, counting from the state, field 3
}
