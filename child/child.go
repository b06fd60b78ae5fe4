// Package child is the one lifecycle of every process pyhost runs: a
// worker, a fork server, the proxy, the run-as-user helper. A Process is
// started from the spawner thread (or adopted, for a worker its fork
// server forked), reaped by one goroutine that then kills what is left
// of its process group and closes Exited, and stopped with SIGTERM, a
// grace, then SIGKILL to its process group, however often it is asked.
//
// It knows nothing of what the child is for: readiness, sockets and
// output belong to package workerproc, policy to package supervisor. It
// imports nothing of pyhost's, so that privdrop, which owns the spawner,
// can use it too.
package child

import (
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Starter starts a command; *privdrop.Spawner is the real one (every
// child forked from its one thread, for the parent-death signal and
// no_new_privs).
type Starter interface {
	Start(cmd *exec.Cmd) error
}

// Process is one child process. It must lead its own process group
// (privdrop.SysProcAttr sets Setpgid): stops and kills reach the group.
type Process struct {
	pid    int
	exited chan struct{} // closed once reaped and its group killed

	stopOnce sync.Once
	killSent atomic.Bool // we sent SIGKILL; one we did not send is news

	mu     sync.Mutex
	status syscall.WaitStatus // how it ended; valid once exited
	err    error              // set instead when no wait status is known
}

// Start starts cmd from s and reaps it when it ends. cmd.SysProcAttr
// should come from privdrop.SysProcAttr.
func Start(s Starter, cmd *exec.Cmd) (*Process, error) {
	if err := s.Start(cmd); err != nil {
		return nil, err
	}
	p := newProcess(cmd.Process.Pid)
	go p.reap(func() (syscall.WaitStatus, error) {
		err := cmd.Wait()
		if cmd.ProcessState == nil {
			return 0, fmt.Errorf("wait: %w", err)
		}
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		return ws, nil
	})
	return p, nil
}

// Adopt follows process pid, which someone else reaps (a worker its fork
// server forked): end blocks until it is gone and says how it ended, a
// wait status or, when none is known, an error.
func Adopt(pid int, end func() (syscall.WaitStatus, error)) *Process {
	p := newProcess(pid)
	go p.reap(end)
	return p
}

func newProcess(pid int) *Process {
	return &Process{pid: pid, exited: make(chan struct{})}
}

func (p *Process) reap(end func() (syscall.WaitStatus, error)) {
	ws, err := end()
	// Anything it forked into its group goes with it.
	syscall.Kill(-p.pid, syscall.SIGKILL)
	p.mu.Lock()
	p.status, p.err = ws, err
	p.mu.Unlock()
	close(p.exited)
}

// PID is the process id, which is also its process group's.
func (p *Process) PID() int { return p.pid }

// Exited is closed once the process has been reaped and its group
// killed.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Status is how the process ended: its wait status, or, when none is
// known (its fork server died, say), an error. Zero before Exited is
// closed.
func (p *Process) Status() (syscall.WaitStatus, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status, p.err
}

// Wait blocks until the process ended and returns nil for exit status 0,
// else an *ExitError (or the error Status has).
func (p *Process) Wait() error {
	<-p.exited
	ws, err := p.Status()
	if err != nil {
		return err
	}
	if ws.Exited() && ws.ExitStatus() == 0 {
		return nil
	}
	return Describe(ws, p.KillSent())
}

// KillSent reports whether pyhost sent the process SIGKILL.
func (p *Process) KillSent() bool { return p.killSent.Load() }

// Stop sends SIGTERM, and SIGKILL to the process group if the process
// has not exited after grace. It returns at once; Exited tells when it is
// gone. Only the first call does anything.
func (p *Process) Stop(grace time.Duration) {
	p.stopOnce.Do(func() {
		if p.gone() {
			return
		}
		syscall.Kill(p.pid, syscall.SIGTERM)
		go func() {
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case <-p.exited:
			case <-t.C:
				p.Kill()
			}
		}()
	})
}

// Kill sends SIGKILL to the process group at once, unless the process is
// gone already.
func (p *Process) Kill() {
	if p.gone() {
		return
	}
	p.killSent.Store(true)
	syscall.Kill(-p.pid, syscall.SIGKILL)
}

// Signal sends sig to the process alone, unless it is gone already.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.gone() {
		return errFinished
	}
	return syscall.Kill(p.pid, sig)
}

var errFinished = errors.New("process already finished")

func (p *Process) gone() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Describe says how a process ended, from its wait status; killSent:
// pyhost sent the SIGKILL, if that is what ended it.
func Describe(ws syscall.WaitStatus, killSent bool) *ExitError {
	if ws.Signaled() {
		return &ExitError{Signal: ws.Signal(), External: ws.Signal() == syscall.SIGKILL && !killSent}
	}
	return &ExitError{Code: ws.ExitStatus()}
}

// ExitError says how a process ended: an exit code, or the signal that
// killed it.
type ExitError struct {
	Code   int
	Signal syscall.Signal
	// External: SIGKILL that pyhost did not send. The kernel's OOM killer
	// is the usual sender; the log says so, since an owner reading "killed
	// by signal 9" alone would not guess it.
	External bool
}

func (e *ExitError) Error() string {
	switch {
	case e.External:
		return fmt.Sprintf("killed by signal %d (%s, not sent by pyhost: the kernel's OOM killer or another process)", int(e.Signal), signalName(e.Signal))
	case e.Signal != 0:
		return fmt.Sprintf("killed by signal %d (%s)", int(e.Signal), signalName(e.Signal))
	}
	return fmt.Sprintf("exited with status %d", e.Code)
}

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGSEGV:
		return "SIGSEGV"
	case syscall.SIGABRT:
		return "SIGABRT"
	case syscall.SIGBUS:
		return "SIGBUS"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return s.String()
}
