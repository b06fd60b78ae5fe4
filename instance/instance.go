// Package instance makes sure one pyhostd runs per directory it keeps
// state in (O6): the run directory (state_dir: the worker script, the
// worker sockets, the control socket) and, in system mode, data_dir (the
// claims ledger, which two daemons would overwrite in turn). A daemon
// takes an exclusive flock on each directory itself, through a
// descriptor of the directory, before it touches anything there, and
// holds it until it exits; the kernel drops the lock when the process
// dies, however it dies, so a crashed daemon never leaves a stale lock
// behind. Locking the directory, not a file in it, means no `rm` of a
// file can defeat the lock: a second daemon that took a fresh lock file
// would go on to remove the live daemon's worker sockets on its way out.
//
// A pid file (PidFile) in the directory only says who holds the lock,
// for the refusal's message; the lock is the kernel's.
//
// It does not decide which directories those are: the master passes its
// run directory, and pyhostd run its data_dir.
package instance

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// PidFile is the name, inside a locked directory, of the file that holds
// the pid of the daemon that locked it. Removing it changes nothing but
// the message a second daemon prints.
const PidFile = "pyhostd.pid"

// ErrRunning is wrapped when another process holds the lock.
var ErrRunning = errors.New("another pyhostd is running")

// Lock is a held lock on a directory; the zero value is not useful.
type Lock struct {
	h *held // nil once released
}

// held is one directory this process has locked. Guarded by mu.
type held struct {
	key  dirKey
	fd   int // the directory, opened O_RDONLY|O_DIRECTORY, flocked
	refs int // Locks not released yet
}

type dirKey struct{ dev, ino uint64 }

var (
	mu sync.Mutex
	// mine is every directory this process holds, by inode: a second
	// Acquire of one (data_dir and state_dir the same directory, or named
	// through a symlink) shares the lock instead of refusing its own
	// process, since flock locks belong to an open file description and
	// a second open would conflict with the first.
	mine = map[dirKey]*held{}
)

// Acquire is AcquireMode(dir, 0o755): a run directory holds what every
// app's user reads (the worker script).
func Acquire(dir string) (*Lock, error) { return AcquireMode(dir, 0o755) }

// AcquireMode creates dir with perm if it is missing (an existing one
// keeps its mode) and locks it without waiting. When another process
// holds the lock, the error wraps ErrRunning and names that process's
// pid: the kernel's (/proc/locks), else the one in dir's PidFile. When
// this process already holds dir, the lock is shared: it is dropped when
// every Lock on it is released.
func AcquireMode(dir string, perm fs.FileMode) (*Lock, error) {
	if err := os.MkdirAll(dir, perm); err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, &fs.PathError{Op: "open", Path: dir, Err: err})
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	key := dirKey{uint64(st.Dev), st.Ino}
	mu.Lock()
	defer mu.Unlock()
	if h := mine[key]; h != nil {
		unix.Close(fd)
		h.refs++
		return &Lock{h: h}, nil
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer unix.Close(fd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w on %s (%s); stop it first, or give this daemon a state_dir and a data_dir of its own", ErrRunning, dir, holder(fd, key))
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	h := &held{key: key, fd: fd, refs: 1}
	writePid(fd)
	mine[key] = h
	return &Lock{h: h}, nil
}

// Release drops l; the directory's lock goes with the last Lock on it,
// and its pid file just before. Release on nil, or twice, does nothing.
func (l *Lock) Release() {
	if l == nil || l.h == nil {
		return
	}
	h := l.h
	l.h = nil
	mu.Lock()
	defer mu.Unlock()
	if h.refs--; h.refs > 0 {
		return
	}
	delete(mine, h.key)
	// Relative to the locked directory: if its name now leads to another
	// directory (removed and made anew), that one's pid file is not ours.
	unix.Unlinkat(h.fd, PidFile, 0)
	unix.Close(h.fd)
}

// writePid writes this process's pid into the directory's PidFile, by a
// new file renamed over it: a reader never sees half a pid, and a symlink
// planted at the name is replaced, never followed. Failure is ignored:
// the file only serves a message.
func writePid(dirfd int) {
	const tmp = PidFile + ".tmp"
	unix.Unlinkat(dirfd, tmp, 0)
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return
	}
	_, err = unix.Write(fd, []byte(strconv.Itoa(os.Getpid())+"\n"))
	unix.Close(fd)
	if err == nil {
		err = unix.Renameat(dirfd, tmp, dirfd, PidFile)
	}
	if err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
	}
}

// holder names the process that holds the lock on key: "pid N" from the
// kernel's table of locks, else from the directory's pid file, else
// "another process".
func holder(dirfd int, key dirKey) string {
	if pid := lockPid("/proc/locks", key); pid > 0 {
		return "pid " + strconv.Itoa(pid)
	}
	if pid := readPid(dirfd); pid > 0 {
		return "pid " + strconv.Itoa(pid)
	}
	return "another process"
}

// readPid reads the directory's PidFile, 0 when there is no pid in it.
func readPid(dirfd int) int {
	fd, err := unix.Openat(dirfd, PidFile, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	buf := make([]byte, 32)
	n, err := unix.Read(fd, buf)
	if err != nil || n <= 0 {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// lockPid finds, in a /proc/locks table, the process holding a flock on
// key, 0 when none is listed. A line reads
//
//	1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF
//
// with the device as hexadecimal major:minor, then the inode; lines of
// processes waiting for a lock have "->" after the number.
func lockPid(table string, key dirKey) int {
	f, err := os.Open(table)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" {
			continue
		}
		dev := strings.Split(fields[5], ":")
		if len(dev) != 3 {
			continue
		}
		major, err1 := strconv.ParseUint(dev[0], 16, 32)
		minor, err2 := strconv.ParseUint(dev[1], 16, 32)
		ino, err3 := strconv.ParseUint(dev[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || ino != key.ino || unix.Mkdev(uint32(major), uint32(minor)) != key.dev {
			continue
		}
		if pid, err := strconv.Atoi(fields[4]); err == nil && pid > 0 {
			return pid
		}
	}
	return 0
}
