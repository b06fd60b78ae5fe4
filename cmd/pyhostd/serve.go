package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pyhost/pyhost/applog"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/master"
	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/watch"
)

type serveFlags struct {
	listen        string
	python        string
	user          string
	controlSocket string
	accessLog     string
	metricsListen string
	trusted       []string
	tlsCert       string
	tlsKey        string
	static        []string
	warmup        []string
	reload        bool
	reloadInclude []string
	reloadExclude []string
	quiet         bool

	// tunables are --processes, --max-body, …: a flag for each row of
	// config's table of tunables that has one.
	tunables *config.ServeFlags

	// The proxy's client limits ([proxy] keys of the admin file).
	bufferRequestBody   string
	requestSpoolLimit   string
	clientBodyTimeout   time.Duration
	clientBodyMinRate   string
	sendTimeout         time.Duration
	keepaliveTimeout    time.Duration
	maxConnections      int
	maxConnectionsPerIP int
}

func serveCommand(stdout, stderr io.Writer) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve [flags] TARGET",
		Short: "Serve one WSGI app (express mode: no config file, no root)",
		Long: `Serve one WSGI app through the pyhost proxy and supervised Python workers.

TARGET is a file (wsgi.py, app.wsgi; its callable "application", or "app"
where "application" is absent; "file.py:name" picks another),
module:callable, imported with the current directory first on sys.path,
or an app file (app.toml: every key of docs/config.md applies but
domains, since express mode serves any Host).

Run by root, serve needs --user: the proxy and the app run as that user,
never as root.`,
		Example: `  pyhostd serve wsgi.py
  pyhostd serve --listen 127.0.0.1:8080 --processes 2 --threads 8 myproject.wsgi:application
  pyhostd serve blog.toml
  pyhostd serve --listen 127.0.0.1:8443 --tls-cert cert.pem --tls-key key.pem wsgi.py`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("serve takes one TARGET (a wsgi file or module:callable), got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return serve(f, cmd.Flags().Changed, args[0], stdout, stderr)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8000", "address to serve HTTP on")
	f.tunables = config.AddServeFlags(fl)
	fl.StringVar(&f.python, "python", config.DefaultPython, "Python interpreter (a path, or a name looked up on PATH)")
	fl.StringVar(&f.user, "user", "", "run the proxy and the app as this user (root only, and then required)")
	fl.StringVar(&f.controlSocket, "control-socket", "", "control socket path for pyctl (default: in the run directory)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "serve HTTPS on --listen with this certificate chain (PEM; needs --tls-key)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "the private key of --tls-cert (PEM)")
	fl.StringVar(&f.accessLog, "access-log", "", `append a line per request to this file (combined format plus duration, app, request id); "-": standard output`)
	fl.StringVar(&f.metricsListen, "metrics-listen", "", `serve Prometheus metrics at http://ADDR/metrics, as [daemon] metrics_listen does (docs/metrics.md); "": none`)
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print no line per request (the app's output and pyhost's log still show)")
	fl.StringArrayVar(&f.warmup, "warmup", nil, `a URL path every new worker must answer below 500 before it takes traffic, as the app file's warmup (repeatable): --warmup / --warmup /healthz`)
	fl.StringArrayVar(&f.static, "static", nil, `serve the files of DIR under URL from the proxy itself, as [[static]] does (repeatable): --static /static/=./static`)
	fl.BoolVar(&f.reload, "reload", false, "roll the app onto fresh code when a file of its directory changes (*.py, and --reload-include); a broken edit keeps the old code serving")
	fl.StringArrayVar(&f.reloadInclude, "reload-include", nil, `with --reload, also watch files matching this glob (repeatable): "*.html", "templates/**"`)
	fl.StringArrayVar(&f.reloadExclude, "reload-exclude", nil, `with --reload, ignore files and directories matching this glob (repeatable): "migrations", "data/**"`)
	fl.StringArrayVar(&f.trusted, "trusted-proxy", nil, "an address or CIDR prefix (repeatable) whose X-Forwarded-For, -Proto, -Host and X-Request-Id are believed")
	fl.StringVar(&f.bufferRequestBody, "buffer-request-body", config.FormatSize(config.DefaultBufferRequestBody), "read a request body up to this size whole, in memory, before a worker thread is taken (0: off)")
	fl.StringVar(&f.requestSpoolLimit, "request-spool-limit", config.FormatSize(config.DefaultRequestSpoolLimit), "read larger bodies whole into temp files first while all of them together stay under this size (0: off)")
	fl.DurationVar(&f.clientBodyTimeout, "client-body-timeout", config.DefaultClientBodyTimeout, "answer 408 and close when a request body sends nothing for this long")
	fl.StringVar(&f.clientBodyMinRate, "client-body-min-rate", strconv.Itoa(config.DefaultClientBodyMinRate), "bytes per second a request body must average after --client-body-timeout (0: no minimum)")
	fl.DurationVar(&f.sendTimeout, "send-timeout", config.DefaultSendTimeout, "close a connection whose client takes nothing of a response for this long")
	fl.DurationVar(&f.keepaliveTimeout, "keepalive-timeout", config.DefaultKeepaliveTimeout, "close a keep-alive connection idle this long")
	fl.IntVar(&f.maxConnections, "max-connections", config.DefaultMaxConnections, "open client connections at most; more are refused as they arrive")
	fl.IntVar(&f.maxConnectionsPerIP, "max-connections-per-ip", config.DefaultMaxConnectionsPerIP, "open connections per client address (IPv6: per /64) at most (0: no limit)")
	return cmd
}

