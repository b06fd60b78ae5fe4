package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/sandbox/trampoline"
)

// Command is the hidden pyhostd subcommand that is the fallback
// trampoline, `pyhostd sandbox-exec JOB -- PATH ARGV...`
// (cmd/pyhostd/sandbox.go): the same work as pyhost-sandbox, after the
// whole daemon's start-up.
const Command = "sandbox-exec"

// self is the fallback trampoline: the daemon's own image, even when
// pyhostd was replaced or sits under a private home (the kernel checks
// only its execute bit), as for the proxy child.
const self = "/proc/self/exe"

// LibDir is where an installed pyhost-sandbox lives, relative to the
// prefix pyhostd's bin directory is in: /usr/lib/pyhost for
// /usr/bin/pyhostd (the package), /usr/local/lib/pyhost for make
// install's /usr/local/bin/pyhostd. A helper no user runs belongs there
// on Debian (policy 9.1.1), not on PATH.
const LibDir = "lib/pyhost"

// ErrNeedsRoot is returned by Wrap for a command that does not change
// user: mounts need root, and only a root daemon starts apps as others.
var ErrNeedsRoot = errors.New("a sandbox needs a root daemon that starts the app as its user")

// Logger, when set, gives the log in which the first Wrap says, once,
// which trampoline the daemon uses (cmd/pyhostd sets the daemon's). It
// is a function so that the logger is made when it is first needed,
// with the log format the daemon's config chose by then.
var Logger func() hclog.Logger

// Trampoline is what a wrapped command executes first: Path, with Args
// (argv[0] and, for pyhostd, its subcommand) before the job.
type Trampoline struct {
	Path string
	Args []string
}

var (
	chooseOnce sync.Once
	chosen     Trampoline
)

// choose is the daemon's trampoline, looked for once: the image found
// then is the one every start uses (an upgrade that removes it is met by
// the job's version check, then the daemon's restart).
func choose() Trampoline {
	chooseOnce.Do(func() {
		exe, err := os.Executable()
		var why string
		chosen, why = Find(exe, err)
		if Logger == nil {
			return
		}
		if chosen.Path == self {
			Logger().Warn("sandboxed apps start through pyhostd "+Command+", which adds pyhostd's start-up (tens of ms) to each worker start; install "+trampoline.Binary+" beside pyhostd or in PREFIX/"+LibDir, "why", why)
		} else {
			Logger().Info("sandboxed apps start through "+trampoline.Binary, "path", chosen.Path)
		}
	})
	return chosen
}

// Find is the trampoline for a daemon whose binary is exe (exeErr:
// os.Executable's error): the first usable pyhost-sandbox of
// Candidates(exe), else pyhostd sandbox-exec, with why none was.
func Find(exe string, exeErr error) (Trampoline, string) {
	fallback := Trampoline{Path: self, Args: []string{"pyhostd", Command}}
	if exeErr != nil {
		return fallback, fmt.Sprintf("pyhostd's own path is unknown: %v", exeErr)
	}
	var owner fs.FileInfo
	owner, err := os.Stat(exe)
	if err != nil {
		return fallback, fmt.Sprintf("pyhostd's own path: %v", err)
	}
	var whys []string
	for _, c := range Candidates(exe) {
		err := usable(c, owner)
		if err == nil {
			return Trampoline{Path: c, Args: []string{trampoline.Binary}}, ""
		}
		whys = append(whys, err.Error())
	}
	return fallback, fmt.Sprint(whys)
}

// Candidates are where pyhost-sandbox is looked for, in order: beside
// pyhostd (make build's bin/, the integration tests), then in
// PREFIX/lib/pyhost for PREFIX/bin/pyhostd (the package, make install).
func Candidates(exe string) []string {
	dir := filepath.Dir(exe)
	return []string{
		filepath.Join(dir, trampoline.Binary),
		filepath.Join(filepath.Dir(dir), LibDir, trampoline.Binary),
	}
}

// usable refuses a candidate that is not a regular executable file, or
// that someone other than root or pyhostd's own owner could have put
// there or changed: it runs as root with every app's job.
func usable(path string, daemon fs.FileInfo) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o100 == 0 {
		return fmt.Errorf("%s: not an executable file", path)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s: writable by group or others (mode %o)", path, st.Mode().Perm())
	}
	uid := st.Sys().(*syscall.Stat_t).Uid
	if uid != 0 && uid != daemon.Sys().(*syscall.Stat_t).Uid {
		return fmt.Errorf("%s: owned by uid %d, neither root nor pyhostd's owner", path, uid)
	}
	return nil
}

// Wrapper is p.Wrap, or nil when p is nil: the value for workerproc's
// Spec.Wrap and ForkServerSpec.Wrap.
func Wrapper(p *Plan) func(*exec.Cmd) error {
	if p == nil {
		return nil
	}
	return p.Wrap
}

// Wrap turns cmd, whose SysProcAttr comes from privdrop.SysProcAttr,
// into the same command started through the trampoline (pyhost-sandbox,
// or this binary as pyhostd sandbox-exec: choose), still root, in a new
// mount namespace (made private from the host's: Go's Unshareflags
// remounts / with MS_REC|MS_PRIVATE), which applies p, drops to the
// credential cmd would have run as and executes cmd's program with
// cmd's argv and environment. Process group, parent-death signal and
// inherited descriptors stay as they were.
//
// WARNING: this moves the privilege drop from the kernel's fork path to
// the trampoline (trampoline.Exec, drop); the credential is taken from
// cmd itself so there is one source of who the app runs as, and uid 0 is
// refused.
func (p Plan) Wrap(cmd *exec.Cmd) error {
	if cmd.Err != nil {
		return nil // Start reports it
	}
	attr := cmd.SysProcAttr
	if attr == nil || attr.Credential == nil || os.Geteuid() != 0 {
		return ErrNeedsRoot
	}
	return p.wrap(cmd, choose())
}

// wrap is Wrap through t.
func (p Plan) wrap(cmd *exec.Cmd, t Trampoline) error {
	attr := cmd.SysProcAttr
	c := attr.Credential
	if c.Uid == 0 {
		return trampoline.ErrRootApp
	}
	dir := cmd.Dir
	if dir == "" {
		dir = "/"
	}
	spec, err := json.Marshal(trampoline.Job{Version: trampoline.Version, Plan: trampoline.Plan(p),
		UID: c.Uid, GID: c.Gid, Groups: append([]uint32{}, c.Groups...), Dir: dir})
	if err != nil {
		return err
	}
	args := append(append([]string{}, t.Args...), string(spec), "--", cmd.Path)
	cmd.Path, cmd.Args = t.Path, append(args, cmd.Args...)
	wrapped := *attr
	wrapped.Credential = nil
	wrapped.Unshareflags |= syscall.CLONE_NEWNS
	cmd.SysProcAttr = &wrapped
	return nil
}
