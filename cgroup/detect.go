package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Mode is the shape of the host's cgroups.
type Mode int

const (
	// ModeNone: no cgroup hierarchy the daemon can use.
	ModeNone Mode = iota
	// ModeV1: v1 hierarchies only.
	ModeV1
	// ModeHybrid: cgroup2 for membership and kill, v1 for the controllers
	// it lacks.
	ModeHybrid
	// ModeV2: cgroup2 alone.
	ModeV2
)

func (m Mode) String() string {
	switch m {
	case ModeV1:
		return "v1"
	case ModeHybrid:
		return "hybrid"
	case ModeV2:
		return "v2"
	}
	return "none"
}

// V2Hierarchy is the cgroup2 hierarchy as the daemon sees it.
type V2Hierarchy struct {
	Mount string // where cgroup2 is mounted: /sys/fs/cgroup, /sys/fs/cgroup/unified
	Self  string // the daemon's cgroup, as /proc/self/cgroup names it: "/system.slice/pyhost.service"
	Dir   string // the daemon's cgroup directory
	// Controllers are those the daemon's cgroup may hand to its children
	// (its cgroup.controllers), sorted; empty on a hybrid host.
	Controllers []string
	root        string // the cgroup the mount shows at Mount; "" is "/"
}

// V1Hierarchy is one mounted cgroup v1 hierarchy.
type V1Hierarchy struct {
	Controllers []string // those pyhost uses, sorted: one, or several co-mounted ("cpu", "cpuacct")
	Mount       string
	Self        string // the daemon's cgroup in this hierarchy
	Dir         string // the daemon's cgroup directory
	root        string // the cgroup the mount shows at Mount; "" is "/"
}

// Host is what the host's cgroups offer the daemon. The zero Host is
// ModeNone.
type Host struct {
	Mode Mode
	V2   *V2Hierarchy // nil when there is no usable cgroup2 hierarchy
	// V1 are the v1 hierarchies carrying a controller pyhost uses that V2
	// does not have: memory, cpu and pids for limits; cpuacct and freezer
	// only when there is no V2 (which has cpu.stat and cgroup.kill).
	V1 []V1Hierarchy
	// Writable: the daemon may create groups below its own cgroup (root,
	// or a user to whom systemd delegated the cgroup). Without it nothing
	// is enforced by the kernel.
	Writable bool
}

// Controllers pyhost switches on in v2, and the v1 ones it looks for.
var (
	v2Wanted = []string{"cpu", "io", "memory", "pids"}
	v1Limit  = []string{"cpu", "memory", "pids"}
	v1NoV2   = []string{"cpuacct", "freezer"}
)

// Detect reads /proc/self/cgroup and /proc/self/mountinfo and the
// daemon's own cgroup.controllers. An error means those could not be
// read; a host without cgroups is ModeNone and no error.
func Detect() (Host, error) {
	return detect(realKernel, "/proc/self/cgroup", "/proc/self/mountinfo")
}

type mountEntry struct {
	root, point, fstype, super string
}

func detect(k kernel, cgroupFile, mountinfoFile string) (Host, error) {
	cg, err := k.read(cgroupFile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Host{}, nil // no cgroup support in this kernel
		}
		return Host{}, fmt.Errorf("cgroup: %w", err)
	}
	mi, err := k.read(mountinfoFile)
	if err != nil {
		return Host{}, fmt.Errorf("cgroup: %w", err)
	}
	self := parseProcCgroup(cg)
	mounts := parseMountinfo(mi)

	var h Host
	if p, ok := self[""]; ok {
		for _, m := range mounts {
			if m.fstype != "cgroup2" {
				continue
			}
			dir, ok := under(m, p)
			if !ok {
				continue
			}
			h.V2 = &V2Hierarchy{Mount: m.point, Self: p, Dir: dir, root: m.root}
			if b, err := k.read(filepath.Join(dir, "cgroup.controllers")); err == nil {
				h.V2.Controllers = strings.Fields(string(b))
				slices.Sort(h.V2.Controllers)
			}
			break
		}
	}
	wanted := v1Limit
	if h.V2 == nil {
		wanted = append(slices.Clone(v1Limit), v1NoV2...)
	}
	seen := map[string]bool{}
	for _, m := range mounts {
		if m.fstype != "cgroup" {
			continue
		}
		var ctrls []string
		for _, o := range strings.Split(m.super, ",") {
			if slices.Contains(wanted, o) && !seen[o] && !h.hasV2(o) {
				ctrls = append(ctrls, o)
			}
		}
		if len(ctrls) == 0 {
			continue
		}
		// /proc/self/cgroup names a v1 hierarchy by its controllers as
		// they were mounted, in the kernel's order ("cpu,cpuacct").
		p, ok := "", false
		for key, v := range self {
			if key != "" && slices.Contains(strings.Split(key, ","), ctrls[0]) {
				p, ok = v, true
			}
		}
		if !ok {
			continue
		}
		dir, ok := under(m, p)
		if !ok {
			continue
		}
		for _, c := range ctrls {
			seen[c] = true
		}
		slices.Sort(ctrls)
		h.V1 = append(h.V1, V1Hierarchy{Controllers: ctrls, Mount: m.point, Self: p, Dir: dir, root: m.root})
	}
	slices.SortFunc(h.V1, func(a, b V1Hierarchy) int { return strings.Compare(a.Controllers[0], b.Controllers[0]) })

	limits := false
	for _, v := range h.V1 {
		for _, c := range v.Controllers {
			limits = limits || slices.Contains(v1Limit, c)
		}
	}
	switch {
	case h.V2 != nil && limits:
		h.Mode = ModeHybrid
	case h.V2 != nil:
		h.Mode = ModeV2
	case len(h.V1) > 0:
		h.Mode = ModeV1
	}
	if h.V2 != nil {
		h.Writable = unix.Access(h.V2.Dir, unix.W_OK) == nil
	} else if len(h.V1) > 0 {
		h.Writable = unix.Access(h.V1[0].Dir, unix.W_OK) == nil
	}
	return h, nil
}