// proxyLimits reads the client-limit flags.
func proxyLimits(f serveFlags) (config.ProxyLimits, error) {
	l := config.ProxyLimits{
		ClientBodyTimeout:   f.clientBodyTimeout,
		SendTimeout:         f.sendTimeout,
		KeepaliveTimeout:    f.keepaliveTimeout,
		MaxConnections:      f.maxConnections,
		MaxConnectionsPerIP: f.maxConnectionsPerIP,
	}
	for _, s := range []struct {
		flag, v string
		dst     *int64
	}{
		{"buffer-request-body", f.bufferRequestBody, &l.BufferRequestBody},
		{"request-spool-limit", f.requestSpoolLimit, &l.RequestSpoolLimit},
		{"client-body-min-rate", f.clientBodyMinRate, &l.ClientBodyMinRate},
	} {
		n, err := config.ParseSize(s.v)
		if err != nil {
			return l, usageError{fmt.Errorf("--%s: %w", s.flag, err)}
		}
		*s.dst = n
	}
	if err := l.Validate(func(key string) string { return "--" + strings.ReplaceAll(key, "_", "-") }); err != nil {
		return l, usageError{err}
	}
	return l, nil
}

// applyFlags sets the tunables given on the command line; flags override
// an app file's keys.
func applyFlags(app *config.App, f serveFlags, changed func(string) bool) error {
	if err := f.tunables.Apply(app, changed); err != nil {
		return usageError{err}
	}
	if err := app.Validate(); err != nil {
		return usageError{err}
	}
	return nil
}

