// Command pyctl is the control client of pyhostd: it shows the apps the
// caller may see and reloads them, over the daemon's control socket
// (package control). It only parses flags, calls control.Client and
// formats what comes back.
//
// Exit status:
//
//	0  the command did what was asked (also --help)
//	1  the operation failed: no daemon at the socket, access denied,
//	   no such app, reload refused or aborted, any daemon error
//	2  the command line is wrong: unknown command or flag, too many
//	   arguments, or APP left out while zero or several apps are visible
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/pyhost/pyhost/control"
	"github.com/spf13/cobra"
)

const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const (
	defaultSocket = "/run/pyhost/control.sock"
	socketEnv     = "PYHOST_SOCKET"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is pyctl with its environment passed in, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr, getenv: os.Getenv, me: currentUser()}
	return c.run(context.Background(), args)
}

// cli holds one invocation's settings and flags.
type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	me             string // caller's login name: another user's app is USER/APP

	socketFlag string
	// parsed is set once cobra has accepted the command line; an error
	// before that is a usage error.
	parsed bool
}

func (c *cli) run(ctx context.Context, args []string) int {
	root := c.rootCmd()
	root.SetArgs(args)
	root.SetOut(c.stdout)
	root.SetErr(c.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	return c.report(cmd, err)
}

func (c *cli) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "pyctl",
		Short: "Control the pyhost daemon",
		Long: `pyctl talks to the pyhost daemon (pyhostd) over its control socket.
The daemon knows who you are from your Unix user: you see and act on your
own apps only, root on all of them (root names another user's app USER/APP).

The socket is --socket, else $` + socketEnv + `, else ` + defaultSocket + `
when a system daemon runs here, else your own "pyhostd serve"'s,
$XDG_RUNTIME_DIR/pyhost/APP.sock, when exactly one runs.

Exit status: 0 done, 1 the operation failed, 2 the command line is wrong.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(*cobra.Command, []string) {
			c.parsed = true
		},
	}
	root.PersistentFlags().StringVar(&c.socketFlag, "socket", "",
		"`PATH` of the daemon's control socket (default $"+socketEnv+", else "+defaultSocket+")")
	root.AddCommand(c.statusCmd(), c.reloadCmd(),
		c.actCmd(control.ActionRestart, "Replace every worker of an app, one rolling step at a time",
			`Start new workers for APP with its current settings, wait until they are
ready, then retire the old ones: a restart without downtime. Unlike reload,
it does not re-read the app's file.`),
		c.actCmd(control.ActionStop, "Stop an app's workers",
			`Stop every worker of APP once it has finished its requests. The app then
answers 503 until "pyctl start".`),
		c.actCmd(control.ActionStart, "Start a stopped or failing app",
			`Start APP's workers and wait until one is ready. A failing app is retried
at once. If the app cannot start, the reason and traceback are printed.
An app that already runs (or is starting) is left alone, and pyctl says
so: restart replaces its workers, reload rolls it onto fresh code.`),
		c.logsCmd(), c.reloadConfigCmd(), c.checkCmd(), c.reopenLogsCmd(),
		c.versionCmd(), c.metricsCmd(), c.topCmd())
	return root
}

// socket is where the daemon is expected.
func (c *cli) socket() string {
	if c.socketFlag != "" {
		return c.socketFlag
	}
	if s := c.getenv(socketEnv); s != "" {
		return s
	}
	// No system daemon here: the caller's own `pyhostd serve`, if exactly
	// one runs (D4; several need --socket).
	if _, err := os.Stat(defaultSocket); err != nil {
		if xdg := c.getenv("XDG_RUNTIME_DIR"); xdg != "" {
			if socks := liveServeSockets(filepath.Join(xdg, "pyhost")); len(socks) == 1 {
				return socks[0]
			}
		}
	}
	return defaultSocket
}

// liveServeSockets are the sockets in dir that a serve of the caller's
// answers on. dir must be the caller's own and private (as serve makes
// it): with `sudo -E` or `su`, XDG_RUNTIME_DIR may still name another
// user's directory, whose daemon root's pyctl must not talk to unasked.
// A socket left by a serve that was killed refuses connections and does
// not count.
func liveServeSockets(dir string) []string {
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 {
		return nil
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Getuid() {
		return nil
	}
	socks, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
	var live []string
	for _, s := range socks {
		conn, err := net.DialTimeout("unix", s, time.Second)
		if err != nil {
			continue
		}
		conn.Close()
		live = append(live, s)
	}
	return live
}

func (c *cli) client() *control.Client {
	return control.NewClient(c.socket())
}

// report prints err as one line on stderr (a reload's traceback follows
// on its own lines) and returns the exit status.
func (c *cli) report(cmd *cobra.Command, err error) int {
	var re *control.ReloadError
	var ue usageError
	switch {
	case errors.As(err, &re):
		fmt.Fprintf(c.stderr, "pyctl: %s\n", oneLine(re.Error()))
		if d := strings.TrimRight(re.Detail, "\n"); d != "" {
			fmt.Fprintln(c.stderr, sanitize(d))
		}
		return exitFailure
	case errors.Is(err, control.ErrNoDaemon):
		fmt.Fprintf(c.stderr, "pyctl: no pyhost daemon at %s (is it running? set --socket or %s)\n", c.socket(), socketEnv)
		return exitFailure
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "pyctl: %s\n", oneLine(err.Error()))
		return exitUsage
	case !c.parsed:
		fmt.Fprintf(c.stderr, "pyctl: %s (see '%s --help')\n", cobraError(err), cmd.CommandPath())
		return exitUsage
	default:
		fmt.Fprintf(c.stderr, "pyctl: %s\n", oneLine(err.Error()))
		return exitFailure
	}
}

// cobraError puts one of cobra's errors on one line; an unknown command
// comes with suggestions on lines of their own.
func cobraError(err error) string {
	msg, rest, _ := strings.Cut(strings.TrimSpace(err.Error()), "\n")
	if _, sugg, ok := strings.Cut(rest, "Did you mean this?"); ok {
		if s := strings.Fields(sugg); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
	}
	return oneLine(msg)
}

// usageError is a command line that cannot be carried out as typed.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// maxArgs accepts at most n positional APP arguments.
func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usageErrorf("%s takes at most %d APP, got %d arguments: %s",
				cmd.Name(), n, len(args), strings.Join(args, " "))
		}
		return nil
	}
}

// exactArgs wants exactly n positional arguments.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErrorf("%s takes %d argument(s), got %d", cmd.Name(), n, len(args))
		}
		return nil
	}
}

func currentUser() string {
	u, err := user.Current()
	if err != nil {
		return ""
	}
	return u.Username
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return sanitize(strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " "))
}

// sanitize replaces control characters (other than tab and newline) in
// text from the daemon, which may come from an app's output, so that it
// cannot drive the terminal of whoever reads it.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r != '\t' && r != '\n' && unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}
