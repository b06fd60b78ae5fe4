// Package trampoline is the exec side of the tenant sandbox: what runs
// between the daemon's fork and the app's code, as root in a new mount
// namespace. It applies a Plan of mounts, drops to the app's user and
// executes the real command (Exec).
//
// It is its own package, importing only the standard library and
// golang.org/x/sys/unix, so that the small cmd/pyhost-sandbox binary
// built from it starts in about a millisecond: it runs at every start
// of a sandboxed fork server or worker, and the whole pyhostd's package
// initialization (config, metrics, protobuf, ...) cost tens of
// milliseconds there. Deciding the Plan (from an app's config) and
// wrapping a command so that it starts through the trampoline are
// package sandbox's.
package trampoline

import "errors"

// Binary is the small trampoline's name (cmd/pyhost-sandbox), looked
// for beside pyhostd and in PREFIX/lib/pyhost (package sandbox, Wrap).
const Binary = "pyhost-sandbox"

// Version is the job format: a trampoline refuses a job of another one,
// so that a pyhost-sandbox replaced by an upgrade under a daemon still
// running the old release fails with a reason rather than misreads.
const Version = 1

// Kind is what one Step mounts.
type Kind string

// The kinds of Step.
const (
	// Tmpfs mounts an empty tmpfs over Path: what was there is hidden.
	// A Path that does not exist in the view built so far is skipped
	// (it is not visible anyway).
	Tmpfs Kind = "tmpfs"
	// Bind mounts the host's Path back at the same place, recursively,
	// after something above it was covered. The source is opened before
	// the first mount, so it is the host's, whatever the Steps before
	// it hid; a source that does not exist is skipped.
	Bind Kind = "bind"
	// Proc mounts a new procfs over /proc with hidepid=invisible: the
	// app's user sees only its own processes.
	Proc Kind = "proc"
)

// Step is one mount of a Plan.
type Step struct {
	Kind Kind   `json:"kind"`
	Path string `json:"path"`
	// Mode of a Tmpfs's root: 01777 for /tmp, 0755 (root's) for a cover
	// that only holds the mount points of what is bound back.
	Mode uint32 `json:"mode,omitempty"`
}

// Plan is the ordered list of mounts that builds an app's view, applied
// in a fresh mount namespace before the drop to the app's user.
type Plan struct {
	Steps []Step `json:"steps"`
}

// TmpMode is the mode of the app's private /tmp, like a host's.
const TmpMode = 0o1777

// Job is what the trampoline is told (its first argument, as JSON): the
// Plan and who to become.
type Job struct {
	Version int      `json:"v"`
	Plan    Plan     `json:"plan"`
	UID     uint32   `json:"uid"`
	GID     uint32   `json:"gid"`
	Groups  []uint32 `json:"groups"`
	// Dir is the working directory, entered again as the user once the
	// view is built (a directory entered before the mounts would still
	// be the host's, from which ".." reaches what the mounts hid).
	Dir string `json:"dir"`
}

// ErrRootApp is the refusal of a job that would run the app as root.
var ErrRootApp = errors.New("refusing to run app code as root")