func serve(f serveFlags, changed func(string) bool, target string, stdout, stderr io.Writer) error {
	cred, err := serveCredential(f.user)
	if err != nil {
		return err
	}
	// Each flag in its key's range (naming the flag) before the app's
	// target or file is read.
	if err := f.tunables.Check(changed); err != nil {
		return usageError{err}
	}
	app, err := expressApp(target, cred, f, changed)
	if err != nil {
		return err
	}
	if err := applyFlags(&app, f, changed); err != nil {
		return err
	}
	if err := addStatic(&app, f.static); err != nil {
		return err
	}
	if err := addWarmup(&app, f.warmup); err != nil {
		return err
	}
	limits, err := proxyLimits(f)
	if err != nil {
		return err
	}
	if err := checkReachable(cred, app); err != nil {
		return err
	}
	runDir, err := makeRunDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(runDir)
	var trusted []netip.Prefix
	for _, t := range f.trusted {
		pfx, err := config.ParseTrustedProxy(t)
		if err != nil {
			return usageError{fmt.Errorf("--trusted-proxy: %w", err)}
		}
		trusted = append(trusted, pfx)
	}
	// The proxy writes the access log; serve follows it to print a line
	// per request (D4): its own file in the run directory unless the
	// user named one.
	accessLog, ownLog := f.accessLog, false
	switch {
	case accessLog == "-" || accessLog == "" && !f.quiet:
		accessLog, ownLog = filepath.Join(runDir, "access.log"), true
	case accessLog != "":
		if accessLog, err = filepath.Abs(accessLog); err != nil {
			return err
		}
	}
	listen, tlsListen, certs, err := serveListen(f)
	if err != nil {
		return err
	}
	scheme := "http"
	if len(certs) > 0 {
		scheme = "https"
	}
	ctlPath := f.controlSocket
	if ctlPath == "" {
		ctlPath = stableSocket(app.Name, runDir, os.Getenv("XDG_RUNTIME_DIR"), os.Geteuid())
	}

	var tree *master.WatchTree
	switch {
	case f.reload:
		tree = &master.WatchTree{Root: app.Directory, Include: f.reloadInclude, Exclude: f.reloadExclude}
		// A bad glob is a usage error now, not a log line later: the
		// watcher checks its globs as it is made.
		vctx, cancel := context.WithCancel(context.Background())
		w, err := watch.New(vctx, watch.Options{Include: f.reloadInclude, Exclude: f.reloadExclude, Poll: true})
		cancel()
		if err != nil {
			return usageError{fmt.Errorf("--reload-include/--reload-exclude: %w", err)}
		}
		w.Close()
	case len(f.reloadInclude) > 0 || len(f.reloadExclude) > 0:
		return usageError{errors.New("--reload-include and --reload-exclude need --reload")}
	}

	log := newLogger("pyhostd", stderr)
	// Said once, so nobody takes serve's view for system mode's (C5).
	log.Info("no sandbox in express mode: the app sees what its user can see (system mode hides other users' homes, pyhost's directories and their processes)")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var outMu sync.Mutex
	lock := func() func() { outMu.Lock(); return outMu.Unlock }
	if accessLog != "" && (f.accessLog == "-" || !f.quiet) {
		followCtx, stopFollow := context.WithCancel(context.Background())
		followed := make(chan struct{})
		show := requestPrinter(app.Name, f.accessLog == "-", stdout, stderr, lock)
		from := logEnd(accessLog)
		go func() { defer close(followed); followLog(followCtx, accessLog, from, ownLog, show) }()
		defer func() { stopFollow(); <-followed }()
	}
	spawner, err := privdrop.NewSpawner()
	if err != nil {
		return err
	}
	err = master.Run(ctx, master.Config{
		Listeners: master.Listeners{Listen: listen, TLSListen: tlsListen, TLS: certs, MetricsListen: f.metricsListen},
		Dirs: master.Dirs{
			SocketDir:     filepath.Join(runDir, "workers"),
			LogDir:        filepath.Join(runDir, "logs"),
			ControlSocket: ctlPath,
		},
		Proxy: master.Proxy{
			ShutdownTimeout: app.GracefulTimeout,
			ProxyProcs:      envInt("PYHOST_PROXY_PROCS"),
			TrustedProxies:  trusted,
			ProxyLimits:     limits,
			AccessLog:       accessLog,
		},
		Settings: master.Settings{
			CheckInterval: envDuration("PYHOST_CHECK_INTERVAL"),
			DirectStart:   os.Getenv("PYHOST_FORK_SERVER") == "0",
			Version:       version,
			ConfigFile:    serveTarget(app.File, target),
		},
		ProxyCred: cred,
		Spawner:   spawner,
		Catalog:   master.NewExpress(app),
		Log:       log,
		WatchTree: tree,
		AppOutput: func(name string, pid int, line string) {
			outMu.Lock()
			defer outMu.Unlock()
			if pid == applog.NotePID {
				fmt.Fprintf(stderr, "[%s] %s\n", app.Name, line)
				return
			}
			fmt.Fprintf(stderr, "[%s %d] %s\n", app.Name, pid, line)
		},
		Ready: func(addrs []net.Addr, ctl string) {
			outMu.Lock()
			defer outMu.Unlock()
			fmt.Fprintln(stdout, servingLine(app, scheme+"://"+addrs[0].String()+"/", cred.Username, pyctlPath()))
			if filepath.Base(ctl) == app.Name+".sock" && filepath.Base(filepath.Dir(ctl)) == "pyhost" {
				// Where pyctl looks when no system daemon runs.
				fmt.Fprintf(stdout, "pyhost: control socket %s (try: %s status)\n", ctl, pyctlPath())
			} else {
				fmt.Fprintf(stdout, "pyhost: control socket %s (try: %s --socket %s status)\n", ctl, pyctlPath(), ctl)
			}
			if tree != nil {
				fmt.Fprintf(stdout, "pyhost: reloading when files under %s change\n", tree.Root)
			}
			fmt.Fprintf(stdout, "pyhost: press Ctrl-C to stop\n")
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "pyhost: stopped")
	return nil
}

// addStatic adds the --static mounts to the app's [[static]] ones.
func addStatic(app *config.App, specs []string) error {
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	for _, spec := range specs {
		m, err := config.ParseStaticFlag(spec, cwd, app.URLPrefix, app.Static)
		if err != nil {
			return usageError{err}
		}
		app.Static = append(app.Static, m)
	}
	return nil
}

// addWarmup adds the --warmup paths after the app file's warmup ones.
func addWarmup(app *config.App, paths []string) error {
	for _, p := range paths {
		if problem := config.WarmupPathProblem(p); problem != "" {
			return usageError{fmt.Errorf("--warmup %q %s", p, problem)}
		}
		app.Warmup = append(app.Warmup, p)
	}
	if len(app.Warmup) > config.MaxWarmupPaths {
		return usageError{fmt.Errorf("%d warm-up paths; at most %d", len(app.Warmup), config.MaxWarmupPaths)}
	}
	return nil
}

// stableSocket is serve's control socket when --control-socket is not
// given (D4): $XDG_RUNTIME_DIR/pyhost/NAME.sock, the same for every run
// of the app, where pyctl looks when no system daemon runs. A second
// serve of the same name while the first runs takes NAME-PID.sock (and
// prints it): the first keeps the name pyctl finds. Without a usable
// $XDG_RUNTIME_DIR (root, a su session), it is in the run directory, new
// each run.
func stableSocket(name, runDir, base string, euid int) string {
	fallback := filepath.Join(runDir, "control.sock")
	if base == "" || euid == 0 {
		return fallback
	}
	// Only a private directory of our own: the socket's name is
	// predictable, so nobody else may be able to plant one there.
	st, err := os.Stat(base)
	if err != nil || !st.IsDir() || st.Mode().Perm()&0o077 != 0 {
		return fallback
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || int(sys.Uid) != euid {
		return fallback
	}
	dir := filepath.Join(base, "pyhost")
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fallback
	}
	path := filepath.Join(dir, name+".sock")
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return filepath.Join(dir, fmt.Sprintf("%s-%d.sock", name, os.Getpid()))
	}
	return path // absent or stale: control.Listen removes a stale one
}

// serveListen is where serve listens: --listen, as HTTPS with
// --tls-cert and --tls-key (both or neither), whose paths are made
// absolute. The pair is read and checked here, as the master will load
// it, so that a broken one is said in terms of these flags: the master's
// errors speak of the admin file's [[tls]] tables.
func serveListen(f serveFlags) (listen, tlsListen []string, certs []config.TLSCert, err error) {
	switch {
	case f.tlsCert == "" && f.tlsKey == "":
		return []string{f.listen}, nil, nil, nil
	case f.tlsCert == "":
		return nil, nil, nil, usageError{errors.New("--tls-key needs --tls-cert, the certificate chain it is the key of")}
	case f.tlsKey == "":
		return nil, nil, nil, usageError{errors.New("--tls-cert needs --tls-key, its private key")}
	}
	cert, err := filepath.Abs(f.tlsCert)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := filepath.Abs(f.tlsKey)
	if err != nil {
		return nil, nil, nil, err
	}
	pair := config.TLSCert{Cert: cert, Key: key}
	certPEM, keyPEM, err := config.ReadCertPair(pair)
	if err == nil {
		_, err = config.ParseCertPair(cert, key, certPEM, keyPEM)
	}
	if err != nil {
		return nil, nil, nil, tlsFlagError(pair, err)
	}
	return nil, []string{f.listen}, []config.TLSCert{pair}, nil
}

// tlsFlagError is config's complaint about pair as one about the flag
// that names the file at fault. Its messages name that file first (or
// after "open "), behind the admin file's "[[tls]] ", which is dropped.
func tlsFlagError(pair config.TLSCert, err error) error {
	msg := strings.TrimPrefix(err.Error(), "[[tls]] ")
	var pe *os.PathError
	at := strings.TrimPrefix(msg, "open ")
	if errors.As(err, &pe) {
		at = pe.Path
	}
	// The longer path first: one may begin with the other.
	flags := [][2]string{{"--tls-cert", pair.Cert}, {"--tls-key", pair.Key}}
	if len(pair.Key) > len(pair.Cert) {
		flags[0], flags[1] = flags[1], flags[0]
	}
	for _, fl := range flags {
		if strings.HasPrefix(at, fl[1]) {
			return fmt.Errorf("%s: %s", fl[0], msg)
		}
	}
	return fmt.Errorf("--tls-cert and --tls-key: %s", msg)
}

// expressApp builds the one app: from an app file (every key applies but
// domains: express mode serves any Host), or from a script or
// module:callable with the defaults.
func expressApp(target string, cred privdrop.Credential, f serveFlags, changed func(string) bool) (config.App, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return config.App{}, err
	}
	if strings.HasSuffix(target, ".toml") {
		path := target
		if !filepath.IsAbs(path) {
			path = filepath.Join(cwd, path)
		}
		app, err := config.LoadAppFile(path, cred, config.Defaults{})
		if err != nil {
			return config.App{}, err
		}
		app.Domains = nil
		python := app.Python
		if changed("python") || python == "" {
			python = f.python // --python overrides the file
		}
		if app.Python, err = findPython(python, cred); err != nil {
			return config.App{}, err
		}
		return app, nil
	}
	t, err := config.ResolveExpressTarget(target, cwd)
	if err != nil {
		return config.App{}, err
	}
	python, err := findPython(f.python, cred)
	if err != nil {
		return config.App{}, err
	}
	return config.ExpressApp(t, cred, python), nil
}

