// Package sandbox owns what an app's processes see of the machine
// (tenant privacy, C5): the Plan of mounts that hides other users' homes,
// pyhost's own directories and other tenants' processes, decided purely
// from the app's settings (plan.go); and the wrapping of a command so that
// it starts through the trampoline, as root in a new mount namespace
// (wrap.go). The trampoline's own work, which applies the Plan, drops to
// the app's user and executes the real command, is package
// sandbox/trampoline, kept apart so that the small pyhost-sandbox binary
// built from it imports nothing of pyhost's configuration.
//
// It does not decide whether an app is sandboxed (config's policy: the
// app key sandbox and the admin's allow_unsandboxed) and it does not
// start or supervise processes (workerproc, supervisor). Files the app's
// user may read through ordinary permissions outside the hidden places
// (/srv, /opt, /var/www, …) stay visible: that still depends on file
// modes (docs/admin-guide.md, "Tenant privacy").
package sandbox

import (
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/sandbox/trampoline"
)

// The Plan's parts are the trampoline's (package trampoline, which
// applies them); they are named here too for the deciding side.
type (
	// Kind is what one Step mounts.
	Kind = trampoline.Kind
	// Step is one mount of a Plan.
	Step = trampoline.Step
)

// The kinds of Step (trampoline.Tmpfs and its siblings say what each does).
const (
	Tmpfs = trampoline.Tmpfs
	Bind  = trampoline.Bind
	Proc  = trampoline.Proc
)

// Plan is the ordered list of mounts that builds an app's view, applied
// by the trampoline in a fresh mount namespace before the drop to the
// app's user. It is a trampoline.Plan (the same fields) that can Wrap.
type Plan struct {
	Steps []Step `json:"steps"`
}

// Input is what a Plan is decided from.
type Input struct {
	// Home is the owner's home directory, bound back into the cover
	// over /home (and over its parent when that is elsewhere).
	Home string
	// Keep are other paths the app runs from (its directory, python
	// path, virtualenv, the worker script): bound back when a cover hid
	// them. Paths under Home need no entry.
	Keep []string
	// Hide are pyhost's own directories (state, data, log, admin_dir),
	// covered even where they lie inside something bound back.
	Hide []string
}

// TmpMode is the mode of the app's private /tmp, like a host's.
const TmpMode = trampoline.TmpMode

// coverMode is the mode of a cover's root: root's, world-traversable,
// so the bound-back paths below it resolve for the app's user.
const coverMode = 0o755

// systemDirs are the top-level directories whose cover would hide the
// system itself: a home whose parent is one of them or under one
// (/var/www, /var/lib/x) gets only /home covered, and whatever lies
// beside it depends on file modes.
var systemDirs = []string{"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
	"/opt", "/proc", "/root", "/run", "/sbin", "/sys", "/tmp", "/usr", "/var"}

// privateTmps are the world-writable places an app gets its own of:
// /tmp, and /dev/shm (POSIX shared memory and semaphores, as Python's
// multiprocessing uses them), where names would tell one tenant what
// another does.
var privateTmps = []string{"/dev/shm", "/tmp"}

// homesRoot is where homes live on Debian and most systems.
const homesRoot = "/home"

// New decides the Plan for in, in this order, which matters:
//
//  1. an empty tmpfs over /tmp and /dev/shm (the app's own), over /home, and
//     over the parent of Home when that is elsewhere and not a system
//     directory (/srv/homes for /srv/homes/alice, not /var for
//     /var/www);
//  2. Home and each Keep path under one of those covers bound back (a
//     path inside another one kept needs no mount of its own);
//  3. an empty tmpfs over each Hide directory, after step 2 so that one
//     lying inside a home or a kept path is still hidden;
//  4. each Keep path inside a Hide directory (the worker script, in the
//     state directory) bound back;
//  5. a new /proc with hidepid=invisible.
func New(in Input) Plan {
	var p Plan
	covers := append([]string{homesRoot}, privateTmps...)
	if home := clean(in.Home); home != "" {
		if parent := filepath.Dir(home); parent != homesRoot && !isSystem(parent) && !under(parent, homesRoot) {
			covers = append(covers, parent)
		}
	}
	covers = outermost(covers)
	hide := outermost(cleanAll(in.Hide))
	for _, c := range covers {
		mode := uint32(coverMode)
		if slices.Contains(privateTmps, c) {
			mode = TmpMode
		}
		p.Steps = append(p.Steps, Step{Kind: Tmpfs, Path: c, Mode: mode})
	}
	keep := cleanAll(append([]string{in.Home}, in.Keep...))
	var early, late []string
	for _, k := range keep {
		switch {
		case underAny(k, hide):
			late = append(late, k)
		case underAny(k, covers):
			early = append(early, k)
		}
	}
	for _, k := range outermost(early) {
		p.Steps = append(p.Steps, Step{Kind: Bind, Path: k})
	}
	for _, h := range hide {
		p.Steps = append(p.Steps, Step{Kind: Tmpfs, Path: h, Mode: coverMode})
	}
	for _, k := range outermost(late) {
		p.Steps = append(p.Steps, Step{Kind: Bind, Path: k})
	}
	p.Steps = append(p.Steps, Step{Kind: Proc, Path: "/proc"})
	return p
}

// ForApp is the Plan of app, whose workers run script (pyhost_worker.py),
// or nil when app is not sandboxed (app.Sandbox is nil: express mode, or
// sandbox = false).
func ForApp(app config.App, script string) *Plan {
	if app.Sandbox == nil {
		return nil
	}
	keep := []string{app.Directory, script}
	if app.Script != "" {
		keep = append(keep, filepath.Dir(app.Script))
	}
	keep = append(keep, app.PythonPath...)
	if filepath.IsAbs(app.Python) {
		// A virtualenv's python is VENV/bin/python; its packages are in
		// VENV/lib. An interpreter of the system's is in no cover.
		keep = append(keep, filepath.Dir(filepath.Dir(app.Python)))
	}
	p := New(Input{Home: app.Cred.Home, Keep: keep, Hide: app.Sandbox.Hide})
	return &p
}

// clean is p cleaned, or "" when it is not absolute or is "/" (a home of
// "/" or a relative one hides or keeps nothing).
func clean(p string) string {
	if !filepath.IsAbs(p) {
		return ""
	}
	p = filepath.Clean(p)
	if p == "/" {
		return ""
	}
	return p
}

func cleanAll(ps []string) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		if c := clean(p); c != "" {
			out = append(out, c)
		}
	}
	return out
}

// under reports whether p is inside dir (not dir itself).
func under(p, dir string) bool { return strings.HasPrefix(p, dir+"/") }

func underAny(p string, dirs []string) bool {
	for _, d := range dirs {
		if under(p, d) {
			return true
		}
	}
	return false
}

func isSystem(dir string) bool {
	if dir == "/" {
		return true
	}
	for _, s := range systemDirs {
		if dir == s || under(dir, s) {
			return true
		}
	}
	return false
}

// outermost is ps sorted and without duplicates or paths inside another
// one of ps: a mount over the outer one already holds them.
func outermost(ps []string) []string {
	ps = append([]string(nil), ps...)
	sort.Strings(ps)
	var out []string
	for _, p := range ps {
		if len(out) > 0 && (p == out[len(out)-1] || underAny(p, out)) {
			continue
		}
		out = append(out, p)
	}
	return out
}
