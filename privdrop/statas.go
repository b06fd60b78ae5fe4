package privdrop

import (
	"fmt"
	"io/fs"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// LstatAs lstats path with c's file-system rights: on an OS thread of its
// own whose fsuid, fsgid and supplementary groups are c's for the one
// call (each is per thread in Linux; x/sys/unix's setgroups is the raw,
// one-thread system call, unlike syscall.Setgroups). So the kernel itself
// resolves every component of the path, symlinks included, with c's
// permissions, in one step: a tenant who swaps a directory of the path
// for a symlink between a check and the stat gains nothing, which a
// check of the mode bits followed by a root stat cannot promise (a
// file-exists oracle on any path). The thread gets root's file-system
// credentials back before it is reused; if that fails it is never
// unlocked, and the runtime ends it with its goroutine.
//
// Only root can do this; LstatAs of any other caller is os.Lstat after
// CheckAccess of the directory (the caller can only see what it may).
func LstatAs(c Credential, path string) (fs.FileInfo, error) {
	if os.Geteuid() != 0 {
		if err := CheckAccess(c, dirOf(path), Execute); err != nil {
			return nil, err
		}
		return os.Lstat(path)
	}
	type result struct {
		fi  fs.FileInfo
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		fi, err, restored := lstatAsLocked(c, path)
		if restored {
			runtime.UnlockOSThread()
		}
		done <- result{fi, err}
	}()
	r := <-done
	return r.fi, r.err
}

// lstatAsLocked runs on a locked thread; restored says whether the thread
// has root's file-system credentials again.
func lstatAsLocked(c Credential, path string) (fi fs.FileInfo, err error, restored bool) {
	saved, err := unix.Getgroups()
	if err != nil {
		return nil, fmt.Errorf("getgroups: %w", err), true
	}
	groups := make([]int, len(c.Groups))
	for i, g := range c.Groups {
		groups[i] = int(g)
	}
	if err := unix.Setgroups(groups); err != nil {
		return nil, fmt.Errorf("setgroups for %s: %w", c, err), unix.Setgroups(saved) == nil
	}
	restore := func() bool {
		unix.Setfsuid(0)
		unix.Setfsgid(0)
		uid, _ := unix.SetfsuidRetUid(-1)
		gid, _ := unix.SetfsgidRetGid(-1)
		return unix.Setgroups(saved) == nil && uid == 0 && gid == 0
	}
	unix.Setfsgid(int(c.GID))
	unix.Setfsuid(int(c.UID))
	// setfsuid reports no failure; read the values back.
	if uid, _ := unix.SetfsuidRetUid(-1); uid != int(c.UID) {
		return nil, fmt.Errorf("setfsuid %d did not take", c.UID), restore()
	}
	if gid, _ := unix.SetfsgidRetGid(-1); gid != int(c.GID) {
		return nil, fmt.Errorf("setfsgid %d did not take", c.GID), restore()
	}
	fi, err = os.Lstat(path)
	return fi, err, restore()
}

func dirOf(path string) string {
	for i := len(path) - 1; i > 0; i-- {
		if path[i] == '/' {
			return path[:i]
		}
	}
	if len(path) > 0 && path[0] == '/' {
		return "/"
	}
	return "."
}
