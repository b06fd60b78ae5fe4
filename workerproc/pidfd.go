package workerproc

import (
	"errors"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// pidExit returns a channel that is closed once process pid has exited,
// whoever its parent is and whether or not it has been reaped yet (a
// zombie counts): a forked worker's exit is seen even when its fork
// server, the only one that can reap it, is stuck. It watches a pidfd
// through the runtime's poller, so no thread waits per process. nil when
// the kernel has no pidfd (before 5.3) or pid is no more: the caller then
// has only the fork server's report.
//
// A pid can be reused once reaped; pidExit is called right after the
// server reported the fork, before it could report (and reap) the exit,
// and what the channel says is only ever taken as "look for the report
// now", which comes first in the normal case.
func pidExit(pid int) <-chan struct{} {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil
	}
	f := os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid))
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.Close()
		// A pidfd is readable once its process has exited. The poller
		// wakes Read whenever that may have changed; readable checks.
		if err := rc.Read(func(fd uintptr) bool { return readable(int(fd), 0) }); err != nil {
			// Not pollable after all: wait in poll(2) on this thread.
			rc.Control(func(fd uintptr) { readable(int(fd), -1) })
		}
	}()
	return done
}

// readable polls fd for input for up to timeout ms (-1: no limit).
func readable(fd, timeout int) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, timeout)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err != nil || n > 0
	}
}

// rss reads a process's resident set size from /proc/PID/statm: three
// system calls, cheap enough to poll a worker near its memory limit many
// times a second (gopsutil's Stats reads more files).
func rss(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, errors.New("short /proc statm")
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}
