// Package daemons owns one child process from start to reaping: creating
// a worker's listening UNIX socket, spawning it with its credential and
// inherited descriptors, reading its status pipe for readiness, turning
// its stdout and stderr into log lines, stopping it (SIGTERM, grace,
// SIGKILL to its process group) and reading its RSS and CPU. A worker is
// started either directly (fork+exec of the interpreter) or forked by its
// app's ForkServer, a preloaded Python process (forkserver.go).
//
// It does not decide when to start, restart or recycle a process; that is
// the supervisor's job.
package daemons

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pyhost/pyhost/privdrop"
)

// ImportError is a worker's report that the app failed to import.
type ImportError struct {
	Message   string // "ModuleNotFoundError: No module named 'x'"
	Traceback string
}

func (e *ImportError) Error() string { return "app import failed: " + e.Message }

// ErrExitedBeforeReady is wrapped when a worker died before reporting.
var ErrExitedBeforeReady = errors.New("worker exited before it was ready")

// Spec is everything needed to start one worker.
type Spec struct {
	Path string   // the interpreter
	Args []string // argv after the interpreter
	Dir  string
	Env  []string
	Cred privdrop.Credential
	// Socket is where the worker's listening socket is created; the file
	// must not exist (the supervisor names sockets uniquely).
	Socket string
	// SocketUID and SocketGID, when >= 0, own the socket file (mode
	// 0660), so that an unprivileged proxy can connect to it; -1 leaves it
	// to the daemon's own user.
	SocketUID, SocketGID int
	// Output receives each line the worker writes to stdout or stderr.
	Output func(pid int, line string)
	// ForkServer, when set, forks the worker with ForkArgs as its argv
	// (the worker's own arguments) instead of running Path with Args;
	// Path, Args, Dir, Env and Cred are then the fork server's.
	ForkServer *ForkServer
	ForkArgs   []string
}

// forkTimeout bounds how long a spawn waits for the fork server: its
// start (an interpreter, tens of ms) and one fork.
const forkTimeout = 10 * time.Second

// Process is one running worker. Its channels are closed exactly once;
// everything else is read-only after Start.
type Process struct {
	pid       int
	pgid      int
	socket    string
	startedAt time.Time

	ready  chan struct{}
	exited chan struct{}

	mu        sync.Mutex
	importErr *ImportError
	exitErr   error // describes how it ended, set before exited closes
	stopOnce  sync.Once
	killSent  atomic.Bool // we sent SIGKILL; one we did not send is news
}

// Start creates the socket and starts the worker from the spawner thread.
func Start(sp *privdrop.Spawner, spec Spec) (*Process, error) {
	sock, err := listenUnix(spec.Socket, spec.SocketUID, spec.SocketGID)
	if err != nil {
		return nil, err
	}
	defer sock.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		os.Remove(spec.Socket)
		return nil, fmt.Errorf("status pipe: %w", err)
	}
	defer statusW.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		statusR.Close()
		os.Remove(spec.Socket)
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	defer outW.Close()

	if fs := spec.ForkServer; fs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), forkTimeout)
		pid, exit, err := fs.spawn(ctx, spec.ForkArgs, sock, statusW, outW)
		cancel()
		if err != nil {
			statusR.Close()
			outR.Close()
			os.Remove(spec.Socket)
			return nil, err
		}
		p := newProcess(pid, spec.Socket)
		gone := pidExit(pid)
		return p.watch(statusR, outR, spec.Output, func() error {
			var raw int
			select {
			case raw = <-exit:
			case <-gone:
				// The kernel says the worker is gone; its server reaps
				// it and reports at once, unless the server is stuck.
				t := time.NewTimer(reportTimeout)
				defer t.Stop()
				select {
				case raw = <-exit:
				case <-t.C:
					return fs.noReport(pid)
				}
			}
			if raw < 0 {
				return errServerDied
			}
			return describeStatus(syscall.WaitStatus(raw), p.killSent.Load())
		}), nil
	}
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	cmd.Stdin = nil
	cmd.Stdout = outW
	cmd.Stderr = outW
	cmd.ExtraFiles = []*os.File{sock, statusW} // fds 3 and 4
	cmd.SysProcAttr = privdrop.SysProcAttr(spec.Cred)
	if err := sp.Start(cmd); err != nil {
		statusR.Close()
		outR.Close()
		os.Remove(spec.Socket)
		return nil, fmt.Errorf("start %s: %w", spec.Path, err)
	}
	p := newProcess(cmd.Process.Pid, spec.Socket)
	return p.watch(statusR, outR, spec.Output, func() error {
		err := cmd.Wait()
		if cmd.ProcessState == nil {
			return fmt.Errorf("wait: %w", err)
		}
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		return describeStatus(ws, p.killSent.Load())
	}), nil
}

func newProcess(pid int, socket string) *Process {
	return &Process{
		pid:       pid,
		pgid:      pid, // a worker leads its own process group
		socket:    socket,
		startedAt: time.Now(),
		ready:     make(chan struct{}),
		exited:    make(chan struct{}),
	}
}

