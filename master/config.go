package master

import (
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/privdrop"
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
	// event of an app (pid applog.NotePID), besides the app's log file.
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
	// SocketDir holds the worker sockets; it is created (mode 0700,
	// owned by ProxyCred's user when run as root) and removed at exit.
	SocketDir string
	// ScriptDir is the run directory: it holds the instance lock (one
	// daemon per directory) and the worker script, readable by every app
	// user; "" means the parent of SocketDir.
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
