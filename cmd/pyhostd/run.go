package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/instance"
	"github.com/pyhost/pyhost/master"
	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/syscatalog"
)

func runCommand(stdout, stderr io.Writer) *cobra.Command {
	var path, logFormat string
	cmd := &cobra.Command{
		Use:   "run [--config PATH]",
		Short: "Run as the system service: host the apps of every permitted user",
		Long: `Run in the foreground as the system service (what the systemd unit
starts), as root: read the admin config, load every app file it allows,
run each app as the user who owns its file, and serve them all through
the unprivileged proxy. Logs go to stderr; per-app logs to log_dir.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if logFormat != "" && logFormat != config.LogText && logFormat != config.LogJSON {
				return usageError{fmt.Errorf("--log-format must be %q or %q, got %q", config.LogText, config.LogJSON, logFormat)}
			}
			return runSystem(path, logFormat, stdout, stderr)
		},
	}
	cmd.Flags().StringVar(&path, "config", config.DefaultAdminFile, "the admin config file")
	cmd.Flags().StringVar(&logFormat, "log-format", "", `the daemon's own log on stderr: "text" or "json" (one JSON object a line); default [daemon] log_format`)
	return cmd
}

// discover loads the admin file and scans for apps, checking each app's
// paths as its owner and deciding claims against the ledger saved in
// data_dir (what a restart would do; pyhostd check says the same).
func discover(path string) (config.Admin, config.Discovery, error) {
	admin, err := loadAdmin(path)
	if err != nil {
		return config.Admin{}, config.Discovery{}, err
	}
	held, err := config.LoadLedger(syscatalog.ClaimsFile(admin))
	if err != nil {
		return admin, config.Discovery{}, err
	}
	sp, err := privdrop.NewSpawner()
	if err != nil {
		return admin, config.Discovery{}, err
	}
	return admin, syscatalog.Scan(admin, config.Scan{Held: held}, catalogOptions(path, sp, privdrop.Credential{})), nil
}

// loadAdmin reads the admin config; system mode is root's.
func loadAdmin(path string) (config.Admin, error) {
	if os.Geteuid() != 0 {
		return config.Admin{}, errors.New("system mode needs root (to run each app as its owner); for one app as yourself, use: pyhostd serve")
	}
	return config.LoadAdmin(path)
}

// catalogOptions are how system mode's catalog reads and checks: as the
// real users, through sp.
func catalogOptions(path string, sp *privdrop.Spawner, proxy privdrop.Credential) syscatalog.Options {
	return syscatalog.Options{
		Path:       path,
		Load:       loadAdmin,
		Lookup:     privdrop.Lookup,
		FindPython: findPython,
		PythonKey:  cleanPath,
		CheckAsUser: func(ctx context.Context, cred privdrop.Credential, wants []map[string]uint32) []error {
			return privdrop.CheckManyAsUserContext(ctx, sp, "/proc/self/exe", cred, wants)
		},
		// What run would refuse to start with, a reload refuses too.
		Problems: func(admin config.Admin, apps []config.App) error {
			if p := checkSystem(admin, apps, privdrop.Lookup).Problems; p != nil {
				return p
			}
			return nil
		},
		Proxy: proxy,
	}
}

func runSystem(path, logFormat string, stdout, stderr io.Writer) error {
	admin, err := loadAdmin(path)
	if err != nil {
		return err
	}
	// The flag wins over the file; the proxy child learns it from the
	// environment, as it does the level.
	fileFormat := "" // the log format the file chose; "" when the flag did
	if logFormat == "" {
		logFormat = admin.Daemon.LogFormat
		fileFormat = logFormat
	}
	os.Setenv(logFormatEnv, logFormat)
	log := newLogger("pyhostd", stderr)
	// data_dir is one daemon's too: two sharing the claims ledger would
	// each rewrite it from their own apps (O6). Locked before it is read.
	dataLock, err := instance.AcquireMode(admin.Daemon.DataDir, 0o700)
	if err != nil {
		return err
	}
	defer dataLock.Release()
	// The ledger before this start: the claims the apps held when the
	// daemon last ran, so a restart hands no domain to someone else.
	saved, err := config.LoadLedger(syscatalog.ClaimsFile(admin))
	if err != nil {
		return err
	}
	// The daemon's one spawner: every process it starts, as root or as
	// a user, is forked from its thread.
	spawner, err := privdrop.NewSpawner()
	if err != nil {
		return err
	}
	d := syscatalog.Scan(admin, config.Scan{Held: saved}, catalogOptions(path, spawner, privdrop.Credential{}))
	for _, r := range d.Refused {
		log.Warn("app file refused", "file", r.Path, "user", r.User, "reason", r.Err)
	}
	// What the admin file asks that this system or version cannot do:
	// the same judgement pyhostd check prints.
	sys := checkSystem(admin, d.Apps, privdrop.Lookup)
	for _, w := range sys.Warnings {
		log.Warn(w.Error())
	}
	if errs := sys.refusals(); errs != nil {
		return errs
	}
	proxyCred := sys.Proxy
	if err := os.MkdirAll(admin.Daemon.StateDir, 0o755); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	catalog := syscatalog.New(admin, d, saved, catalogOptions(path, spawner, proxyCred))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = master.Run(ctx, master.Config{
		Listeners: master.Listeners{
			Listen:        admin.Proxy.Listen,
			TLSListen:     admin.Proxy.TLSListen,
			TLS:           admin.TLS,
			MetricsListen: admin.Daemon.MetricsListen,
		},
		Dirs: master.Dirs{
			SocketDir:     filepath.Join(admin.Daemon.StateDir, "workers"),
			ScriptDir:     admin.Daemon.StateDir,
			ControlSocket: admin.Daemon.ControlSocket,
			LogDir:        admin.Daemon.LogDir,
			PIDFile:       admin.Daemon.PIDFile,
		},
		Proxy: master.Proxy{
			ShutdownTimeout: config.DefaultGracefulTimeout,
			ProxyProcs:      envInt("PYHOST_PROXY_PROCS"),
			TrustedProxies:  admin.Proxy.TrustedProxies,
			ProxyProtocol:   admin.Proxy.ProxyProtocol,
			ProxyLimits:     admin.Proxy.Limits,
			AccessLog:       admin.Proxy.AccessLog,
			AccessLogPerApp: admin.Daemon.AccessLogPerApp,
		},
		Settings: master.Settings{
			CheckInterval: envDuration("PYHOST_CHECK_INTERVAL"),
			DirectStart:   os.Getenv("PYHOST_FORK_SERVER") == "0",
			Version:       version,
			ConfigFile:    path,
			LogFormat:     fileFormat,
		},
		ProxyCred: proxyCred,
		Spawner:   spawner,
		Catalog:   catalog,
		Log:       log,
		Ready: func(addrs []net.Addr, ctl string) {
			log.Info("serving", "apps", len(d.Apps), "refused", len(d.Refused), "listen", fmt.Sprint(addrs), "control_socket", ctl)
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "pyhost: stopped")
	return nil
}
