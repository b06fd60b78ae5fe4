// Package workerproc owns one worker process from start to reaping:
// creating its listening UNIX socket, spawning it with its credential and
// inherited descriptors, reading its status pipe for readiness, turning
// its stdout and stderr into log lines, and reading its RSS and CPU. A
// worker is started either directly (fork+exec of the interpreter) or
// forked by its app's ForkServer, a preloaded Python process
// (forkserver.go). Both, like every child of pyhost's, live by one
// lifecycle, package child: reaped by one goroutine, stopped with
// SIGTERM, a grace, then SIGKILL to the process group.
//
// It does not decide when to start, restart or recycle a process; that is
// the supervisor's job.
package workerproc

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
	"syscall"
	"time"

	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/child"
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
	// Cgroup, when set, is the group a directly started worker is born
	// in (its leaf below the app's group). A forked worker is born in its
	// fork server's group and moves itself to its leaf (ForkArgs carry
	// --cgroup).
	Cgroup *cgroup.Group
	// Wrap, when set, rewrites the command just before it starts: the
	// app's sandbox runs it through its trampoline (package sandbox).
	Wrap func(*exec.Cmd) error
}

// forkTimeout bounds how long a spawn waits for the fork server: its
// start (an interpreter, tens of ms) and one fork.
const forkTimeout = 10 * time.Second

// Process is one running worker. Its channels are closed exactly once;
// everything else is read-only after Start.
type Process struct {
	child     *child.Process
	socket    string
	startedAt time.Time

	ready  chan struct{}
	exited chan struct{} // closed after child's Exited, once its last words were read

	mu        sync.Mutex
	importErr *ImportError
	exitErr   error // describes how it ended, set before exited closes
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
		gone := pidExit(pid)
		c := child.Adopt(pid, func() (syscall.WaitStatus, error) {
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
					return 0, fs.noReport(pid)
				}
			}
			if raw < 0 {
				return 0, errServerDied
			}
			return syscall.WaitStatus(raw), nil
		})
		return newProcess(c, spec.Socket).watch(statusR, outR, spec.Output), nil
	}
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	cmd.Stdin = nil
	cmd.Stdout = outW
	cmd.Stderr = outW
	cmd.ExtraFiles = []*os.File{sock, statusW} // fds 3 and 4
	cmd.SysProcAttr = privdrop.SysProcAttr(spec.Cred)
	c, err := startChild(sp, spec.Cgroup, spec.Wrap, cmd)
	if err != nil {
		statusR.Close()
		outR.Close()
		os.Remove(spec.Socket)
		return nil, fmt.Errorf("start %s: %w", spec.Path, err)
	}
	return newProcess(c, spec.Socket).watch(statusR, outR, spec.Output), nil
}

func newProcess(c *child.Process, socket string) *Process {
	return &Process{
		child:     c,
		socket:    socket,
		startedAt: time.Now(),
		ready:     make(chan struct{}),
		exited:    make(chan struct{}),
	}
}

// watch starts the goroutines that read the worker's output and status
// pipes and wait for its end.
func (p *Process) watch(statusR, outR *os.File, output func(int, string)) *Process {
	outputDone := make(chan struct{})
	go readLines(outR, p.PID(), output, outputDone)
	statusDone := make(chan struct{})
	go p.readStatus(statusR, statusDone)
	go p.wait(statusDone, outputDone)
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

func (p *Process) wait(statusDone, outputDone <-chan struct{}) {
	// Reaped, and anything the app forked into the worker's group killed.
	<-p.child.Exited()
	var exitErr error
	if ws, err := p.child.Status(); err != nil {
		exitErr = err
	} else {
		exitErr = child.Describe(ws, p.child.KillSent())
	}
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

// ExitError says how a worker ended: an exit code, or the signal that
// killed it.
type ExitError = child.ExitError

// RSS is the worker's resident set size now, in bytes.
func (p *Process) RSS() (int64, error) {
	select {
	case <-p.exited:
		return 0, fmt.Errorf("process %d has exited", p.PID())
	default:
	}
	return rss(p.PID())
}

// PID is the worker's process id.
func (p *Process) PID() int { return p.child.PID() }

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
func (p *Process) Stop(grace time.Duration) { p.child.Stop(grace) }

// Kill kills the worker's process group at once.
func (p *Process) Kill() { p.child.Kill() }

// DumpStacks asks the worker to write every Python thread's stack to its
// stderr, which is the app's log (SIGUSR1; a thread of the worker's own
// formats them, see dump_stacks in pyhost_worker.py). Used before a stuck
// worker is killed, so its owner can see where it hung.
func (p *Process) DumpStacks() { p.child.Signal(syscall.SIGUSR1) }
