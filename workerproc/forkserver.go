package workerproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// ErrForkServer is wrapped by every failure of a fork server: it could not
// start, refused a spawn, or died. The caller falls back to starting the
// worker itself.
var ErrForkServer = errors.New("fork server")

// ErrForkServerStale is wrapped when a fork server refused to fork because
// the interpreter or a site directory changed since it started: a new
// server would see the change, forks from this one would not.
var ErrForkServerStale = fmt.Errorf("%w is stale", ErrForkServer)

// errServerDied is the exit status of a child whose fork server died: the
// kernel killed the child with it (parent-death signal), and nobody is
// left to report its status.
var errServerDied = fmt.Errorf("%w died, and its workers were killed with it", ErrForkServer)

// ErrNoReport is the exit status of a child that is gone (seen through a
// pidfd) but whose fork server did not report how within reportTimeout:
// the server is stuck (stopped, say). The master does not wait for it.
var ErrNoReport = fmt.Errorf("%w did not report how the worker ended: it is not responding", ErrForkServer)

// ForkServerSpec starts a fork server: the worker script with
// --fork-server, under the app's interpreter, credential, directory and
// environment. Every worker it forks inherits all four.
type ForkServerSpec struct {
	Path   string   // the interpreter
	Args   []string // argv after the interpreter
	Dir    string
	Env    []string
	Cred   privdrop.Credential
	Output func(pid int, line string) // its own stdout and stderr
	// Cgroup, when set, is the app's group, where the server is born
	// and so every worker it forks.
	Cgroup *cgroup.Group
	// Wrap, when set, rewrites the command just before it starts: the
	// app's sandbox runs it through its trampoline (package sandbox).
	Wrap func(*exec.Cmd) error
}

// readyTimeout bounds the wait for a new server, which starts like a worker
// without an app (tens of ms): one stuck in a site hook must not hold up
// its app, whose worker then starts directly.
const readyTimeout = 3 * time.Second

// replyTimeout bounds the wait for a ready server's answer to a spawn: a
// fork and a message, milliseconds even on a loaded host. A server that
// misses it is stuck (stopped, or wedged) and forks no more (Err); the
// worker is started directly instead, and the app's next spawns go to a
// new server.
const replyTimeout = 2 * time.Second

// reportTimeout bounds the wait for a server's report of a child's exit
// once the kernel says (pidfd) the child is gone. A server reaps on
// SIGCHLD at once; one that does not is stuck, and the master goes on
// without the wait status rather than wait for it: reloads, recycles and
// graceful_timeout never depend on the fork server's health.
const reportTimeout = time.Second

// ForkServer is one app's preloaded Python process that forks workers on
// request (pyhost_worker.py, serve_forks). A forked worker costs the CPU of
// a fork and of importing the app, not of starting an interpreter, which
// is most of a hello-world worker's start (docs/design.md).
//
// Its children are not the master's: the server reaps them and reports
// their wait status. They die with it (parent-death signal), as it dies
// with the master.
type ForkServer struct {
	child  *child.Process
	pid    int
	conn   *net.UnixConn
	ready  chan struct{}
	exited chan struct{} // closed when the server process was reaped

	mu      sync.Mutex
	nextID  uint64
	replies map[uint64]chan spawnReply
	exits   map[int]chan int // child pid → its raw wait status, or -1
	retired bool             // no more spawns; close once no child is left
	gone    error            // set when the connection ended
	stuck   error            // set when it missed replyTimeout or reportTimeout
}

type spawnReply struct {
	pid  int
	exit chan int
	err  error
}

type forkMsg struct {
	Event  string `json:"event"`
	ID     uint64 `json:"id"`
	PID    int    `json:"pid"`
	Status int    `json:"status"`
	Error  string `json:"error"`
	Stale  bool   `json:"stale"`
}

