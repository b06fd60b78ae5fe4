package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pyhost/pyhost/control"
)

func (c *cli) reopenLogsCmd() *cobra.Command {
	var ifRunning bool
	cmd := &cobra.Command{
		Use:   "reopen-logs [--if-running]",
		Short: "Reopen the app logs and the access log after logrotate (root only)",
		Long: `Make the daemon reopen every app log and the access log by name, as
SIGUSR1 to pyhostd does: after logrotate renamed them, new lines go to new
files. Unlike the signal, it returns only once the proxy too writes to the
new access log, so nothing is written to the rotated files after it exits;
and it needs neither systemd nor the daemon's pid.

Only root (or the user the daemon runs as) may ask. With --if-running, no
daemon at the socket is not an error: pyctl says nothing and exits 0 (what
the logrotate rule wants while pyhost is stopped); any other failure still
exits 1.`,
		Args: maxArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := c.client().ReopenLogs(cmd.Context())
			switch {
			case ifRunning && errors.Is(err, control.ErrNoDaemon):
				return nil
			case errors.Is(err, control.ErrNoDaemon):
				return err // report() names the socket
			case err != nil:
				return fmt.Errorf("reopen-logs: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "logs reopened")
			return nil
		},
	}
	cmd.Flags().BoolVar(&ifRunning, "if-running", false, "succeed silently when no daemon listens at the socket")
	return cmd
}
