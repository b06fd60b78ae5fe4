// Package master owns the root process of pyhostd: it binds the listening
// sockets, starts the unprivileged proxy child and restarts it if it dies,
// runs one supervisor.App per app, keeps the proxy's routing table in step
// with them over the channel, serves the control socket, and performs the
// ordered shutdown (stop accepting, finish requests, stop workers).
//
// It never parses HTTP from the network; that is the proxy's job, in
// another process.
package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/applog"
	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/channel"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/daemons"
	"github.com/pyhost/pyhost/instance"
	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/supervisor"
	"github.com/pyhost/pyhost/systemd"
	"github.com/pyhost/pyhost/wsgiadapter"
)

// Config is what the master runs: where it listens and keeps its files,
// who the proxy runs as, the catalog of apps, and the few settings of
// the daemon as a whole. Everything an app is, is its catalog's.
type Config struct {
	Listeners
	Dirs
	Proxy
	Settings
	// ProxyCred is who the proxy child runs as.
	ProxyCred privdrop.Credential
	// Spawner starts every process of the daemon, as root or as a user:
	// one for its life, made by main before anything else.
	Spawner *privdrop.Spawner
	// Catalog is where the apps come from and the policy around them
	// (express or system mode).
	Catalog Catalog
	Log     hclog.Logger

	// What `pyhostd serve` shows on its terminal; each may be nil.
	//
	// AppOutput receives each line of worker output and each supervisor
	// event of an app (pid 0), besides the app's log file.
	AppOutput func(app string, pid int, line string)
	// Ready is called once the listeners are bound, the proxy runs and
	// every app has a ready worker.
	Ready func(Listeners []net.Addr, controlSocket string)
	// WatchTree is `serve --reload`'s: a change of its files rolls every
	// app (D1). Touching an app's file or reload_trigger rolls it
	// whether or not this is set (D2).
	WatchTree *WatchTree
}

// Listeners are where the proxy takes connections.
type Listeners struct {
	// Listen are TCP addresses for the proxy ("127.0.0.1:8000").
	Listen []string
	// TLSListen are TCP addresses on which the proxy terminates TLS
	// with the certificates of TLS.
	TLSListen []string
	// TLS are the certificate and key files, read by the master (as
	// root in system mode) and handed to the proxy as PEM. Run refuses
	// to start when one cannot be read or is broken.
	TLS []config.TLSCert
	// MetricsListen is [daemon] metrics_listen: the proxy serves
	// /metrics there and counts requests; "" for none. Fixed for the
	// daemon's life (master/metrics.go).
	MetricsListen string
}

// Dirs are where the daemon keeps its files.
type Dirs struct {
	// StateDir holds the worker sockets; it is created (mode 0700, owned
	// by ProxyCred's user when run as root) and removed at exit.
	StateDir string
	// ScriptDir is the run directory: it holds the instance lock (one
	// daemon per directory) and the worker script, readable by every app
	// user; "" means the parent of StateDir.
	ScriptDir     string
	ControlSocket string
	// LogDir holds the per-app logs, LogDir/USER/APP.log.
	LogDir string
	// PIDFile ([daemon] pid_file), when set, gets the daemon's pid once
	// the listeners and the control socket are bound; it is removed at
	// a clean exit (master/pidfile.go).
	PIDFile string
}

// Proxy is how the proxy child serves.
type Proxy struct {
	// ShutdownTimeout bounds how long in-flight requests may finish.
	ShutdownTimeout time.Duration
	// ProxyProcs is the proxy's GOMAXPROCS; 0 picks DefaultProxyProcs.
	ProxyProcs int
	// TrustedProxies may tell the proxy who the client is (R8).
	TrustedProxies []netip.Prefix
	// ProxyProtocol are the peers whose connections must begin with a
	// PROXY protocol header, which names the client ([proxy]
	// proxy_protocol, T6).
	ProxyProtocol []netip.Prefix
	// ProxyLimits bound what clients may hold of the proxy ([proxy]
	// limits); the zero value is config.DefaultProxyLimits.
	ProxyLimits config.ProxyLimits
	// AccessLog is the file the proxy logs every request to; "" for
	// none. The master creates it, owned by ProxyCred's user.
	AccessLog string
	// AccessLogPerApp also keeps each app's access lines in
	// LogDir/USER/APP.access.log (master/accesslogs.go).
	AccessLogPerApp bool
}