func (h Host) hasV2(c string) bool {
	return h.V2 != nil && slices.Contains(h.V2.Controllers, c)
}

// v1 returns the v1 hierarchy carrying controller c, or nil.
func (h Host) v1(c string) *V1Hierarchy {
	for i := range h.V1 {
		if slices.Contains(h.V1[i].Controllers, c) {
			return &h.V1[i]
		}
	}
	return nil
}

// under maps a cgroup path to its directory in mount m; false when the
// mount shows a subtree that does not hold the cgroup (a bind mount of
// another group).
func under(m mountEntry, cgPath string) (string, bool) {
	switch {
	case m.root == "/":
		return filepath.Join(m.point, cgPath), true
	case cgPath == m.root:
		return m.point, true
	}
	if rel, ok := strings.CutPrefix(cgPath, m.root+"/"); ok {
		return filepath.Join(m.point, rel), true
	}
	return "", false
}

// parseProcCgroup maps each hierarchy of /proc/self/cgroup to the
// process's path in it: "" is the v2 hierarchy ("0::/path"), v1
// hierarchies by their controller list ("cpu,cpuacct"), named ones as
// "name=systemd".
func parseProcCgroup(b []byte) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		// A deleted cgroup shows as "/path (deleted)"; not usable.
		p := parts[2]
		if strings.HasSuffix(p, " (deleted)") {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			m[""] = path.Clean(p)
		} else if parts[1] != "" {
			m[parts[1]] = path.Clean(p)
		}
	}
	return m
}

// parseMountinfo keeps the cgroup and cgroup2 mounts of
// /proc/self/mountinfo (proc(5)), in order.
func parseMountinfo(b []byte) []mountEntry {
	var out []mountEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		if g[0] != "cgroup" && g[0] != "cgroup2" {
			continue
		}
		out = append(out, mountEntry{root: unescapeMount(f[3]), point: unescapeMount(f[4]), fstype: g[0], super: g[2]})
	}
	return out
}

// String is one line for the daemon's log and `pyhostd check`: the mode,
// where membership and kill live, which limits the kernel can enforce,
// and where the daemon's cgroup is.
func (h Host) String() string {
	var b strings.Builder
	switch h.Mode {
	case ModeNone:
		return "cgroups: none; workers are contained by process groups and limits are enforced by polling only"
	case ModeV2:
		fmt.Fprintf(&b, "cgroups: v2 at %s, controllers %s; own cgroup %s", h.V2.Mount, list(h.V2.Controllers), h.V2.Self)
	case ModeHybrid:
		fmt.Fprintf(&b, "cgroups: hybrid; v2 at %s for membership and kill (controllers %s), v1 for %s; own cgroup %s",
			h.V2.Mount, list(h.V2.Controllers), h.v1List(), h.V2.Self)
	case ModeV1:
		fmt.Fprintf(&b, "cgroups: v1 only, %s; no cgroup.kill (kill by freezing and signalling); own cgroup %s", h.v1List(), h.V1[0].Self)
	}
	if missing := h.missing(); len(missing) > 0 {
		fmt.Fprintf(&b, "; not enforceable: %s", strings.Join(missing, ", "))
	}
	if !h.Writable {
		b.WriteString("; own cgroup not writable (no delegation): limits enforced by polling only")
	}
	return b.String()
}

func (h Host) v1List() string {
	var parts []string
	for _, v := range h.V1 {
		parts = append(parts, strings.Join(v.Controllers, ","))
	}
	return strings.Join(parts, " ")
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, " ")
}

// missing names the app keys no controller of the host enforces.
func (h Host) missing() []string {
	var out []string
	for _, lim := range limitKeys {
		if !h.has(lim.controller) {
			out = append(out, lim.key)
		}
	}
	return out
}

// Check reports each limit of l that no controller of the host would
// enforce, as UnsupportedErrors, without making any group: for
// `pyhostd check`. Tree.Check is the same after Open, and also knows of
// controllers the kernel refused to switch on.
func (h Host) Check(l Limits) error {
	var errs []error
	for _, lim := range limitKeys {
		if !l.set(lim.key) {
			continue
		}
		why := ""
		switch {
		case lim.controller == "io" && !h.hasV2("io"):
			why = "io_weight needs the cgroup v2 io controller (v1 blkio is not used)"
		case !h.has(lim.controller):
			why = "no " + lim.controller + " controller in this host's cgroups"
		case !h.Writable:
			why = "the daemon's own cgroup is not writable (no delegation)"
		default:
			continue
		}
		errs = append(errs, &UnsupportedError{Key: lim.key, Missing: why})
	}
	return errors.Join(errs...)
}

// has reports whether controller c is available in v2 or, for the
// controllers pyhost uses through v1, in a v1 hierarchy. io is v2 only.
func (h Host) has(c string) bool {
	if h.hasV2(c) {
		return true
	}
	return c != "io" && h.v1(c) != nil
}
