// Command pyhostd is the pyhost daemon: `pyhostd serve` (express mode),
// `pyhostd version`, and the internal proxy child. This package only
// parses flags and wires packages together.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/pyhost/pyhost/wsgiadapter"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if code, ok := sandboxExec(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError marks errors in how pyhostd was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func run(args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:   "pyhostd",
		Short: "Host Python WSGI apps behind a Go front proxy with supervised workers",
		Long: `pyhostd hosts Python WSGI apps behind a Go front proxy with supervised
worker processes. "pyhostd serve TARGET" serves one app, no config needed.

Exit status: 0 success; 1 failure (the reason is the last line on stderr);
2 wrong usage.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		// An unknown command is a usage error (exit 2), like an unknown flag.
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q; see pyhostd --help", args[0])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(serveCommand(stdout, stderr), runCommand(stdout, stderr), checkCommand(stdout, stderr),
		versionCommand(stdout), proxyCommand(stderr), accessCommand(stderr))
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintf(stderr, "pyhostd: %v\n", err)
		if _, ok := err.(usageError); ok {
			return exitUsage
		}
		return exitError
	}
	return exitOK
}

func versionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(stdout, "pyhostd %s (%s, wire protocol %d)\n", version, runtime.Version(), wsgiadapter.Version)
			return nil
		},
	}
}

// logFormatEnv carries [daemon] log_format (or run's --log-format) to
// newLogger, in this process and in the proxy child.
const logFormatEnv = "PYHOST_LOG_FORMAT"

// newLogger is the daemon's own log on stderr: text, or one JSON object
// a line when PYHOST_LOG_FORMAT is "json" (hclog's JSONFormat: "@level",
// "@message", "@module", "@timestamp" and the key/values); level from
// PYHOST_LOG_LEVEL (default info). Under systemd, stderr is the journal
// already, so the daemon speaks no journald protocol of its own.
func newLogger(name string, w io.Writer) hclog.Logger {
	level := hclog.LevelFromString(os.Getenv("PYHOST_LOG_LEVEL"))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: level, Output: w, JSONFormat: os.Getenv(logFormatEnv) == "json"})
}