// Settings are the daemon's own.
type Settings struct {
	// CheckInterval is how often workers' RSS, request counts and apps'
	// idleness are checked; 0 means one second.
	CheckInterval time.Duration
	// DirectStart starts every worker with its own interpreter instead
	// of forking it from the app's fork server.
	DirectStart bool
	// Version and ConfigFile are what `pyctl version` and `pyctl status`
	// say of the daemon (master/daemoninfo.go).
	Version    string
	ConfigFile string
	// LogFormat is [daemon] log_format as in force since the start, for
	// reload-config to say a change waits for a restart; "" when the
	// --log-format flag chose it (the file's key does not matter then).
	LogFormat string
}

// DefaultProxyProcs is how many CPUs the proxy's Go runtime uses unless
// told: half the machine, at least one. The Python workers need the rest,
// and on small machines a Go runtime with fewer Ps spends far less on
// handing goroutines between threads: on 2 cores, the proxy at 1 P served
// hello world 10% faster at 64 connections and 25-45% faster at 1
// (docs/benchmarks.md).
func DefaultProxyProcs() int { return max(1, runtime.NumCPU()/2) }

// ErrAppStart is wrapped when an app could not start at all.
var ErrAppStart = errors.New("app failed to start")

// Master is the running root process.
type Master struct {
	cfg      Config
	catalog  Catalog
	log      hclog.Logger
	spawner  *privdrop.Spawner
	starter  supervisor.Starter // nil: the spawner's (tests fake it)
	self     string
	lns      listenerSet
	changed  chan struct{}
	serial   atomic.Uint64
	proxyMu  sync.Mutex
	proxyCh  *channel.Conn
	certs    []channel.CertPair // guarded by proxyMu: what the proxy serves
	ppPeers  []netip.Prefix     // guarded by proxyMu: proxy_protocol in force
	ownerUID uint32

	statsMu sync.Mutex
	stats   map[string]channel.WorkerStats // by worker ID, from the proxy

	appliedMu sync.Mutex
	applied   uint64        // the newest table serial the proxy routes by
	appliedC  chan struct{} // closed and replaced when applied grows

	set      *appSet
	reloader *reloader
	cgroups  *cgroup.Tree // nil: no cgroups (master/cgroup.go)
	metrics  metricsState
	daemon   daemonState  // master/daemoninfo.go
	access   tenantAccess // master/accesslogs.go
}

// newMaster is the master of cfg before Run starts anything.
func newMaster(cfg Config) *Master {
	if cfg.ProxyProcs <= 0 {
		cfg.ProxyProcs = DefaultProxyProcs()
	}
	m := &Master{cfg: cfg, catalog: cfg.Catalog, log: cfg.Log, spawner: cfg.Spawner, changed: make(chan struct{}, 1), ownerUID: uint32(os.Getuid()), appliedC: make(chan struct{})}
	m.daemon.started = time.Now()
	// The proxy child re-executes this binary through /proc/self/exe: the
	// kernel checks only the binary's own execute bit, not the directories
	// above it, so an unprivileged proxy starts even when pyhostd sits
	// under a private home such as /root.
	m.self = "/proc/self/exe"
	m.reloader = newReloader(m)
	return m
}

// appOptions are what every app's supervisor runs with; script is the
// worker script's path.
func (m *Master) appOptions(script string) supervisor.Options {
	// Worker sockets are the proxy's to connect to.
	sockUID, sockGID := -1, -1
	if os.Geteuid() == 0 {
		sockUID, sockGID = int(m.cfg.ProxyCred.UID), int(m.cfg.ProxyCred.GID)
	}
	return supervisor.Options{
		Spawner:      m.spawner,
		Starter:      m.starter,
		WorkerScript: script,
		SocketDir:    m.cfg.StateDir,
		SocketUID:    sockUID,
		SocketGID:    sockGID,
		Log:          m.log,
		OnChange:     m.markChanged,
		Restart:      supervisor.DefaultRestartPolicy,
		Served:       m.served,
		PollInterval: m.cfg.CheckInterval,
		ForkServer:   !m.cfg.DirectStart,
		WarmupPaths:  func(c config.App) []string { return c.Warmup },
	}
}