// StartForkServer starts a fork server from the spawner thread. It is
// usable once Ready is closed.
func StartForkServer(sp *privdrop.Spawner, spec ForkServerSpec) (*ForkServer, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: socketpair: %w", ErrForkServer, err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "fork-server"), os.NewFile(uintptr(fds[1]), "fork-server-child")
	defer theirs.Close()
	fc, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: control socket: %w", ErrForkServer, err)
	}
	conn := fc.(*net.UnixConn)
	outR, outW, err := os.Pipe()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: output pipe: %w", ErrForkServer, err)
	}
	defer outW.Close()

	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	cmd.Stdout = outW
	cmd.Stderr = outW
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	cmd.SysProcAttr = privdrop.SysProcAttr(spec.Cred)
	c, err := startChild(sp, spec.Cgroup, spec.Wrap, cmd)
	if err != nil {
		conn.Close()
		outR.Close()
		return nil, fmt.Errorf("%w: start %s: %w", ErrForkServer, spec.Path, err)
	}
	fs := &ForkServer{
		child:   c,
		pid:     c.PID(),
		conn:    conn,
		ready:   make(chan struct{}),
		exited:  make(chan struct{}),
		replies: map[uint64]chan spawnReply{},
		exits:   map[int]chan int{},
	}
	go readLines(outR, fs.pid, spec.Output, make(chan struct{}))
	go fs.read()
	go func() {
		<-c.Exited()
		conn.Close() // a server that died mid-message must not leave read blocked
		close(fs.exited)
	}()
	return fs, nil
}

// read dispatches the server's messages until its socket closes, then
// fails whatever still waits on it.
func (fs *ForkServer) read() {
	buf := make([]byte, 64<<10)
	var cause error
	for {
		n, err := fs.conn.Read(buf)
		if err != nil || n == 0 {
			cause = err
			break
		}
		var m forkMsg
		if err := json.Unmarshal(buf[:n], &m); err != nil {
			cause = fmt.Errorf("bad message %q: %w", buf[:n], err)
			break
		}
		fs.handle(m)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if cause == nil || errors.Is(cause, net.ErrClosed) {
		fs.gone = fmt.Errorf("%w exited", ErrForkServer)
	} else {
		fs.gone = fmt.Errorf("%w: %w", ErrForkServer, cause)
	}
	for id, c := range fs.replies {
		c <- spawnReply{err: fs.gone}
		delete(fs.replies, id)
	}
	for pid, c := range fs.exits {
		c <- -1
		delete(fs.exits, pid)
	}
	fs.conn.Close()
}

func (fs *ForkServer) handle(m forkMsg) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	switch m.Event {
	case "ready":
		select {
		case <-fs.ready:
		default:
			close(fs.ready)
		}
	case "spawned", "refused":
		c, ok := fs.replies[m.ID]
		if !ok {
			if m.Event == "spawned" {
				// Forked after its requester gave up: nobody will
				// supervise it.
				syscall.Kill(m.PID, syscall.SIGKILL)
			}
			return
		}
		delete(fs.replies, m.ID)
		if m.Event == "refused" {
			base := ErrForkServer
			if m.Stale {
				base = ErrForkServerStale
			}
			c <- spawnReply{err: fmt.Errorf("%w: refused: %s", base, m.Error)}
			return
		}
		// Registered before the reply is passed on: the child's exit
		// report can only come after this message.
		exit := make(chan int, 1)
		fs.exits[m.PID] = exit
		c <- spawnReply{pid: m.PID, exit: exit}
	case "exit":
		c, ok := fs.exits[m.PID]
		if !ok {
			return
		}
		delete(fs.exits, m.PID)
		c <- m.Status
		fs.closeIfDoneLocked()
	}
}

// closeIfDoneLocked ends a retired server once no child of it is left: it
// exits when the master closes its end. A stuck one would not see that;
// it has no child to take along any more, so it is killed.
func (fs *ForkServer) closeIfDoneLocked() {
	if !fs.retired || len(fs.exits) > 0 || fs.gone != nil {
		return
	}
	fs.conn.CloseWrite()
	if fs.stuck != nil {
		fs.child.Kill()
	}
}

// markStuck records that the server stopped answering; it forks no more.
func (fs *ForkServer) markStuck(err error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.stuck == nil {
		fs.stuck = err
	}
}

// noReport is the end of child pid when the kernel says it is gone and
// the server did not say how within reportTimeout: the server is marked
// stuck, forgets the child (a late report is ignored), and is killed if
// retired with no child left.
func (fs *ForkServer) noReport(pid int) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.stuck == nil {
		fs.stuck = fmt.Errorf("%w (pid %d) did not report worker %d's exit within %v", ErrForkServer, fs.pid, pid, reportTimeout)
	}
	delete(fs.exits, pid)
	fs.closeIfDoneLocked()
	return ErrNoReport
}

// PID is the fork server's process id.
func (fs *ForkServer) PID() int { return fs.pid }

// Ready is closed once the server can fork.
func (fs *ForkServer) Ready() <-chan struct{} { return fs.ready }

// Exited is closed when the server process has been reaped.
func (fs *ForkServer) Exited() <-chan struct{} { return fs.exited }

