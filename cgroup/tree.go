package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// TreeOptions says where Open builds the tree. The zero value is the
// daemon's own cgroup in every hierarchy (or "pyhost" below it when that
// is a hierarchy's root).
type TreeOptions struct {
	// Parent is a cgroup path, as /proc/self/cgroup writes them, under
	// which the base is made in every hierarchy; "" is the daemon's own
	// cgroup in each. Tests use "/" (the hierarchy roots).
	Parent string
	// Name is the base's directory below Parent. "" makes Parent itself
	// the base — the delegated unit, where the daemon then moves into
	// base/daemon — except at a hierarchy's root, which the whole system
	// shares, where it is "pyhost". Daemons sharing a cgroup need
	// different names.
	Name string
	// PollInterval is how often v1 OOM counters are read (v2 needs no
	// polling); 0 is one second.
	PollInterval time.Duration
}

// hier is one hierarchy of the tree: where the base is in it, and where
// the daemon's own threads live (where the spawner thread goes back to).
type hier struct {
	ctrls []string // v1 controllers; nil for v2
	mount string
	root  string // the mount's root cgroup, to map directories to /proc/PID/cgroup paths
	base  string // directory
	home  string // the daemon's own cgroup directory
	own   bool   // base is home: Remove leaves it
}

// cgPath maps dir, below h's mount, to the cgroup path the kernel shows
// in /proc/PID/cgroup.
func (h *hier) cgPath(dir string) string {
	rel, _ := filepath.Rel(h.mount, dir)
	return path.Join(h.root, filepath.ToSlash(rel))
}

// Tree is pyhost's cgroup subtree: base/apps/USER/APP in every hierarchy
// of the host. Its methods are safe for concurrent use.
type Tree struct {
	host Host
	k    kernel
	opts TreeOptions
	v2   *hier  // nil without cgroup2
	v1   []hier // one per v1 hierarchy

	// cloneInto: the kernel has CLONE_INTO_CGROUP (5.7). Go's clone3
	// has no fallback, so before 5.7 Start moves the child into its v2
	// group right after the start instead.
	cloneInto bool

	mu      sync.Mutex // serializes creating groups, so enabling controllers on a parent never races its rmdir
	enabled []string   // v2 controllers on at base/apps/subtree_control; sorted
	notes   map[string]string

	// userLimits and userApplied: see SettleUser.
	userLimits  func(user string) Limits
	userApplied map[string]Limits
}

// Open builds the tree's base and base/apps in every hierarchy of h. On
// v2 it moves the daemon into base/daemon first when the base is the
// daemon's own cgroup (see the package doc), and switches on memory, cpu,
// pids and io wherever the parent offers them; one that cannot be
// switched on is not an error: Apply reports it as missing when a limit
// needs it, and String names it. Open must run before the daemon starts
// children. An error means no usable tree; ModeNone is ErrUnsupported.
func Open(h Host, opts TreeOptions) (*Tree, error) {
	return open(realKernel, h, opts)
}

