package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/pyhost/pyhost/control"
)

func (c *cli) metricsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "metrics [APP]",
		Short: "Print the Prometheus metrics of your apps",
		Long: `Print, in the Prometheus text format, the metrics of the apps you may
see: your own (root: every app, and the daemon's own figures), or only APP.
They are the series the daemon's metrics endpoint ([daemon] metrics_listen)
serves, cut to your apps: a tenant gets their figures without access to the
endpoint. docs/metrics.md describes each metric.

Metrics must be on (metrics_listen set in pyhost.toml); otherwise pyctl says
so and exits 1.`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			app := ""
			if len(args) == 1 {
				app = args[0]
			}
			text, err := c.client().Metrics(cmd.Context(), app)
			switch {
			case errors.Is(err, control.ErrNoDaemon):
				return err // report() names the socket
			case errors.Is(err, control.ErrUnsupported):
				return errors.New("metrics: this daemon is older than pyctl and serves no metrics over the control socket")
			case err != nil:
				return fmt.Errorf("metrics: %w", err)
			}
			_, err = io.WriteString(cmd.OutOrStdout(), text)
			return err
		},
	}
}
