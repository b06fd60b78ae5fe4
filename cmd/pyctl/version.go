package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pyhost/pyhost/control"
)

// version is set at build time with -ldflags "-X main.version=..." (the
// Makefile sets pyhostd's and pyctl's alike).
var version = "dev"

// versionJSON is `pyctl version --json`: add fields, never rename.
type versionJSON struct {
	Client struct {
		Version   string `json:"version"`
		GoVersion string `json:"go_version"`
	} `json:"client"`
	// Daemon is nil when no daemon answered; DaemonError says why.
	Daemon      *control.DaemonInfo `json:"daemon"`
	DaemonError string              `json:"daemon_error,omitempty"`
}

func (c *cli) versionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version [--json]",
		Short: "Print pyctl's version, and the daemon's when one answers",
		Long: `Print pyctl's own version and, when a daemon answers at the socket, the
daemon's: its version, mode, pid, uptime, config file and last config
reload (the line pyctl status prints above its table). No daemon is not an
error: pyctl's version is still printed, and the exit status is 0.

--json prints {"client": {...}, "daemon": {...} or null, "daemon_error"};
its field names are stable.`,
		Args: maxArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out versionJSON
			out.Client.Version, out.Client.GoVersion = version, runtime.Version()
			info, err := c.client().Daemon(cmd.Context())
			if err == nil {
				out.Daemon = &info
			} else {
				out.DaemonError = daemonError(err, c.socket())
			}
			w := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			fmt.Fprintf(w, "pyctl %s (%s)\n", version, runtime.Version())
			if out.Daemon == nil {
				fmt.Fprintf(w, "pyhostd: %s\n", out.DaemonError)
				return nil
			}
			_, err = io.WriteString(w, renderDaemon(info, time.Now()))
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON, with stable field names, for scripts")
	return cmd
}

// daemonError says in a few words why the daemon told nothing of itself.
func daemonError(err error, socket string) string {
	switch {
	case errors.Is(err, control.ErrNoDaemon):
		return "no daemon at " + socket
	case errors.Is(err, control.ErrUnsupported):
		return "unknown (the daemon is older than pyctl)"
	}
	return oneLine(err.Error())
}

// renderDaemon is the daemon's line of `pyctl status` and `pyctl
// version`, two lines when its last reload failed and root may read why:
//
//	pyhostd v1.2.0 (system, pid 812, go1.26.8), up 3d04h, config /etc/pyhost/pyhost.toml, reloaded 12m ago: ok
func renderDaemon(d control.DaemonInfo, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pyhostd %s (%s, pid %d, %s), up %s", d.Version, d.Mode, d.PID, d.GoVersion, humanAge(d.UptimeSeconds))
	if d.ConfigFile != "" {
		fmt.Fprintf(&b, ", config %s", d.ConfigFile)
	}
	switch r := d.LastReload; {
	case r == nil && d.Mode == "serve":
		// serve has no config to reload.
	case r == nil:
		b.WriteString(", not reloaded since start")
	case r.OK:
		fmt.Fprintf(&b, ", reloaded %s ago: ok", humanAge(now.Sub(r.At).Seconds()))
	default:
		fmt.Fprintf(&b, ", reloaded %s ago: FAILED", humanAge(now.Sub(r.At).Seconds()))
		if r.Error != "" {
			fmt.Fprintf(&b, "\n  reload error: %s", r.Error)
		}
	}
	return sanitize(b.String()) + "\n"
}