// Run runs the master until ctx is cancelled, then shuts down in order
// and returns nil. It returns an error if set-up fails or, before
// serving, an app cannot start; everything it started is stopped first.
func Run(ctx context.Context, cfg Config) (err error) {
	if cfg.Spawner == nil || cfg.Catalog == nil {
		return errors.New("master: Config needs a Spawner and a Catalog")
	}
	m := newMaster(cfg)
	scriptDir := cfg.ScriptDir
	if scriptDir == "" {
		scriptDir = filepath.Dir(cfg.StateDir)
	}
	// One daemon per run directory (O6): a second one must change
	// nothing, not the worker script, not the sockets, not the
	// listeners; so the lock comes before all of them.
	lock, err := instance.Acquire(scriptDir)
	if err != nil {
		return err
	}
	defer lock.Release()
	// Before any child starts; removed after the apps and the proxy
	// have stopped (the deferred calls below run first).
	m.openCgroups()
	defer m.closeCgroups()
	m.ppPeers = cfg.ProxyProtocol
	if m.certs, err = readCertPairs(cfg.TLS); err != nil {
		return err
	}
	if _, _, err := m.setListen(cfg.Listen, cfg.TLSListen); err != nil {
		return err
	}
	defer m.closeListeners()
	if err := m.prepareStateDir(); err != nil {
		return err
	}
	defer os.RemoveAll(cfg.StateDir)
	if err := m.prepareAccessLog(); err != nil {
		return err
	}
	script := filepath.Join(scriptDir, "pyhost_worker.py")
	if err := writeScript(script); err != nil {
		return err
	}
	ctl, err := control.Listen(cfg.ControlSocket)
	if err != nil {
		return err
	}
	defer ctl.Close()
	if err := writePIDFile(cfg.PIDFile); err != nil {
		return err
	}
	defer func() {
		if err := removePIDFile(cfg.PIDFile); err != nil {
			m.log.Warn("cannot remove the pid file", "error", err)
		}
	}()

	// Two contexts: the apps' stops the workers, and is cancelled only
	// after the proxy has finished its in-flight requests.
	initial := m.catalog.Initial()
	m.set = newAppSet(m, m.appOptions(script), initial.Refused, initial.Claims)
	defer m.set.stopAll()
	for _, a := range initial.Apps {
		if err := m.set.add(a); err != nil {
			return err
		}
	}
	m.set.commitClaims(initial.Claims)

	proxyCtx, stopProxy := context.WithCancel(context.Background())
	proxyDone := make(chan struct{})
	m.startMetrics(proxyCtx)
	go func() { defer close(proxyDone); m.superviseProxy(proxyCtx) }()
	defer func() { stopProxy(); <-proxyDone }()
	go m.publishLoop(proxyCtx)

	ctlCtx, stopCtl := context.WithCancel(context.Background())
	ctlDone := make(chan error, 1)
	go func() { ctlDone <- control.NewServer(m, m.log.Named("control")).Serve(ctlCtx, ctl) }()
	defer func() { stopCtl(); <-ctlDone }()

	for _, app := range m.set.all() {
		key := app.Key()
		if m.set.config(key).Disabled {
			continue // enabled = false: not started (D5)
		}
		if err := app.WaitStarted(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if m.catalog.KeepFailed() {
				m.log.Error("app failed to start; it is retried with backoff, the others serve", "app", key, "error", err)
				continue
			}
			return fmt.Errorf("%w: %s: %w", ErrAppStart, key, err)
		}
	}
	// Ready means requests are served: wait until the proxy routes by a
	// table built after every app had a ready worker.
	if err := m.waitApplied(ctx, m.sendTable()); err != nil {
		return nil
	}
	// Watched from before Ready on, so a touch after it is seen; a touch
	// during the first start has nothing to roll yet.
	if cfg.WatchTree != nil || m.catalog.Rereads() || len(wantedTriggers(initial.Apps)) > 0 {
		watchCtx, stopWatch := context.WithCancel(ctx)
		if w := m.reloader.start(watchCtx, cfg.WatchTree); w != nil {
			watchDone := make(chan struct{})
			go func() { defer close(watchDone); m.reloader.run(watchCtx, w, cfg.WatchTree != nil) }()
			defer func() { stopWatch(); <-watchDone }()
		} else {
			stopWatch()
		}
	}
	sd := systemd.New()
	if err := sd.Ready(fmt.Sprintf("serving %d apps", len(m.set.all()))); err != nil {
		m.log.Warn("cannot notify systemd", "error", err)
	}
	// The watchdog pings only while the main loop below and every app's
	// actor answer (a ticker alone would keep a wedged daemon alive).
	ping := make(chan chan struct{})
	if sd.WatchdogEnabled() {
		go sd.Watchdog(ctx, m.monitorHealth(ctx, ping))
	}
	if cfg.Ready != nil {
		cfg.Ready(m.lns.addrs(), cfg.ControlSocket)
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	// SIGHUP re-reads the config in system mode; in express mode it rolls
	// the app, as gunicorn's and uWSGI's users expect (D4).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	hupBusy := make(chan struct{}, 1)
	var hupAgain atomic.Bool
	for ctx.Err() == nil {
		select {
		case r := <-ping:
			close(r)
		case <-usr1:
			m.log.Info("reopening app logs and the access log")
			// In the background, as pyctl reopen-logs: waiting for the
			// proxy must not hold up SIGTERM or SIGHUP.
			go m.reopenAll(ctx)
		case <-hup:
			if !m.catalog.Rereads() {
				for _, app := range m.set.all() {
					m.reloader.request(ctx, app.Key(), []string{"SIGHUP"})
				}
				continue
			}
			// In the background: a roll can take an app's startup_timeout,
			// and SIGTERM or SIGUSR1 meanwhile must not wait for it.
			// Signals that arrive during a reload make one more after it.
			select {
			case hupBusy <- struct{}{}:
			default:
				hupAgain.Store(true)
				continue
			}
			go func() {
				defer func() { <-hupBusy }()
				for again := true; again && ctx.Err() == nil; again = hupAgain.Swap(false) {
					m.log.Info("SIGHUP: re-reading the config and app files")
					sd.Reloading()
					if err := m.reloadConfig(ctx, func(msg string) { m.log.Info("reload-config: " + msg) }); err != nil {
						m.log.Error("reload-config", "error", err)
					}
					sd.Ready(fmt.Sprintf("serving %d apps", len(m.set.all())))
				}
			}()
		case <-ctx.Done():
		}
	}
	sd.Stopping()
	m.log.Info("shutting down: finishing in-flight requests", "grace", cfg.ShutdownTimeout)
	return nil
}

func (m *Master) closeListeners() { m.lns.closeAll() }

// writeScript writes the worker script where every app user can read it
// and none can change it: replaced atomically, so a worker starting now
// never reads half a file.
func writeScript(path string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, wsgiadapter.WorkerScript, 0o644); err != nil {
		return fmt.Errorf("write worker script: %w", err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("write worker script: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write worker script: %w", err)
	}
	return nil
}

// prepareStateDir creates the directory for worker sockets. Only the
// proxy's user (and root) may enter it, so no app of another user can
// reach a worker socket.
func (m *Master) prepareStateDir() error {
	dir := m.cfg.StateDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, int(m.cfg.ProxyCred.UID), int(m.cfg.ProxyCred.GID)); err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
	}
	return nil
}