// watch starts the goroutines that read the worker's output and status
// pipes and wait for its end (reap says how it ended).
func (p *Process) watch(statusR, outR *os.File, output func(int, string), reap func() error) *Process {
	outputDone := make(chan struct{})
	go readLines(outR, p.pid, output, outputDone)
	statusDone := make(chan struct{})
	go p.readStatus(statusR, statusDone)
	go p.wait(reap, statusDone, outputDone)
	return p
}

// listenUnix creates the worker's listening socket and returns it as a
// file to be inherited.
func listenUnix(path string, uid, gid int) (*os.File, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("create worker socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	defer ln.Close()
	if uid >= 0 || gid >= 0 {
		if err := os.Chown(path, uid, gid); err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("chown worker socket: %w", err)
		}
		if err := os.Chmod(path, 0o660); err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("chmod worker socket: %w", err)
		}
	}
	f, err := ln.File()
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("worker socket descriptor: %w", err)
	}
	return f, nil
}

// readLines passes each line read from r to out, tagged with pid (a line
// longer than 64 KiB comes in pieces), until EOF; then closes r and done.
func readLines(r *os.File, pid int, out func(int, string), done chan<- struct{}) {
	defer close(done)
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 && out != nil {
			if line[len(line)-1] == '\n' {
				line = line[:len(line)-1]
			}
			out(pid, string(line))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

type statusMsg struct {
	Event     string `json:"event"`
	Error     string `json:"error"`
	Traceback string `json:"traceback"`
}

func (p *Process) readStatus(r *os.File, done chan<- struct{}) {
	defer close(done)
	defer r.Close()
	dec := json.NewDecoder(io.LimitReader(r, 1<<20))
	for {
		var m statusMsg
		if err := dec.Decode(&m); err != nil {
			return
		}
		switch m.Event {
		case "ready":
			select {
			case <-p.ready:
			default:
				close(p.ready)
			}
		case "import_error":
			p.mu.Lock()
			p.importErr = &ImportError{Message: m.Error, Traceback: m.Traceback}
			p.mu.Unlock()
		}
	}
}

func (p *Process) wait(reap func() error, statusDone, outputDone <-chan struct{}) {
	exitErr := reap()
	// Anything the app forked into the worker's group goes with it.
	syscall.Kill(-p.pgid, syscall.SIGKILL)
	// The status pipe's last words (an import error) must be read before
	// exited is closed; its writer is gone, so this cannot block long.
	<-statusDone
	// Give the output reader a moment to pass on the last lines (a
	// traceback); a grandchild holding the pipe must not stall us.
	select {
	case <-outputDone:
	case <-time.After(500 * time.Millisecond):
	}
	os.Remove(p.socket)
	p.mu.Lock()
	p.exitErr = exitErr
	p.mu.Unlock()
	close(p.exited)
}

func describeStatus(ws syscall.WaitStatus, killSent bool) error {
	if ws.Signaled() {
		return &ExitError{Signal: ws.Signal(), External: ws.Signal() == syscall.SIGKILL && !killSent}
	}
	return &ExitError{Code: ws.ExitStatus()}
}

// ExitError says how a worker ended: an exit code, or the signal that
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

// RSS is the worker's resident set size now, in bytes.
func (p *Process) RSS() (int64, error) {
	select {
	case <-p.exited:
		return 0, fmt.Errorf("process %d has exited", p.pid)
	default:
	}
	return rss(p.pid)
}

// PID is the worker's process id.
func (p *Process) PID() int { return p.pid }

// Socket is the path of the worker's listening socket.
func (p *Process) Socket() string { return p.socket }

// StartedAt is when the process was started.
func (p *Process) StartedAt() time.Time { return p.startedAt }

// Ready is closed when the worker imported the app and serves.
func (p *Process) Ready() <-chan struct{} { return p.ready }

// Exited is closed after the process was reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// ExitErr says how the process ended; nil before Exited is closed.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// ImportErr is the import failure the worker reported, or nil.
func (p *Process) ImportErr() *ImportError {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.importErr
}

// Stop asks the worker to finish its in-flight requests and exit
// (SIGTERM), and kills its process group if it has not exited after
// grace. It returns at once; Exited tells when it is gone. Calling it
// again does nothing.
func (p *Process) Stop(grace time.Duration) {
	p.stopOnce.Do(func() {
		syscall.Kill(p.pid, syscall.SIGTERM)
		go func() {
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case <-p.exited:
			case <-t.C:
				p.killSent.Store(true)
				syscall.Kill(-p.pgid, syscall.SIGKILL)
			}
		}()
	})
}

// Kill kills the worker's process group at once.
func (p *Process) Kill() {
	select {
	case <-p.exited:
	default:
		p.killSent.Store(true)
		syscall.Kill(-p.pgid, syscall.SIGKILL)
	}
}

// DumpStacks asks the worker to write every Python thread's stack to its
// stderr, which is the app's log (SIGUSR1; a thread of the worker's own
// formats them, see dump_stacks in pyhost_worker.py). Used before a stuck
// worker is killed, so its owner can see where it hung.
func (p *Process) DumpStacks() {
	select {
	case <-p.exited:
	default:
		syscall.Kill(p.pid, syscall.SIGUSR1)
	}
}
