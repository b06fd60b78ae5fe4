package privdrop

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// Access modes for CheckAccess.
const (
	Read    = 4
	Write   = 2
	Execute = 1
)

// CheckAccess reports whether c could open path for want (Read,
// Execute…): search permission on every directory above it and want on
// path itself, from mode bits, owners and c's groups, the way the kernel
// decides (ACLs aside). It lets a root daemon say plainly, before it
// starts anything, "user nobody cannot enter /root" instead of a bare
// "permission denied" from a child.
func CheckAccess(c Credential, path string, want uint32) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if c.UID == 0 {
		return nil
	}
	dir := "/"
	for _, part := range splitPath(abs) {
		if err := check(c, dir, Execute, "enter"); err != nil {
			return err
		}
		dir = filepath.Join(dir, part)
	}
	verb := map[uint32]string{Read: "read", Execute: "run", Write: "write"}[want]
	if verb == "" {
		verb = "use"
	}
	return check(c, abs, want, verb)
}

func splitPath(abs string) []string {
	var parts []string
	for p := abs; p != "/" && p != "."; p = filepath.Dir(p) {
		parts = append([]string{filepath.Base(p)}, parts...)
	}
	return parts
}

func check(c Credential, path string, want uint32, verb string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	mode := uint32(fi.Mode().Perm())
	var bits uint32
	switch {
	case st.Uid == c.UID:
		bits = mode >> 6
	case st.Gid == c.GID || slices.Contains(c.Groups, st.Gid):
		bits = mode >> 3
	default:
		bits = mode
	}
	if bits&want != want {
		return fmt.Errorf("user %s cannot %s %s (mode %04o, owner uid %d, group gid %d)", c.Username, verb, path, mode, st.Uid, st.Gid)
	}
	return nil
}