func (m *Master) markChanged() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// table builds the routing table from every app's current route.
func (m *Master) table() channel.Table {
	t := channel.Table{Serial: m.serial.Add(1)}
	for _, app := range m.set.all() {
		t.Apps = append(t.Apps, app.Route())
	}
	t.Default = m.catalog.DefaultApp()
	return t
}

// publishLoop sends a new table to the proxy whenever an app changed.
// Changes that come in a burst are coalesced into one table.
func (m *Master) publishLoop(ctx context.Context) {
	for {
		select {
		case <-m.changed:
		case <-ctx.Done():
			return
		}
		m.sendTable()
		m.kickFigures() // an app's state changed: the metrics see it now
	}
}

// sendTable sends the current table to the proxy, if one runs, and
// returns its serial.
func (m *Master) sendTable() uint64 {
	m.proxyMu.Lock()
	defer m.proxyMu.Unlock()
	t := m.table()
	if m.proxyCh == nil {
		return t.Serial
	}
	if err := m.proxyCh.Send(channel.Message{Table: &t}); err != nil {
		m.log.Warn("cannot send routing table to proxy", "error", err)
	}
	return t.Serial
}

// waitApplied waits until the proxy routes by table serial or a newer one.
func (m *Master) waitApplied(ctx context.Context, serial uint64) error {
	for {
		m.appliedMu.Lock()
		done, c := m.applied >= serial, m.appliedC
		m.appliedMu.Unlock()
		if done {
			return nil
		}
		select {
		case <-c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (m *Master) onProxyEvent(ev channel.Event) {
	switch ev.Kind {
	case channel.EventDrained:
		if app := m.set.get(ev.App); app != nil {
			app.Drained(ev.WorkerID)
		}
	case channel.EventStats:
		m.statsMu.Lock()
		m.stats = ev.Stats
		m.statsMu.Unlock()
	case channel.EventTimeout:
		if app := m.set.get(ev.App); app != nil {
			app.RecycleWorker(ev.WorkerID, supervisor.RecycleReason{Kind: supervisor.RecycleTimeout, Detail: ev.Detail}, true)
		}
	case channel.EventApplied:
		m.appliedMu.Lock()
		if ev.Serial > m.applied {
			m.applied = ev.Serial
			close(m.appliedC)
			m.appliedC = make(chan struct{})
		}
		m.appliedMu.Unlock()
	case channel.EventWake:
		if app := m.set.get(ev.App); app != nil {
			app.Wake()
		}
	case channel.EventBudget:
		if app := m.set.get(ev.App); app != nil {
			app.BudgetSpent(ev.WorkerID)
		}
	case channel.EventAccess:
		m.onAccessLines(ev.App, ev.Detail)
	default:
		m.log.Debug("unknown proxy event", "kind", ev.Kind)
	}
}

// openAppLog opens LogDir/USER/APP.log for a, owned by a's user.
func (m *Master) openAppLog(a config.App) (*applog.Log, error) {
	dir := filepath.Join(m.cfg.LogDir, a.Cred.Username)
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		uid, gid = int(a.Cred.UID), int(a.Cred.GID)
	}
	if err := applog.MakeDir(dir, gid, privdrop.PrivateGroup(a.Cred)); err != nil {
		return nil, err
	}
	return applog.Open(applog.FilePath(m.cfg.LogDir, a.Cred.Username, a.Name), uid, gid)
}

// prepareAccessLog creates the access log if it is missing, for the
// proxy's user to append to: the proxy cannot create files in a log
// directory that root owns, and must not be able to. Root changes the
// owner of no file but one it has just created (O_CREAT|O_EXCL): an
// existing file must be the proxy's user's already (a previous run's, or
// logrotate's `create`), or a mistaken path such as /etc/shadow, a
// root-owned log or a hard link to one would become the proxy's. The
// judgement is privdrop.CheckHandover, the one pyhostd check prints.
func (m *Master) prepareAccessLog() error {
	path := m.cfg.AccessLog
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	// Twice at most: logrotate may move an existing file away between the
	// create that found it and the lstat that judges it.
	for try := 0; ; try++ {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o640)
		if err == nil {
			// Ours: the descriptor is the file just made, whatever the
			// name leads to by now.
			if os.Geteuid() == 0 {
				err = f.Chown(int(m.cfg.ProxyCred.UID), int(m.cfg.ProxyCred.GID))
			}
			f.Close()
			if err != nil {
				return fmt.Errorf("access log: %w", err)
			}
			break
		}
		if !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("access log: %w", err)
		}
		// There already (a symlink too: O_EXCL does not follow one).
		// Looked at, never opened, by root.
		n, err := privdrop.Lstat(path)
		if errors.Is(err, os.ErrNotExist) && try == 0 {
			continue
		}
		if err != nil {
			return fmt.Errorf("access log: %w", err)
		}
		if err := privdrop.CheckHandover(path, n, m.cfg.ProxyCred); err != nil {
			return fmt.Errorf("access log: %w", err)
		}
		break
	}
	// The proxy opens it by path (again after every rotation): say now,
	// plainly, if its user cannot.
	if err := privdrop.CheckAccess(m.cfg.ProxyCred, path, privdrop.Write); err != nil {
		return fmt.Errorf("access log %s: the proxy's user %s cannot write it: %w", path, m.cfg.ProxyCred.Username, err)
	}
	return nil
}

