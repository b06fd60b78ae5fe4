package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/privdrop"
)

func checkCommand(stdout, stderr io.Writer) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "check [--config PATH]",
		Short: "Validate the admin config and every app file it would load",
		Long: `Validate the admin config and every app file "pyhostd run" would load,
as it would (ownership and modes, domains, quotas, paths checked with each
owner's rights), and what run refuses to start with (a proxy user that does
not exist, a [[tls]] certificate or key that is missing, broken or not a
pair, settings this version does not implement). Warns of certificates that
expired or expire within 7 days, and of app domains no certificate covers. Print each problem as
FILE:LINE: KEY: MESSAGE, then "ok: USER/APP" for each app that would run;
exit 1 if there is any problem, else print "ok: N users, M apps" and exit 0
(like nginx -t). It also prints what the host's cgroups offer (the limits
the kernel enforces: memory_max, cpu_max, ...) and warns of each limit an
app or [users.NAME] max_memory asks for that this host cannot enforce, and
how sandboxed apps would start (the pyhost-sandbox trampoline, and whether
this host lets root make their mount namespace).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			admin, d, err := discover(path)
			var es config.Errors
			if errors.As(err, &es) {
				// A broken admin file: its problems one a line, as all.
				for _, e := range es {
					fmt.Fprintln(stdout, e)
				}
				return fmt.Errorf("%s in %s", problems(len(es)), path)
			}
			if err != nil {
				return err
			}
			host, err := cgroup.Detect()
			if err != nil {
				fmt.Fprintln(stdout, "warning: cgroups:", err)
			}
			reportCgroups(stdout, host, admin, d.Apps)
			reportSandbox(stdout, probeMountNamespace)
			return report(stdout, admin, d, checkSystem(admin, d.Apps, privdrop.Lookup))
		},
	}
	cmd.Flags().StringVar(&path, "config", config.DefaultAdminFile, "the admin config file")
	return cmd
}

// report writes what check found: one line per problem, in the form
// FILE:LINE: KEY: MESSAGE (the admin file's first, then the app files
// refused), a line per warning, a line per app that would run, and a
// summary when nothing is wrong. The error counts the problems; nil when
// there are none.
func report(w io.Writer, admin config.Admin, d config.Discovery, sys systemConfig) error {
	n := 0
	for _, e := range sys.refusals() {
		fmt.Fprintln(w, e)
		n++
	}
	for _, r := range d.Refused {
		fmt.Fprintln(w, r.Error())
		n++
	}
	for _, e := range sys.Warnings {
		fmt.Fprintln(w, "warning:", e)
	}
	for _, a := range d.Apps {
		fmt.Fprintf(w, "ok: %s (%s, %d x %d)\n", a.Key(), joinDomains(a), a.Processes, a.Threads)
	}
	if n > 0 {
		return fmt.Errorf("%s in %s or its app files", problems(n), admin.Path)
	}
	fmt.Fprintf(w, "ok: %s, %s\n", count(len(admin.Users), "user"), count(len(d.Apps), "app"))
	return nil
}

func joinDomains(a config.App) string {
	return strings.Join(a.Domains, " ") + a.URLPrefix
}

func problems(n int) string { return count(n, "problem") }

// count is "1 app", "2 apps".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
