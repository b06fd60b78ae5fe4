// Package privdrop owns who a child process runs as: looking up Unix users
// and their groups, the SysProcAttr that sets a child's credentials,
// process group and parent-death signal, the clean environment a worker
// gets, and the spawner thread that gives every child no_new_privs.
//
// It does not decide which user an app may run as (that is config's
// policy) and it does not supervise processes (workerproc, supervisor).
package privdrop

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// ErrRoot is returned when a credential for uid 0 is asked to run app code.
var ErrRoot = errors.New("refusing to run app code as root")

// Credential is who a child runs as. Groups is always filled in: a child
// never keeps the daemon's supplementary groups by accident.
type Credential struct {
	UID      uint32
	GID      uint32
	Groups   []uint32
	Username string
	Home     string
}

// IsRoot reports whether the credential is uid 0.
func (c Credential) IsRoot() bool { return c.UID == 0 }

// String is "name(uid)".
func (c Credential) String() string { return fmt.Sprintf("%s(%d)", c.Username, c.UID) }

// NSS lookups can be served by modules that are not thread-safe; serialize
// them, as runc and others do.
var lookupMu sync.Mutex

// Lookup resolves a user name or numeric uid to a Credential with its
// primary group and every supplementary group from the group database.
func Lookup(name string) (Credential, error) {
	lookupMu.Lock()
	defer lookupMu.Unlock()
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if _, numErr := strconv.Atoi(name); numErr == nil && errors.As(err, &unknown) {
			u, err = user.LookupId(name)
		}
		if err != nil {
			return Credential{}, fmt.Errorf("look up user %q: %w", name, err)
		}
	}
	return fromUser(u)
}

// Current is the credential of this process's real user.
func Current() (Credential, error) {
	lookupMu.Lock()
	defer lookupMu.Unlock()
	u, err := user.LookupId(strconv.Itoa(os.Getuid()))
	if err != nil {
		// A uid without a passwd entry (containers, CI) still runs.
		return Credential{UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Groups: currentGroups(),
			Username: strconv.Itoa(os.Getuid()), Home: os.Getenv("HOME")}, nil
	}
	c, err := fromUser(u)
	if err != nil {
		return Credential{}, err
	}
	c.Groups = currentGroups()
	return c, nil
}

func currentGroups() []uint32 {
	gids, _ := os.Getgroups()
	out := make([]uint32, 0, len(gids))
	for _, g := range gids {
		out = append(out, uint32(g))
	}
	return out
}

func fromUser(u *user.User) (Credential, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return Credential{}, fmt.Errorf("user %s has a non-numeric uid %q", u.Username, u.Uid)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return Credential{}, fmt.Errorf("user %s has a non-numeric gid %q", u.Username, u.Gid)
	}
	gids, err := u.GroupIds()
	if err != nil {
		return Credential{}, fmt.Errorf("list groups of %s: %w", u.Username, err)
	}
	groups := make([]uint32, 0, len(gids))
	for _, g := range gids {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return Credential{}, fmt.Errorf("user %s is in non-numeric group %q", u.Username, g)
		}
		groups = append(groups, uint32(n))
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i] < groups[j] })
	return Credential{UID: uint32(uid), GID: uint32(gid), Groups: groups, Username: u.Username, Home: u.HomeDir}, nil
}

// SysProcAttr returns the attributes for a child that runs as c: its own
// process group (so a stop reaches all it forked), SIGKILL when the
// spawning thread dies (so no child outlives the daemon, even after kill
// -9 of it), and c's uid, gid and groups when they differ from ours.
//
// WARNING: this is the privilege boundary. The kernel applies setgroups,
// then setgid, then setuid, in that order, in the child before exec; Groups
// is always set explicitly (never NoSetGroups), so a root daemon's groups
// never leak into an app. Changing this needs the root-only tests in
// privdrop_root_test.go to pass.
func SysProcAttr(c Credential) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 || c.UID != uint32(os.Geteuid()) || c.GID != uint32(os.Getegid()) {
		groups := c.Groups
		if groups == nil {
			groups = []uint32{}
		}
		attr.Credential = &syscall.Credential{Uid: c.UID, Gid: c.GID, Groups: groups}
	}
	return attr
}

// Environment variables a child never inherits from the daemon: systemd's
// notification and socket-activation protocol belongs to pyhostd alone.
var systemdVars = []string{"NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_PID", "WATCHDOG_USEC"}

// CleanEnv builds a worker's environment from nothing: a minimal base
// (PATH, HOME, USER, LOGNAME, LANG) plus extra, which wins over the base.
// Nothing of the daemon's own environment reaches the app, and systemd's
// variables are removed even if extra names them.
func CleanEnv(c Credential, extra map[string]string) []string {
	env := map[string]string{
		"PATH":    "/usr/local/bin:/usr/bin:/bin",
		"HOME":    c.Home,
		"USER":    c.Username,
		"LOGNAME": c.Username,
		"LANG":    "C.UTF-8",
	}
	for k, v := range extra {
		env[k] = v
	}
	for _, k := range systemdVars {
		delete(env, k)
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// PrivateGroup reports whether c's primary group is c's alone, as with
// Debian's user private groups: named after the user, with no members
// listed in /etc/group. Anything else (a shared "users" group, a group
// only NSS knows) is treated as shared, so callers err on the closed side.
func PrivateGroup(c Credential) bool {
	lookupMu.Lock()
	g, err := user.LookupGroupId(strconv.Itoa(int(c.GID)))
	lookupMu.Unlock()
	if err != nil || g.Name != c.Username {
		return false
	}
	b, err := os.ReadFile("/etc/group")
	if err != nil {
		return false
	}
	return groupHasNoMembers(string(b), g.Name)
}

// groupHasNoMembers reports whether /etc/group content lists name with an
// empty member list.
func groupHasNoMembers(etcGroup, name string) bool {
	for _, line := range strings.Split(etcGroup, "\n") {
		f := strings.Split(line, ":")
		if len(f) == 4 && f[0] == name {
			return strings.TrimSpace(f[3]) == ""
		}
	}
	return false
}
