package supervisor

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/pyhost/pyhost/workerproc"
)

// forkRetry is how long an app's workers start with their own interpreter
// after its fork server failed, before a new one is tried: a server that
// cannot start must not cost every spawn a failed attempt.
const forkRetry = time.Minute

// forkServers owns an app's fork server and the retired ones still
// parenting old workers. Only the App's goroutine touches it.
type forkServers struct {
	cur     ForkServer
	key     string // what cur's workers inherit: interpreter, user, directory, environment
	retryAt time.Time
	retired []ForkServer
}

// forkKey is what a forked worker inherits from its server and so must
// match the worker's spec; a reload that changes it gets a new server.
func forkKey(spec workerproc.Spec) string {
	var b strings.Builder
	b.WriteString(spec.Path)
	b.WriteByte(0)
	b.WriteString(spec.Dir)
	b.WriteByte(0)
	b.WriteString(spec.Cred.String())
	b.WriteString(":" + strconv.FormatUint(uint64(spec.Cred.GID), 10))
	for _, g := range spec.Cred.Groups {
		b.WriteString("," + strconv.FormatUint(uint64(g), 10))
	}
	if spec.Wrap != nil {
		b.WriteString("\x00sandboxed") // a sandboxed app's workers need a sandboxed server
	}
	for _, e := range spec.Env {
		b.WriteByte(0)
		b.WriteString(e)
	}
	return b.String()
}

// get returns the fork server for spec, starting one if needed; nil means
// start the worker directly.
func (f *forkServers) get(a *App, spec workerproc.Spec) ForkServer {
	key := forkKey(spec)
	if f.cur != nil && (f.key != key || f.cur.Err() != nil) {
		f.retire()
	}
	f.prune()
	if f.cur != nil {
		return f.cur
	}
	now := a.clock.Now()
	if now.Before(f.retryAt) {
		return nil
	}
	fs, err := a.starter.StartForkServer(workerproc.ForkServerSpec{
		Path:   spec.Path,
		Args:   []string{"-u", a.opts.WorkerScript, "--fork-server", "--app", a.key},
		Dir:    spec.Dir,
		Env:    spec.Env,
		Cred:   spec.Cred,
		Output: a.forkServerOutput,
		Wrap:   spec.Wrap,
		Cgroup: a.appGroup(),
	})
	if err != nil {
		a.log.Warn("cannot start the fork server; workers start with their own interpreter", "error", err, "retry_in", forkRetry)
		f.retryAt = now.Add(forkRetry)
		return nil
	}
	a.log.Debug("fork server started", "pid", fs.PID())
	f.cur, f.key = fs, key
	return fs
}

// failed is told that a spawn through fs failed. A server that went stale
// (a package was installed) is replaced at the next spawn; any other
// failure sends workers to their own interpreter for a while.
func (f *forkServers) failed(fs ForkServer, err error, now time.Time) {
	if fs != f.cur {
		return
	}
	if !fs.IsReady() {
		fs.Kill() // stuck before it could fork: it has no child to outlive
	}
	f.retire()
	if !errors.Is(err, workerproc.ErrForkServerStale) {
		f.retryAt = now.Add(forkRetry)
	}
}

// retire lets the current server go once its workers have exited.
func (f *forkServers) retire() {
	f.cur.Retire()
	f.retired = append(f.retired, f.cur)
	f.cur = nil
}

func (f *forkServers) prune() {
	kept := f.retired[:0]
	for _, fs := range f.retired {
		select {
		case <-fs.Exited():
		default:
			kept = append(kept, fs)
		}
	}
	f.retired = kept
}

// close stops every server; the app has no worker left. It returns when
// they have exited, so a stopped app leaves no process behind.
func (f *forkServers) close() {
	if f.cur != nil {
		f.retire()
	}
	for _, fs := range f.retired {
		fs.Close(2 * time.Second)
	}
	f.retired = nil
}
