package sandbox

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// Command is the hidden pyhostd subcommand that is the trampoline:
// `pyhostd sandbox-exec JOB -- PATH ARGV...` (cmd/pyhostd/sandbox.go).
const Command = "sandbox-exec"

// self is the binary re-executed as the trampoline: the daemon's own
// image, even when pyhostd was replaced or sits under a private home
// (the kernel checks only its execute bit), as for the proxy child.
const self = "/proc/self/exe"

// ErrNeedsRoot is returned by Wrap for a command that does not change
// user: mounts need root, and only a root daemon starts apps as others.
var ErrNeedsRoot = errors.New("a sandbox needs a root daemon that starts the app as its user")

// job is what the trampoline is told: the Plan and who to become.
type job struct {
	Plan   Plan     `json:"plan"`
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups"`
	// Dir is the working directory, entered again as the user once the
	// view is built (a directory entered before the mounts would still
	// be the host's, from which ".." reaches what the mounts hid).
	Dir string `json:"dir"`
}

// Wrapper is p.Wrap, or nil when p is nil: the value for daemons'
// Spec.Wrap and ForkServerSpec.Wrap.
func Wrapper(p *Plan) func(*exec.Cmd) error {
	if p == nil {
		return nil
	}
	return p.Wrap
}

// Wrap turns cmd, whose SysProcAttr comes from privdrop.SysProcAttr,
// into the same command started through the trampoline: this binary,
// still root, in a new mount namespace (made private from the host's:
// Go's Unshareflags remounts / with MS_REC|MS_PRIVATE), which applies p,
// drops to the credential cmd would have run as and executes cmd's
// program with cmd's argv and environment. Process group, parent-death
// signal and inherited descriptors stay as they were.
//
// WARNING: this moves the privilege drop from the kernel's fork path to
// the trampoline (exec.go, drop); the credential is taken from cmd
// itself so there is one source of who the app runs as, and uid 0 is
// refused.
func (p Plan) Wrap(cmd *exec.Cmd) error {
	if cmd.Err != nil {
		return nil // Start reports it
	}
	attr := cmd.SysProcAttr
	if attr == nil || attr.Credential == nil || os.Geteuid() != 0 {
		return ErrNeedsRoot
	}
	c := attr.Credential
	if c.Uid == 0 {
		return errRootApp
	}
	dir := cmd.Dir
	if dir == "" {
		dir = "/"
	}
	spec, err := json.Marshal(job{Plan: p, UID: c.Uid, GID: c.Gid, Groups: append([]uint32{}, c.Groups...), Dir: dir})
	if err != nil {
		return err
	}
	args := append([]string{"pyhostd", Command, string(spec), "--", cmd.Path}, cmd.Args...)
	cmd.Path, cmd.Args = self, args
	wrapped := *attr
	wrapped.Credential = nil
	wrapped.Unshareflags |= syscall.CLONE_NEWNS
	cmd.SysProcAttr = &wrapped
	return nil
}

var errRootApp = errors.New("refusing to run app code as root")