func open(k kernel, h Host, opts TreeOptions) (*Tree, error) {
	if h.Mode == ModeNone {
		return nil, fmt.Errorf("cgroup: no cgroup hierarchy: %w", ErrUnsupported)
	}
	if opts.Name != "" {
		if err := validName(opts.Name); err != nil {
			return nil, err
		}
	}
	if opts.Parent != "" && !path.IsAbs(opts.Parent) {
		return nil, fmt.Errorf("cgroup: parent %q is not an absolute cgroup path", opts.Parent)
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	t := &Tree{host: h, k: k, opts: opts, notes: map[string]string{}, cloneInto: kernelAtLeast(5, 7)}
	if h.V2 != nil {
		v2, err := t.place(h.V2.Mount, h.V2.root, h.V2.Dir, nil)
		if err != nil {
			return nil, err
		}
		t.v2 = v2
	}
	for _, v := range h.V1 {
		hv, err := t.place(v.Mount, v.root, v.Dir, v.Controllers)
		if err != nil {
			return nil, err
		}
		t.v1 = append(t.v1, *hv)
	}
	if t.v2 != nil {
		if err := t.openV2(); err != nil {
			return nil, err
		}
	}
	for _, hv := range t.v1 {
		if err := t.mkdir(filepath.Join(hv.base, "apps")); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// place works out a hierarchy's base directory and makes it. The rule
// is per hierarchy: on this project's machines the daemon's memory
// cgroup is not the root while its others are.
func (t *Tree) place(mount, root, selfDir string, ctrls []string) (*hier, error) {
	if root == "" {
		root = "/"
	}
	h := &hier{ctrls: ctrls, mount: mount, root: root, home: selfDir}
	parent := selfDir
	if t.opts.Parent != "" {
		m := mountEntry{root: root, point: mount}
		d, ok := under(m, t.opts.Parent)
		if !ok {
			return nil, fmt.Errorf("cgroup: %s is not visible in %s", t.opts.Parent, mount)
		}
		parent = d
	}
	name := t.opts.Name
	if name == "" && parent == mount {
		name = "pyhost"
	}
	if name == "" {
		h.base, h.own = parent, parent == selfDir
		return h, nil
	}
	h.base = filepath.Join(parent, name)
	if err := t.mkdir(h.base); err != nil {
		return nil, err
	}
	return h, nil
}

// openV2 moves the daemon out of its own cgroup when that is the base,
// then switches the wanted controllers on down to base/apps.
func (t *Tree) openV2() error {
	base := t.v2.base
	// Only controllers to hand down oblige the daemon to move: on a
	// hybrid host it stays where it is.
	if t.v2.own && len(t.offered(base)) > 0 {
		leaf := filepath.Join(base, "daemon")
		if err := t.mkdir(leaf); err != nil {
			return err
		}
		if err := t.k.write(filepath.Join(leaf, "cgroup.procs"), strconv.Itoa(os.Getpid())); err != nil {
			return fmt.Errorf("cgroup: move the daemon into %s: %w", leaf, err)
		}
	} else if base != t.v2.mount {
		// The base is new: its parent must hand it the controllers. At
		// a hierarchy's root that is always allowed; elsewhere only if
		// the parent holds no processes (delegated to us, or made for
		// pyhost).
		t.enable(filepath.Dir(base), t.offered(filepath.Dir(base)))
	}
	on := t.enable(base, t.offered(base))
	apps := filepath.Join(base, "apps")
	if err := t.mkdir(apps); err != nil {
		return err
	}
	t.enabled = t.enable(apps, on)
	return nil
}

// offered is the wanted v2 controllers that dir's cgroup.controllers
// lists.
func (t *Tree) offered(dir string) []string {
	b, err := t.k.read(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil
	}
	have := strings.Fields(string(b))
	var out []string
	for _, c := range v2Wanted {
		if slices.Contains(have, c) {
			out = append(out, c)
		} else if _, noted := t.notes[c]; !noted {
			t.notes[c] = fmt.Sprintf("not offered to %s (its cgroup.controllers)", dir)
		}
	}
	return out
}

// enable switches each of ctrls on in dir's cgroup.subtree_control, one
// write each so that one refusal does not take the others with it, and
// returns those that are on. Refusals are noted for the error text.
func (t *Tree) enable(dir string, ctrls []string) []string {
	file := filepath.Join(dir, "cgroup.subtree_control")
	var cur []string
	if b, err := t.k.read(file); err == nil {
		cur = strings.Fields(string(b))
	}
	var on []string
	for _, c := range ctrls {
		if slices.Contains(cur, c) {
			on = append(on, c)
			continue
		}
		if err := t.k.write(file, "+"+c); err != nil {
			why := err.Error()
			if errors.Is(err, unix.EBUSY) {
				why += " (the group holds processes, and v2 allows controllers for children only in a group without them)"
			}
			t.notes[c] = fmt.Sprintf("cannot be switched on in %s: %s", file, why)
			continue
		}
		on = append(on, c)
	}
	return on
}

// mkdir makes a group directory; one that exists is fine, as long as it
// is a directory (a name can collide with a control file).
func (t *Tree) mkdir(dir string) error {
	err := t.k.mkdir(dir)
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		if st, serr := os.Stat(dir); serr == nil && st.IsDir() {
			return nil
		}
	}
	return fmt.Errorf("cgroup: %w", err)
}

// kernelAtLeast reports whether the running kernel's version is at
// least major.minor.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	return releaseAtLeast(unix.ByteSliceToString(u.Release[:]), major, minor)
}

// releaseAtLeast compares a kernel release ("6.1.0-18-amd64") with
// major.minor.
func releaseAtLeast(release string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(release, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// validName checks a user, app or worker name for use as a directory.
func validName(s string) error {
	if s == "" || s == "." || s == ".." || len(s) > 255 || strings.ContainsAny(s, "/\x00\n") {
		return fmt.Errorf("cgroup: %q cannot name a group", s)
	}
	return nil
}

// Host is what Open was given.
func (t *Tree) Host() Host { return t.host }

// Base is the tree's base directory in the v2 hierarchy, or in the first
// v1 hierarchy on a v1-only host.
func (t *Tree) Base() string {
	if t.v2 != nil {
		return t.v2.base
	}
	return t.v1[0].base
}

// String says in one line where the tree is and which app keys the
// kernel enforces there; for the daemon's log and `pyhostd check`.
func (t *Tree) String() string {
	var on, off []string
	for _, lim := range limitKeys {
		if t.missing(lim.controller) == "" {
			on = append(on, lim.key)
		} else {
			off = append(off, lim.key)
		}
	}
	s := fmt.Sprintf("cgroup tree %s (%s); enforced: %s", t.Base(), t.host.Mode, list(on))
	if len(off) > 0 {
		s += "; not enforced: " + strings.Join(off, ", ")
	}
	if t.v2 != nil && !t.cloneInto {
		s += "; kernel before 5.7: children join their cgroup v2 group just after they start"
	}
	return s
}

// missing returns why controller c is not available to the apps'
// groups, or "" when it is.
func (t *Tree) missing(c string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if slices.Contains(t.enabled, c) {
		return ""
	}
	if c != "io" && t.v1For(c) != nil {
		return ""
	}
	var parts []string
	if t.v2 != nil {
		why := t.notes[c]
		if why == "" {
			why = "not offered"
		}
		parts = append(parts, fmt.Sprintf("cgroup v2 %s controller %s", c, why))
	}
	switch {
	case c == "io":
		parts = append(parts, "io_weight has no v1 equivalent pyhost uses (blkio weights need the CFQ or BFQ scheduler)")
	case len(t.v1) > 0 || t.v2 == nil:
		parts = append(parts, fmt.Sprintf("no v1 %s hierarchy", c))
	}
	return "no " + c + " controller: " + strings.Join(parts, "; ")
}

func (t *Tree) v1For(c string) *hier {
	for i := range t.v1 {
		if slices.Contains(t.v1[i].ctrls, c) {
			return &t.v1[i]
		}
	}
	return nil
}

// Check reports, as Apply would, each limit of l the tree cannot
// enforce, without writing anything: for `pyhostd check` and for saying
// it once at start. nil means all of l is enforced.
func (t *Tree) Check(l Limits) error {
	var errs []error
	for _, lim := range limitKeys {
		if !l.set(lim.key) {
			continue
		}
		if why := t.missing(lim.controller); why != "" {
			errs = append(errs, &UnsupportedError{Key: lim.key, Missing: why})
		}
	}
	return errors.Join(errs...)
}

// User returns the group of user's apps, base/apps/USER, making it if
// needed; its limits are the user's totals.
func (t *Tree) User(user string) (*Group, error) {
	if err := validName(user); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.group(kindUser, "apps", user)
}

// App returns the group of user's app, base/apps/USER/APP, making it and
// the user's group if needed.
func (t *Tree) App(user, app string) (*Group, error) {
	if err := validName(user); err != nil {
		return nil, err
	}
	if err := validName(app); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.group(kindUser, "apps", user); err != nil {
		return nil, err
	}
	return t.group(kindApp, path.Join("apps", user), app)
}

// apps is the group of every app: base/apps.
func (t *Tree) apps() *Group {
	g := &Group{t: t, kind: kindApps, rel: "apps"}
	if t.v2 != nil {
		g.v2 = filepath.Join(t.v2.base, "apps")
	}
	for i := range t.v1 {
		d := v1dir{h: &t.v1[i], dir: filepath.Join(t.v1[i].base, "apps")}
		g.v1 = append(g.v1, d)
		g.place = append(g.place, d)
	}
	return g
}

// group makes (or finds) base/PARENT/NAME in every hierarchy. For a
// user's group it switches the tree's v2 controllers on for the apps
// below. t.mu is held.
func (t *Tree) group(kind groupKind, parent, name string) (*Group, error) {
	rel := path.Join(parent, name)
	g := &Group{t: t, kind: kind, rel: rel}
	if t.v2 != nil {
		g.v2 = filepath.Join(t.v2.base, rel)
		if err := t.mkdir(g.v2); err != nil {
			return nil, err
		}
		if kind == kindUser {
			// Not t.enable: a refusal here is this user's, not the tree's.
			for _, c := range t.enabled {
				if err := t.k.write(filepath.Join(g.v2, "cgroup.subtree_control"), "+"+c); err != nil {
					return nil, fmt.Errorf("cgroup: switch %s on for %s's apps: %w", c, name, err)
				}
			}
		}
	}
	for i := range t.v1 {
		d := v1dir{h: &t.v1[i], dir: filepath.Join(t.v1[i].base, rel)}
		if err := t.mkdir(d.dir); err != nil {
			return nil, err
		}
		g.v1 = append(g.v1, d)
		g.place = append(g.place, d)
	}
	return g, nil
}