// served is the proxy's latest counters for a worker.
func (m *Master) served(workerID string) (uint64, int) {
	m.statsMu.Lock()
	defer m.statsMu.Unlock()
	st := m.stats[workerID]
	return st.Served, st.Busy
}

// --- control.Backend ---

// visible reports whether caller c may see app a: root and the daemon's
// own user see everything, others their own apps.
func (m *Master) visible(c control.Caller, owner uint32) bool {
	return c.UID == 0 || c.UID == m.ownerUID || c.UID == owner
}

func (m *Master) find(c control.Caller, name string) ([]*supervisor.App, error) {
	if c.UID != 0 {
		if err := m.catalog.Allowed(c.UID); err != nil {
			return nil, err
		}
	}
	var out []*supervisor.App
	for _, app := range m.set.all() {
		key := app.Key()
		cfg := m.set.config(key)
		if !m.visible(c, cfg.Cred.UID) {
			continue
		}
		if name == "" || name == key || name == cfg.Name {
			out = append(out, app)
		}
	}
	if name != "" && len(out) == 0 {
		return nil, fmt.Errorf("%w: %s", control.ErrNoSuchApp, name)
	}
	return out, nil
}

// findOne is find for operations on exactly one app.
func (m *Master) findOne(c control.Caller, name string) (*supervisor.App, error) {
	apps, err := m.find(c, name)
	if err != nil {
		return nil, err
	}
	if len(apps) != 1 {
		return nil, fmt.Errorf("%w: name one app", control.ErrNoSuchApp)
	}
	return apps[0], nil
}