// serveCredential is who runs the app in express mode: the caller, or
// --user when the caller is root (E2: never root itself).
func serveCredential(name string) (privdrop.Credential, error) {
	if os.Geteuid() == 0 {
		if name == "" {
			return privdrop.Credential{}, usageError{errors.New("running as root: name an unprivileged user with --user (pyhost never runs app code as root)")}
		}
		c, err := privdrop.Lookup(name)
		if err != nil {
			return privdrop.Credential{}, err
		}
		if c.IsRoot() {
			return privdrop.Credential{}, fmt.Errorf("--user %s: %w", name, privdrop.ErrRoot)
		}
		return c, nil
	}
	c, err := privdrop.Current()
	if err != nil {
		return privdrop.Credential{}, err
	}
	if name != "" && name != c.Username && name != fmt.Sprint(c.UID) {
		return privdrop.Credential{}, usageError{fmt.Errorf("--user %s: only root can run apps as another user", name)}
	}
	return c, nil
}

// findPython resolves the interpreter to an absolute path. Run by root
// for another user, a bare name is looked up on the worker's clean PATH,
// not root's, so root's own environment (a pyenv shim, say) never decides
// what the app runs.
func findPython(name string, cred privdrop.Credential) (string, error) {
	if strings.ContainsRune(name, '/') {
		abs, err := filepath.Abs(name)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("--python %s: %w", name, err)
		}
		return abs, nil
	}
	if os.Geteuid() != 0 {
		p, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("--python %s: not found on PATH", name)
		}
		return filepath.Abs(p)
	}
	for _, dir := range filepath.SplitList(cleanPath(cred)) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("--python %s: not found on %s", name, cleanPath(cred))
}

