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
	"slices"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/master"
	"github.com/pyhost/pyhost/privdrop"
)

func runCommand(stdout, stderr io.Writer) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "run [--config PATH]",
		Short: "Run as the system service: host the apps of every permitted user",
		Long: `Run in the foreground as the system service (what the systemd unit
starts), as root: read the admin config, load every app file it allows,
run each app as the user who owns its file, and serve them all through
the unprivileged proxy. Logs go to stderr; per-app logs to log_dir.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runSystem(path, stdout, stderr)
		},
	}
	cmd.Flags().StringVar(&path, "config", config.DefaultAdminFile, "the admin config file")
	return cmd
}

func checkCommand(stdout, stderr io.Writer) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "check [--config PATH]",
		Short: "Validate the admin config and every app file it would load",
		Long: `Validate the admin config and every app file "pyhostd run" would load,
as it would (ownership and modes, domains, quotas, paths checked with each
owner's rights). Print each problem with its file and line; exit 1 if
there is any, 0 when all is well (like nginx -t).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			admin, d, err := discover(path)
			if err != nil {
				return err
			}
			for _, r := range d.Refused {
				fmt.Fprintln(stdout, r.Error())
			}
			for _, a := range d.Apps {
				fmt.Fprintf(stdout, "ok: %s (%s, %d x %d)\n", a.Key(), joinDomains(a), a.Processes, a.Threads)
			}
			if len(d.Refused) > 0 {
				return fmt.Errorf("%d problem(s) in %s or its app files", len(d.Refused), admin.Path)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", config.DefaultAdminFile, "the admin config file")
	return cmd
}

func joinDomains(a config.App) string {
	s := ""
	for i, d := range a.Domains {
		if i > 0 {
			s += " "
		}
		s += d
	}
	return s + a.URLPrefix
}

// discover loads the admin file and scans for apps, checking each app's
// paths as its owner.
func discover(path string) (config.Admin, config.Discovery, error) {
	if os.Geteuid() != 0 {
		return config.Admin{}, config.Discovery{}, errors.New("system mode needs root (to run each app as its owner); for one app as yourself, use: pyhostd serve")
	}
	admin, err := config.LoadAdmin(path)
	if err != nil {
		return config.Admin{}, config.Discovery{}, err
	}
	sp, err := privdrop.NewSpawner()
	if err != nil {
		return admin, config.Discovery{}, err
	}
	check := func(cred privdrop.Credential, want map[string]uint32) error {
		return privdrop.CheckAsUser(sp, "/proc/self/exe", cred, want)
	}
	d := config.Discover(admin, privdrop.Lookup, check)
	for i := range d.Apps {
		a := &d.Apps[i]
		p, err := findPython(a.Python, a.Cred)
		if err != nil {
			d.Refused = append(d.Refused, config.Refusal{Path: a.Name, User: a.Cred.Username, Err: err})
			continue
		}
		a.Python = p
	}
	return admin, d, nil
}

func runSystem(path string, stdout, stderr io.Writer) error {
	log := newLogger("pyhostd", stderr)
	admin, d, err := discover(path)
	if err != nil {
		return err
	}
	for _, r := range d.Refused {
		log.Warn("app file refused", "file", r.Path, "user", r.User, "reason", r.Err)
	}
	// Settings the config accepts but this version does not act on yet:
	// refuse what a sysadmin relies on for safety, warn about the rest.
	if len(admin.Proxy.TLSListen) > 0 || len(admin.TLS) > 0 {
		return fmt.Errorf("%s: tls_listen and [[tls]] are not implemented in this version yet; serve HTTPS with a TLS terminator in front for now", admin.Path)
	}
	if admin.Daemon.MetricsListen != "" {
		log.Warn("metrics_listen is not implemented in this version yet; no metrics are served", "metrics_listen", admin.Daemon.MetricsListen)
	}
	if def := admin.Proxy.DefaultApp; def != "" && !slices.ContainsFunc(d.Apps, func(a config.App) bool { return a.Key() == def }) {
		log.Warn("default_app names no app that runs; unclaimed hosts get 404 until it does", "default_app", def)
	}
	spawner, err := privdrop.NewSpawner()
	if err != nil {
		return err
	}
	proxyCred, err := privdrop.Lookup(admin.Proxy.User)
	if err != nil {
		return fmt.Errorf("[proxy] user: %w", err)
	}
	if proxyCred.IsRoot() {
		return fmt.Errorf("[proxy] user %s: the proxy must not run as root", admin.Proxy.User)
	}
	if err := os.MkdirAll(admin.Daemon.StateDir, 0o755); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	// The admin config as last read: a reload replaces it whole, and every
	// question (who is listed, what may be checked) reads the current one.
	var mu sync.Mutex
	cur := struct {
		admin  config.Admin
		d      config.Discovery
		listed map[uint32]bool
	}{admin, d, listedUIDs(admin)}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = master.Run(ctx, master.Config{
		Listen:          admin.Proxy.Listen,
		Apps:            d.Apps,
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
		TrustedProxies:  admin.Proxy.TrustedProxies,
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
		CheckFile: func(owner privdrop.Credential, file string, running []config.App) error {
			check := func(cred privdrop.Credential, want map[string]uint32) error {
				return privdrop.CheckAsUser(spawner, "/proc/self/exe", cred, want)
			}
			// The caller must be able to read the file themselves: the
			// daemon never reads, or quotes in an error, what they could not.
			if err := check(owner, map[string]uint32{file: privdrop.Read}); err != nil {
				return err
			}
			mu.Lock()
			adm := cur.admin
			mu.Unlock()
			return config.CheckAppFile(adm, owner, file, running, check)
		},
		Rescan: func() config.Discovery {
			mu.Lock()
			defer mu.Unlock()
			// The admin file's [users] and [apps] count too; a broken admin
			// file keeps everything as it runs.
			na, nd, err := discover(path)
			if err != nil {
				log.Error("cannot re-read the config; nothing changes", "error", err)
				return cur.d
			}
			cur.admin, cur.d, cur.listed = na, nd, listedUIDs(na)
			return nd
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
