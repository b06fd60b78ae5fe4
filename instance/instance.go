// Package instance makes sure one pyhostd runs per run directory (O6).
// A daemon takes an exclusive flock on a lock file in its directory
// before it touches anything there, and holds it until it exits; the
// kernel drops the lock when the process dies, however it dies, so a
// crashed daemon never leaves a stale lock behind.
//
// It does not decide which directory that is: the master passes the
// directory that holds its worker script, sockets and control socket.
package instance

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// FileName is the lock file's name inside the run directory.
const FileName = "pyhostd.lock"

// ErrRunning is wrapped when another process holds the lock.
var ErrRunning = errors.New("another pyhostd is running")

// Lock is a held lock; the zero value is not useful.
type Lock struct {
	f *os.File
}

// Acquire creates dir (0755) if it is missing and takes its lock without
// waiting. When another process holds it, the error wraps ErrRunning and
// names that process's pid (written into the file by its holder). The
// lock file is opened without following a symlink, so a planted link
// cannot make root write a pid elsewhere.
func Acquire(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					holder = "pid " + strconv.Itoa(pid)
				}
			}
			return nil, fmt.Errorf("%w on %s (%s holds %s); stop it first, or give this one its own state_dir", ErrRunning, dir, holder, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Ours now: say who holds it, for the next one that asks.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release drops the lock. The file stays: removing it would let a third
// process lock a fresh inode while a second still waits on the old one.
// Release on nil does nothing.
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Close()
	l.f = nil
}
