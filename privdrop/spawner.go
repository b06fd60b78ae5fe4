package privdrop

import (
	"fmt"
	"os/exec"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Spawner starts child processes from one dedicated OS thread.
//
// Two kernel facts make that thread necessary. PR_SET_PDEATHSIG fires when
// the *thread* that forked the child exits, not the process, and Go may
// retire threads; a thread that never exits makes the parent-death signal
// mean "pyhostd died". And no_new_privs is a per-thread attribute inherited
// across fork and exec; setting it once on this thread gives it to every
// child, so no app can gain privileges through a setuid binary.
type Spawner struct {
	reqs chan spawnReq
}

type spawnReq struct {
	cmd   *exec.Cmd
	start func(*exec.Cmd) error // nil: cmd.Start
	done  chan error
}

var (
	sharedMu sync.Mutex
	shared   *Spawner // nil until a NewSpawner succeeds; then for ever
)

// NewSpawner returns the process's spawner, starting its thread at the
// first call; later calls return the same one, so callers may ask for it
// as often as they like (system mode does at every rescan: each used to
// lock a thread of its own for ever, issue 13). A failed start is not
// remembered: the next call tries again.
func NewSpawner() (*Spawner, error) {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		return shared, nil
	}
	s := &Spawner{reqs: make(chan spawnReq)}
	ready := make(chan error)
	go s.loop(ready, nil)
	if err := <-ready; err != nil {
		return nil, err
	}
	shared = s
	return s, nil
}

func (s *Spawner) loop(ready chan<- error, handoff chan<- struct{}) {
	// Never unlocked: the thread must stay alive and never run other
	// goroutines, or children would get SIGKILL when it is retired.
	runtime.LockOSThread()
	if handoff != nil {
		close(handoff)
	}
	if unix.Gettid() == unix.Getpid() {
		// The main thread (the main goroutine was parked, waiting for
		// ready): cgroup.Group.Start moves its thread into an app's v1
		// groups for a fork, and moving the main thread would move the
		// daemon's own memory accounting. Hold it until another
		// goroutine has locked a thread of its own, which therefore
		// cannot be this one, and let it go.
		next := make(chan struct{})
		go s.loop(ready, next)
		<-next
		runtime.UnlockOSThread()
		return
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		// Returning with the thread locked ends the thread: nothing
		// was started from it, and no other goroutine gets no_new_privs.
		ready <- fmt.Errorf("set no_new_privs on spawner thread: %w", err)
		return
	}
	ready <- nil
	for r := range s.reqs {
		if r.start != nil {
			r.done <- r.start(r.cmd)
		} else {
			r.done <- r.cmd.Start()
		}
	}
}

// Start starts cmd from the spawner thread. cmd.SysProcAttr should come
// from SysProcAttr so the child has its own process group and dies with
// the daemon.
func (s *Spawner) Start(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	s.reqs <- spawnReq{cmd: cmd, done: done}
	return <-done
}

// StartWith starts cmd from the spawner thread by calling start(cmd)
// there instead of cmd.Start: for cgroup.Group.Start, which places the
// child in its cgroup at birth and, on cgroup v1 hierarchies, does so by
// moving the calling thread for the moment of the fork, which must be
// this locked thread that never runs other goroutines. start must call
// cmd.Start exactly once and leave the thread as it found it.
func (s *Spawner) StartWith(cmd *exec.Cmd, start func(*exec.Cmd) error) error {
	done := make(chan error, 1)
	s.reqs <- spawnReq{cmd: cmd, start: start, done: done}
	return <-done
}