// Err says why the server can no longer fork, or nil.
func (fs *ForkServer) Err() error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.gone != nil {
		return fs.gone
	}
	if fs.stuck != nil {
		return fs.stuck
	}
	if fs.retired {
		return fmt.Errorf("%w retired", ErrForkServer)
	}
	return nil
}

// spawn asks the server for one worker with the given argv and the three
// descriptors it expects (listening socket, status pipe, output pipe), and
// returns the child's pid and where its wait status will arrive (-1: the
// server died and took the child with it).
func (fs *ForkServer) spawn(ctx context.Context, argv []string, listen, status, output *os.File) (int, <-chan int, error) {
	ready := time.NewTimer(readyTimeout)
	defer ready.Stop()
	select {
	case <-fs.ready:
	case <-fs.exited:
		return 0, nil, fmt.Errorf("%w exited before it was ready", ErrForkServer)
	case <-ready.C:
		return 0, nil, fmt.Errorf("%w not ready within %v", ErrForkServer, readyTimeout)
	case <-ctx.Done():
		return 0, nil, fmt.Errorf("%w not ready: %w", ErrForkServer, ctx.Err())
	}
	fs.mu.Lock()
	if err := fs.gone; err != nil {
		fs.mu.Unlock()
		return 0, nil, err
	}
	if err := fs.stuck; err != nil {
		fs.mu.Unlock()
		return 0, nil, err
	}
	if fs.retired {
		fs.mu.Unlock()
		return 0, nil, fmt.Errorf("%w retired", ErrForkServer)
	}
	fs.nextID++
	id := fs.nextID
	reply := make(chan spawnReply, 1)
	fs.replies[id] = reply
	fs.mu.Unlock()

	msg, _ := json.Marshal(struct {
		ID   uint64   `json:"id"`
		Argv []string `json:"argv"`
	}{id, argv})
	rights := syscall.UnixRights(int(listen.Fd()), int(status.Fd()), int(output.Fd()))
	answer := time.NewTimer(replyTimeout)
	defer answer.Stop()
	// A stuck server stops reading too: a full socket buffer must not
	// hold the write beyond the answer's deadline.
	fs.conn.SetWriteDeadline(time.Now().Add(replyTimeout))
	_, _, err := fs.conn.WriteMsgUnix(msg, rights, nil)
	fs.conn.SetWriteDeadline(time.Time{})
	if err != nil {
		fs.forget(id)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			fs.markStuck(fmt.Errorf("%w (pid %d) did not take a spawn request within %v", ErrForkServer, fs.pid, replyTimeout))
		}
		return 0, nil, fmt.Errorf("%w: send spawn request: %w", ErrForkServer, err)
	}
	var late error
	select {
	case r := <-reply:
		return r.pid, r.exit, r.err
	case <-answer.C:
		late = fmt.Errorf("%w (pid %d) did not answer a spawn request within %v", ErrForkServer, fs.pid, replyTimeout)
		fs.markStuck(late)
	case <-ctx.Done():
		late = fmt.Errorf("%w did not answer: %w", ErrForkServer, ctx.Err())
	}
	// Too late for this request. A child forked for it has nobody to
	// supervise it: killed here if its answer came just now, else by
	// handle when it comes.
	fs.forget(id)
	select {
	case r := <-reply:
		if r.err == nil {
			syscall.Kill(-r.pid, syscall.SIGKILL)
		}
	default:
	}
	return 0, nil, late
}

func (fs *ForkServer) forget(id uint64) {
	fs.mu.Lock()
	delete(fs.replies, id)
	fs.mu.Unlock()
}

// Retire stops new spawns. The server exits once its last child has been
// reaped (at once if it has none): its children die with it, so it must
// outlive them.
func (fs *ForkServer) Retire() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.retired = true
	fs.closeIfDoneLocked()
}

// Kill kills the server at once (its children die with it).
func (fs *ForkServer) Kill() { fs.child.Kill() }

// IsReady reports whether the server ever became ready.
func (fs *ForkServer) IsReady() bool {
	select {
	case <-fs.ready:
		return true
	default:
		return false
	}
}

// Close retires the server and waits up to grace for it to exit, then
// kills it. For use when it has no children left. (The server ignores
// the SIGTERM of the stop: it exits when its socket closes, which Retire
// does once no child is left.)
func (fs *ForkServer) Close(grace time.Duration) {
	fs.Retire()
	fs.child.Stop(grace)
	<-fs.exited
}
