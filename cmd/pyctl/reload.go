package main

import (
	"errors"
	"fmt"

	"github.com/pyhost/pyhost/control"
	"github.com/spf13/cobra"
)

func (c *cli) reloadCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reload [APP]",
		Short: "Roll an app's workers onto its new code and settings",
		Long: `Re-read APP's file and roll its workers onto the new code and settings:
new workers start and must import the app before old ones stop taking
requests. Blocks until done, printing progress.

If the reload is refused or aborted (say the new code fails to import),
the old workers keep serving; pyctl prints the reason and the Python
traceback on stderr and exits 1.

APP may be left out when you can see exactly one app.`,
		Args:              maxArgs(1),
		ValidArgsFunction: c.completeApps,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			cl := c.client()
			app, err := c.appArg(ctx, cl, args)
			if err != nil {
				return err
			}
			err = cl.Reload(ctx, app, func(msg string) {
				fmt.Fprintln(out, oneLine(msg))
			})
			var re *control.ReloadError
			switch {
			case errors.As(err, &re):
				// Name the app as the user did, whatever the daemon calls it.
				return &control.ReloadError{App: app, Reason: re.Reason, Detail: re.Detail}
			case err != nil:
				return fmt.Errorf("reload %s: %w", app, err)
			}
			fmt.Fprintf(out, "reloaded %s\n", app)
			return nil
		},
	}
}
