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
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pyhost/pyhost/channel"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/instance"
	"github.com/pyhost/pyhost/master"
	"github.com/pyhost/pyhost/privdrop"
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
	held, err := config.LoadLedger(claimsFile(admin))
	if err != nil {
		return admin, config.Discovery{}, err
	}
	d, err := scanApps(admin, config.Scan{Held: held})
	return admin, d, err
}

// claimsFile is where the daemon keeps its claims ledger.
func claimsFile(admin config.Admin) string {
	return filepath.Join(admin.Daemon.DataDir, config.LedgerFile)
}

// loadAdmin reads the admin config; system mode is root's.
func loadAdmin(path string) (config.Admin, error) {
	if os.Geteuid() != 0 {
		return config.Admin{}, errors.New("system mode needs root (to run each app as its owner); for one app as yourself, use: pyhostd serve")
	}
	return config.LoadAdmin(path)
}

// scanApps finds the apps admin allows, deciding against s, with each
// app's paths checked as its owner and its python found.
func scanApps(admin config.Admin, s config.Scan) (config.Discovery, error) {
	sp, err := privdrop.NewSpawner()
	if err != nil {
		return config.Discovery{}, err
	}
	// One helper per user for all of its apps' paths, each app answered
	// on its own.
	check := func(cred privdrop.Credential, wants []map[string]uint32) []error {
		return privdrop.CheckManyAsUser(sp, "/proc/self/exe", cred, wants)
	}
	d := config.DiscoverBatch(admin, privdrop.Lookup, check, s)
	// Apps of one user mostly name the same python: looked up once.
	type found struct {
		path string
		err  error
	}
	pythons := map[string]found{}
	apps := d.Apps[:0]
	for _, a := range d.Apps {
		k := a.Python + "\x00" + cleanPath(a.Cred) // what findPython reads
		f, ok := pythons[k]
		if !ok {
			f.path, f.err = findPython(a.Python, a.Cred)
			pythons[k] = f
		}
		p, err := f.path, f.err
		if err != nil {
			d.Refused = append(d.Refused, config.Refusal{Path: a.File, User: a.Cred.Username, Err: fmt.Errorf("python: %w", err)})
			continue
		}
		a.Python = p
		apps = append(apps, a)
	}
	d.Apps = apps
	return d, nil
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
	saved, err := config.LoadLedger(claimsFile(admin))
	if err != nil {
		return err
	}
	d, err := scanApps(admin, config.Scan{Held: saved})
	if err != nil {
		return err
	}
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
	spawner, err := privdrop.NewSpawner()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(admin.Daemon.StateDir, 0o755); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	// The admin config as last read: a reload replaces it whole, and every
	// question (who is listed, what may be checked) reads the current one.
	var mu sync.Mutex
	cur := struct {
		admin  config.Admin
		listed map[uint32]bool
	}{admin, listedUIDs(admin)}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = master.Run(ctx, master.Config{
		Listen:    admin.Proxy.Listen,
		TLSListen: admin.Proxy.TLSListen,
		TLS:       admin.TLS,
		// [proxy] acme as in force now: reload-config asks again once
		// the new admin config is adopted.
		ACME: func() (*channel.ACME, error) {
			mu.Lock()
			adm := cur.admin
			mu.Unlock()
			return master.ACMESetup(adm, proxyCred)
		},
		Apps: d.Apps,
		// [users.NAME] max_memory as in force now, for the user's cgroup.
		UserMaxMemory: func(user string) int64 {
			mu.Lock()
			defer mu.Unlock()
			return cur.admin.Users[user].MaxMemory
		},
		StateDir:        filepath.Join(admin.Daemon.StateDir, "workers"),
		ScriptDir:       admin.Daemon.StateDir,
		ControlSocket:   admin.Daemon.ControlSocket,
		LogDir:          admin.Daemon.LogDir,
		ProxyCred:       proxyCred,
		ShutdownTimeout: config.DefaultGracefulTimeout,
		Log:             log,
		ProxyProcs:      envInt("PYHOST_PROXY_PROCS"),
		CheckInterval:   envDuration("PYHOST_CHECK_INTERVAL"),
		DirectStart:     os.Getenv("PYHOST_FORK_SERVER") == "0",
		AccessLog:       admin.Proxy.AccessLog,
		Version:         version,
		MetricsListen:   admin.Daemon.MetricsListen,
		ConfigFile:      path,
		PIDFile:         admin.Daemon.PIDFile,
		LogFormat:       fileFormat,
		AccessLogPerApp: admin.Daemon.AccessLogPerApp,
		TrustedProxies:  admin.Proxy.TrustedProxies,
		ProxyProtocol:   admin.Proxy.ProxyProtocol,
		ProxyLimits:     admin.Proxy.Limits,
		DefaultApp: func() string {
			mu.Lock()
			defer mu.Unlock()
			return cur.admin.Proxy.DefaultApp
		},
		Listed: func(uid uint32) bool {
			mu.Lock()
			defer mu.Unlock()
			return cur.listed[uid]
		},
		Refused:    d.Refused,
		KeepFailed: true,
		Claims:     config.NextLedger(saved, d.Apps, d.Held),
		ClaimsFile: claimsFile(admin),
		CheckFile: func(caller privdrop.Credential, file string, running []config.App, held config.Ledger) error {
			check := func(cred privdrop.Credential, want map[string]uint32) error {
				return privdrop.CheckAsUser(spawner, "/proc/self/exe", cred, want)
			}
			// The caller must be able to read the file themselves: the
			// daemon never reads, or quotes in an error, what they could not.
			if err := check(caller, map[string]uint32{file: privdrop.Read}); err != nil {
				return err
			}
			mu.Lock()
			adm := cur.admin
			mu.Unlock()
			// Root's check is for whoever the file would run as.
			return config.CheckAppFile(adm, caller, file, running, held, privdrop.Lookup, check)
		},
		Rescan: func(scan config.Scan, reread bool) (config.Admin, config.Discovery, error) {
			mu.Lock()
			adm := cur.admin
			mu.Unlock()
			// Only reload-config re-reads pyhost.toml; a tenant's reload
			// judges by the config in force. A broken admin file keeps
			// everything as it runs.
			if reread {
				var err error
				if adm, err = loadAdmin(path); err != nil {
					return config.Admin{}, config.Discovery{}, err
				}
			}
			nd, err := scanApps(adm, scan)
			if err != nil {
				return config.Admin{}, config.Discovery{}, err
			}
			// What run would refuse to start with, a reload refuses too.
			if sys := checkSystem(adm, nd.Apps, privdrop.Lookup); reread && sys.Problems != nil {
				return config.Admin{}, config.Discovery{}, sys.Problems
			}
			return adm, nd, nil
		},
		Adopt: func(a config.Admin) {
			mu.Lock()
			defer mu.Unlock()
			cur.admin, cur.listed = a, listedUIDs(a)
		},
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

// listedUIDs are the uids of the users the admin lists.
func listedUIDs(admin config.Admin) map[uint32]bool {
	out := map[uint32]bool{}
	for name := range admin.Users {
		if c, err := privdrop.Lookup(name); err == nil {
			out[c.UID] = true
		}
	}
	return out
}
