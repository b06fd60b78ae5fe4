package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/pyhost/pyhost/control"
)

// actCmd is restart, stop or start: the same shape as reload.
func (c *cli) actCmd(action control.Action, short, long string) *cobra.Command {
	return &cobra.Command{
		Use:               string(action) + " [APP]",
		Short:             short,
		Long:              long + "\n\nAPP may be left out when you can see exactly one app.",
		Args:              maxArgs(1),
		ValidArgsFunction: c.completeApps,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			cl := c.client()
			app, err := c.appArg(ctx, cl, args)
			if err != nil {
				return err
			}
			err = cl.Act(ctx, action, app, func(msg string) { fmt.Fprintln(out, oneLine(msg)) })
			if errors.Is(err, control.ErrNothingToDo) {
				// The daemon said so, and why: no "done" for nothing.
				return nil
			}
			if err != nil {
				var re *control.ReloadError
				if errors.As(err, &re) {
					return &control.ReloadError{App: app, Reason: re.Reason, Detail: re.Detail, Op: string(action)}
				}
				return fmt.Errorf("%s %s: %w", action, app, err)
			}
			fmt.Fprintf(out, "%s: %s done\n", app, action)
			return nil
		},
	}
}

func (c *cli) logsCmd() *cobra.Command {
	var n int
	var follow, access bool
	cmd := &cobra.Command{
		Use:   "logs [APP] [-f] [-n N] [--access]",
		Short: "Show an app's log: worker output, tracebacks, supervisor events",
		Long: `Show the last N lines of APP's log: everything its workers wrote to stdout
and stderr (wsgi.errors and tracebacks included), each line with the time
and the worker's pid, and the supervisor's events for the app ([pyhost]
lines: workers started, recycled, died). With -f, keep printing new lines
until interrupted.

With --access, show the app's access log instead (one line per request, as
in the daemon's access log), where the admin keeps per-app access logs
([daemon] access_log_per_app).

APP may be left out when you can see exactly one app.`,
		Args:              maxArgs(1),
		ValidArgsFunction: c.completeApps,
		RunE: func(cmd *cobra.Command, args []string) error {
			if n < 0 {
				return usageErrorf("-n must not be negative, got %s", strconv.Itoa(n))
			}
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			cl := c.client()
			app, err := c.appArg(ctx, cl, args)
			if err != nil {
				return err
			}
			show := func(line string) { fmt.Fprintln(out, sanitize(line)) }
			if access {
				// A daemon from before per-app access logs ignores
				// access=1 and would answer with the app log; it has no
				// /v1/daemon either, which tells it apart.
				if _, err := cl.Daemon(ctx); errors.Is(err, control.ErrUnsupported) {
					return errors.New("this daemon is older than pyctl and keeps no per-app access logs")
				}
				return cl.AccessLogs(ctx, app, n, follow, show)
			}
			return cl.Logs(ctx, app, n, follow, show)
		},
	}
	cmd.Flags().IntVarP(&n, "lines", "n", 20, "how many of the last lines to show")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines until interrupted")
	cmd.Flags().BoolVar(&access, "access", false, "show the app's access log instead (per-app access logs must be on)")
	return cmd
}

func (c *cli) reloadConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reload-config",
		Short: "Re-read the admin config and every app file (root only)",
		Long: `Re-read every app file the daemon's config allows: new apps start, apps
whose file is gone stop, changed apps roll onto their new settings; a file
that became invalid is reported and its app keeps running as it was.
The same as sending SIGHUP to pyhostd, or "systemctl reload pyhost".`,
		Args: maxArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if err := c.client().ReloadConfig(cmd.Context(), func(msg string) { fmt.Fprintln(out, oneLine(msg)) }); err != nil {
				return fmt.Errorf("reload-config: %w", err)
			}
			fmt.Fprintln(out, "config reloaded")
			return nil
		},
	}
}

func (c *cli) checkCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE",
		Short: "Validate an app file as the daemon would for you, without loading it",
		Long: `Ask the daemon to validate FILE as it would load it for you: ownership and
mode, syntax and every key, your domains and quotas, and the paths it names
checked with your own rights. Prints "ok" or every problem, with file and
line; exits 1 when the file would be refused.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			err = c.client().Check(cmd.Context(), path)
			var re *control.ReloadError
			if errors.As(err, &re) {
				fmt.Fprintln(cmd.ErrOrStderr(), re.Detail)
				return fmt.Errorf("check %s: refused", args[0])
			}
			if err != nil {
				return fmt.Errorf("check %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", args[0])
			return nil
		},
	}
}
