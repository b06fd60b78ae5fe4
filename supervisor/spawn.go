package supervisor

import (
	"maps"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/sandbox"
	"github.com/pyhost/pyhost/workerproc"
)

// workerArgs is the worker's own command line: what the app is comes
// first, since a forked worker shows these as its command line, cut to
// the fork server's length.
func workerArgs(cfg config.App) []string {
	args := []string{"--script", cfg.Script}
	if cfg.Script == "" {
		args = []string{"--module", cfg.Module}
	}
	if cfg.Callable != "" {
		args = append(args, "--callable", cfg.Callable)
	}
	return append(args, "--directory", cfg.Directory, "--threads", strconv.Itoa(cfg.Threads),
		"--umask", strconv.FormatUint(uint64(cfg.UmaskBits()), 8))
}

// workerSpec is how worker number seq of an app of cfg is started: the
// app's interpreter running pyhost_worker.py as the app's owner, in its
// directory, with a clean environment and its own socket.
func (a *App) workerSpec(cfg config.App, seq uint64) workerproc.Spec {
	env := maps.Clone(cfg.Env)
	if env == nil {
		env = map[string]string{}
	}
	if len(cfg.PythonPath) > 0 {
		env["PYTHONPATH"] = strings.Join(cfg.PythonPath, ":")
	}
	return workerproc.Spec{
		Path:      cfg.Python,
		Args:      append([]string{"-u", a.opts.WorkerScript}, workerArgs(cfg)...),
		Dir:       cfg.Directory,
		Env:       privdrop.CleanEnv(cfg.Cred, env),
		Cred:      cfg.Cred,
		Socket:    filepath.Join(a.opts.SocketDir, "w"+strconv.FormatUint(seq, 10)+".sock"),
		SocketUID: a.opts.SocketUID,
		SocketGID: a.opts.SocketGID,
		Output:    a.output,
		Wrap:      sandbox.Wrapper(sandbox.ForApp(cfg, a.opts.WorkerScript)),
	}
}

// spawn starts the worker e asks for, from the app's fork server when
// there is one and it works, else with its own interpreter, and watches
// it. It returns the outcome for the core.
func (a *App) spawn(e effSpawn) event {
	spec := a.workerSpec(e.cfg, e.seq)
	leaf, place := a.workerGroup(e.id, e.cfg)
	spec.Cgroup = place
	var fs ForkServer
	if a.opts.ForkServer {
		fs, spec.ForkArgs = a.forks.get(a, spec), append(workerArgs(e.cfg), forkCgroupArgs(leaf)...)
	}
	proc, err := a.starter.StartWorker(spec, fs)
	if err != nil && fs != nil {
		a.log.Warn("fork server failed; starting the worker with its own interpreter", "error", err)
		a.forks.failed(fs, err, a.clock.Now())
		fs = nil
		proc, err = a.starter.StartWorker(spec, nil)
	}
	if err != nil {
		a.dropLeaf(e.id, leaf)
		return evSpawnFailed{e.id, err}
	}
	a.procs[e.id] = proc
	go a.watch(e.id, proc, e.cfg, leaf)
	return evSpawned{id: e.id, pid: proc.PID(), socket: proc.Socket(), startedAt: proc.StartedAt(), via: fs}
}

// watch reports p's readiness, once its warm-up passed, and its end,
// with the last lines it wrote.
func (a *App) watch(id string, p Proc, cfg config.App, leaf *cgroup.Group) {
	select {
	case <-p.Ready():
		if err := a.warm(p, cfg); err != nil {
			a.send(evWarmupFailed{id, err})
		} else {
			a.send(evReady{id})
		}
	case <-p.Exited():
	}
	<-p.Exited()
	a.dropLeaf(id, leaf)
	a.send(evExited{id: id, err: p.ExitErr(), importErr: p.ImportErr(), tail: a.tail(p.PID()), oom: a.oomVictim(p)})
}