// Status implements control.Backend.
func (m *Master) Status(ctx context.Context, c control.Caller, name string) ([]control.AppStatus, error) {
	apps, err := m.find(c, name)
	if errors.Is(err, control.ErrNoSuchApp) && m.refusedNamed(c, name) {
		// Not running, but its file was refused: the row below says why.
		apps, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]control.AppStatus, 0, len(apps))
	now := time.Now()
	for _, app := range apps {
		st, err := app.Status(ctx)
		if err != nil {
			return nil, err
		}
		as := control.AppStatus{
			Name: st.Config.Name, User: st.Config.Cred.Username, State: string(st.State),
			Domains: st.Config.Domains, URLPrefix: st.Config.URLPrefix,
			Processes: st.Config.Processes, Threads: st.Config.Threads,
			Restarts: st.Restarts, LastError: fewLines(st.LastError, statusLines, ""), LastLog: lastLines(st.LastLog, statusLines),
			AdminDeployed: st.Config.AdminDeployed,
		}
		containmentStatus(&as, st)
		for _, w := range st.Workers {
			ws := control.WorkerStatus{
				ID: w.Seq, PID: w.Process.PID(), State: string(w.State), Threads: w.Threads,
				StartedAt: w.StartedAt, AgeSeconds: now.Sub(w.StartedAt).Seconds(),
			}
			if s, err := w.Process.Stats(); err == nil {
				ws.RSSBytes, ws.CPUSeconds = s.RSS, s.CPUSeconds
			}
			m.statsMu.Lock()
			ps := m.stats[w.ID]
			m.statsMu.Unlock()
			ws.Requests, ws.Busy = ps.Served, ps.Busy
			as.Workers = append(as.Workers, ws)
		}
		sort.Slice(as.Workers, func(i, j int) bool { return as.Workers[i].ID < as.Workers[j].ID })
		out = append(out, as)
	}
	// Files that were refused, shown to their owners with the reason: on
	// the running app's own row when its newer file was refused, else as
	// a row of their own.
	for _, r := range m.set.refusedFor(c, m.ownerUID) {
		key := keyOf(r)
		merged := false
		for i := range out {
			// The running app's own file, not another of the same name
			// (a user's file beside the admin's app).
			if f := m.set.config(key).File; out[i].User+"/"+out[i].Name == key && (f == "" || f == r.Path) {
				out[i].LastError = "its app file was refused; this is the previous version: " + fewLines(r.Err.Error(), statusLines, checkHint(r.Path))
				merged = true
			}
		}
		if !merged && (name == "" || name == key || name == strings.TrimSuffix(filepath.Base(r.Path), ".toml")) {
			out = append(out, control.AppStatus{
				Name: strings.TrimSuffix(filepath.Base(r.Path), ".toml"), User: r.User, State: control.AppRefused,
				LastError: fewLines(r.Err.Error(), statusLines, checkHint(r.Path)),
			})
		}
	}
	return out, nil
}

