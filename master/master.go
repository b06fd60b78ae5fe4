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
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/instance"
	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/proxymsg"
	"github.com/pyhost/pyhost/supervisor"
	"github.com/pyhost/pyhost/systemd"
)

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
	proxyCh  *proxymsg.Conn
	certs    []proxymsg.CertPair // guarded by proxyMu: what the proxy serves
	ppPeers  []netip.Prefix      // guarded by proxyMu: proxy_protocol in force
	ownerUID uint32

	statsMu sync.Mutex
	stats   map[string]proxymsg.WorkerStats // by worker ID, from the proxy

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
		SocketDir:    m.cfg.SocketDir,
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
		scriptDir = filepath.Dir(cfg.SocketDir)
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
	if err := m.prepareSocketDir(); err != nil {
		return err
	}
	defer os.RemoveAll(cfg.SocketDir)
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