func cleanPath(cred privdrop.Credential) string {
	for _, kv := range privdrop.CleanEnv(cred, nil) {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			return v
		}
	}
	return "/usr/bin:/bin"
}

// makeRunDir creates a private directory for sockets: in
// $XDG_RUNTIME_DIR when it is set and ours, else in the temp directory.
// The name is random, so nothing can be planted there in advance.
func makeRunDir() (string, error) {
	base := os.TempDir()
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && os.Geteuid() != 0 {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			base = d
		}
	}
	dir, err := os.MkdirTemp(base, "pyhost-")
	if err != nil {
		return "", fmt.Errorf("create run directory: %w", err)
	}
	// Others must be able to traverse it to reach the control socket; the
	// worker sockets live in a 0700 subdirectory.
	if err := os.Chmod(dir, 0o711); err != nil {
		return "", err
	}
	return dir, nil
}

// envInt reads a tuning knob from the environment; unset or invalid is 0
// (the default).
func envInt(name string) int {
	n, err := strconv.Atoi(os.Getenv(name))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// envDuration reads a duration knob; unset or invalid is 0 (the default).
func envDuration(name string) time.Duration {
	d, err := time.ParseDuration(os.Getenv(name))
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// servingLine is serve's first line: the URL, and whether the app runs
// there. An app file's enabled = false is taken as everywhere else
// (docs/config.md): nothing starts until pyctl start, and the URL
// answers 503 meanwhile; it said "serving APP on URL" all the same.
// Either way the line holds "on URL", which scripts (and the tests'
// harness) take the address from.
func servingLine(app config.App, url, user, pyctl string) string {
	if app.Disabled {
		return fmt.Sprintf("pyhost: %s is disabled (enabled = false in %s): on %s it answers 503 until %s start %s (%s x %s, as %s)",
			app.Name, app.File, url, pyctl, app.Name, plural(app.Processes, "process", "processes"), plural(app.Threads, "thread", "threads"), user)
	}
	return fmt.Sprintf("pyhost: serving %s on %s (%s x %s, as %s)",
		app.Name, url, plural(app.Processes, "process", "processes"), plural(app.Threads, "thread", "threads"), user)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// pyctlPath is how to call pyctl: by the path beside this pyhostd
// (bin/pyctl after `make build`), else by name when it is on PATH.
func pyctlPath() string {
	// The pyctl built with this pyhostd first: one on PATH may be older.
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "pyctl")
		if _, err := os.Stat(p); err == nil {
			if wd, err := os.Getwd(); err == nil {
				if rel, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(rel, "..") {
					return rel
				}
			}
			return p
		}
	}
	if p, err := exec.LookPath("pyctl"); err == nil {
		return filepath.Base(p)
	}
	return "pyctl"
}

// checkReachable tells plainly, before anything starts, when the app's
// user cannot reach the app or the interpreter (a checkout under /root
// served with --user nobody, say).
func checkReachable(cred privdrop.Credential, app config.App) error {
	if os.Geteuid() != 0 {
		return nil
	}
	type check struct {
		path string
		want uint32
	}
	checks := []check{{app.Directory, privdrop.Read | privdrop.Execute}, {app.Python, privdrop.Execute}}
	if app.Script != "" {
		checks = append(checks, check{app.Script, privdrop.Read})
	}
	for _, c := range checks {
		if err := privdrop.CheckAccess(cred, c.path, c.want); err != nil {
			return fmt.Errorf("the app runs as %s, who cannot reach it: %w", cred.Username, err)
		}
	}
	return nil
}

// serveTarget is what pyctl status names as serve's config: the app file,
// else what serve was told to run.
func serveTarget(file, target string) string {
	if file != "" {
		return file
	}
	return target
}