// statusLines bounds what pyctl status shows of an app's last error and
// last log lines (D7): the reason at a glance; pyctl logs and pyctl
// check have the rest.
const statusLines = 6

// fewLines is s cut to its first n lines, with a last one saying how
// many more there are and where they are (hint, or pyctl logs).
func fewLines(s string, n int, hint string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return s
	}
	if hint == "" {
		hint = "pyctl logs has the rest"
	}
	return strings.Join(lines[:n], "\n") + fmt.Sprintf("\n… %d more lines (%s)", len(lines)-n, hint)
}

// lastLines is the last n of lines: a traceback ends with its exception.
func lastLines(lines []string, n int) []string {
	if len(lines) <= n {
		return lines
	}
	return lines[len(lines)-n:]
}

// checkHint says where a refused file's every problem is listed.
func checkHint(path string) string { return "pyctl check " + path + " lists them all" }

// refusedNamed reports whether c may see a refused file of an app called
// name ("blog" or "alice/blog").
func (m *Master) refusedNamed(c control.Caller, name string) bool {
	for _, r := range m.set.refusedFor(c, m.ownerUID) {
		if name == keyOf(r) || name == strings.TrimSuffix(filepath.Base(r.Path), ".toml") {
			return true
		}
	}
	return false
}

// Reload implements control.Backend: the app's settings are re-read (in
// express mode they are fixed) and its workers rolled onto fresh imports.
func (m *Master) Reload(ctx context.Context, c control.Caller, name string, progress func(string)) error {
	if m.catalog.Rereads() {
		return m.reloadFromFile(ctx, c, name, progress)
	}
	app, err := m.findOne(c, name)
	if err != nil {
		return err
	}
	cfg := m.set.config(app.Key())
	return m.roll(ctx, app, cfg, progress)
}

// roll rolls app onto cfg and reports a refusal as a ReloadError.
func (m *Master) roll(ctx context.Context, app *supervisor.App, cfg config.App, progress func(string)) error {
	// Said at every reload, not only the first start: a home closed
	// since then turns static files into 403s with no other word.
	for _, w := range m.staticWarnings(cfg) {
		if progress != nil {
			progress(w)
		}
		if l := m.set.logOf(app.Key()); l != nil {
			l.Line(0, w)
		}
	}
	if cfg.Disabled {
		// enabled = false (D5): the file is taken, the app stays (or
		// becomes) stopped; pyctl start starts it.
		m.set.setConfig(cfg)
		say := func(line string) {
			if progress != nil {
				progress(line)
			}
		}
		say("enabled = false in " + cfg.File + ": the app stays stopped (pyctl start starts it until the daemon restarts)")
		if err := app.Halt(context.WithoutCancel(ctx)); err != nil {
			return &control.ReloadError{App: cfg.Name, Reason: "cannot stop it: " + err.Error()}
		}
		return nil
	}
	// The reload goes on if pyctl is interrupted: a half-done roll is
	// worse than a finished one nobody watched.
	err := app.Reload(context.WithoutCancel(ctx), cfg, progress)
	if err == nil {
		m.set.setConfig(cfg)
	}
	var rerr *supervisor.ReloadError
	switch {
	case errors.As(err, &rerr):
		return &control.ReloadError{App: cfg.Name, Reason: rerr.Reason, Detail: strings.TrimRight(rerr.Traceback, "\n")}
	case err != nil:
		return &control.ReloadError{App: cfg.Name, Reason: err.Error()}
	}
	return nil
}

// Act implements control.Backend: restart (a rolling replacement of
// every worker with the same settings), stop and start.
func (m *Master) Act(ctx context.Context, c control.Caller, action control.Action, name string, progress func(string)) error {
	app, err := m.findOne(c, name)
	if err != nil {
		return err
	}
	if err := m.mayAct(c, app.Key()); err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	switch action {
	case control.ActionRestart:
		// Same settings: the file is not re-read (that is reload).
		return m.roll(ctx, app, m.set.config(app.Key()), progress)
	case control.ActionStop:
		progress("stopping every worker (each finishes its requests first)")
		if err := app.Halt(ctx); err != nil {
			return err
		}
		progress(stopLasts(m.set.config(app.Key()), m.catalog.Rereads()))
		return nil
	case control.ActionStart:
		cfg := m.set.config(app.Key())
		if cfg.Disabled {
			// Started on the settings its file gave (a halted app's
			// reload starts it), which may be newer than its workers'.
			progress("starting; it stays disabled: enabled = false in " + cfg.File + " stops it again at the next daemon restart")
			err := app.Reload(ctx, cfg, progress)
			var rerr *supervisor.ReloadError
			if errors.As(err, &rerr) {
				return &control.ReloadError{App: name, Reason: rerr.Reason, Detail: strings.TrimRight(rerr.Traceback, "\n"), Op: "start"}
			}
			if err != nil {
				return &control.ReloadError{App: name, Reason: err.Error(), Op: "start"}
			}
			return nil
		}
		progress("starting")
		if err := app.Resume(ctx); err != nil {
			var ie *daemons.ImportError
			if errors.As(err, &ie) {
				return &control.ReloadError{App: name, Reason: ie.Error(), Detail: strings.TrimRight(ie.Traceback, "\n")}
			}
			var we *supervisor.WarmupError
			if errors.As(err, &we) {
				return &control.ReloadError{App: name, Reason: we.Error(), Detail: strings.TrimRight(we.Traceback, "\n")}
			}
			return &control.ReloadError{App: name, Reason: err.Error()}
		}
		return nil
	}
	return fmt.Errorf("unknown action %q", action)
}

// stopLasts is what pyctl stop says about how long the stop lasts (D5).
func stopLasts(cfg config.App, system bool) string {
	switch {
	case !system:
		return "stopped until pyctl start (or until serve exits)"
	case cfg.Disabled:
		return "stopped; enabled = false in " + cfg.File + " keeps it stopped across daemon restarts"
	case cfg.File != "":
		return "stopped until the next daemon restart; set enabled = false in " + cfg.File + " to keep it stopped"
	}
	return "stopped until the next daemon restart"
}

// Logs implements control.Backend from the app's log file.
func (m *Master) Logs(ctx context.Context, c control.Caller, name string, n int, follow bool, out func(string) error) error {
	app, err := m.findOne(c, name)
	if err != nil {
		return err
	}
	l := m.set.logOf(app.Key())
	if l == nil {
		return fmt.Errorf("%w: %s", control.ErrNoSuchApp, name)
	}
	return l.Tail(ctx, n, follow, out)
}
