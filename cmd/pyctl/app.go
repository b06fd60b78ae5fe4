package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pyhost/pyhost/control"
	"github.com/spf13/cobra"
)

// appRef is how the caller names app a on the command line: its name for
// the caller's own apps, USER/NAME for another user's (only root sees
// those).
func appRef(a control.AppStatus, me string) string {
	if a.User == "" || a.User == me || strings.Contains(a.Name, "/") {
		return a.Name
	}
	return a.User + "/" + a.Name
}

// pickApp is the app a command means when APP is left out: the only one
// the caller can see (express mode has one app). With none or several,
// the caller must name it.
func pickApp(apps []control.AppStatus, me string) (string, error) {
	switch len(apps) {
	case 0:
		// Not a usage error: nothing the caller could type would do.
		return "", fmt.Errorf("%w: no app is visible to you", control.ErrNoSuchApp)
	case 1:
		return appRef(apps[0], me), nil
	}
	refs := make([]string, len(apps))
	for i, a := range apps {
		refs[i] = appRef(a, me)
	}
	slices.Sort(refs)
	return "", usageErrorf("name the app: one of %s", strings.Join(refs, ", "))
}

// appArg is the APP argument of a command that needs exactly one app,
// asking the daemon when it was left out.
func (c *cli) appArg(ctx context.Context, cl *control.Client, args []string) (string, error) {
	if len(args) == 1 {
		if args[0] == "" {
			return "", usageErrorf("APP must not be empty")
		}
		return args[0], nil
	}
	apps, err := cl.Status(ctx, "")
	if err != nil {
		return "", err
	}
	return pickApp(apps, c.me)
}

// completeApps completes APP with the names of the apps the daemon shows.
func (c *cli) completeApps(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
	defer cancel()
	apps, err := c.client().Status(ctx, "")
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []cobra.Completion
	for _, a := range apps {
		if ref := appRef(a, c.me); strings.HasPrefix(ref, toComplete) {
			names = append(names, cobra.CompletionWithDesc(ref, a.State))
		}
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}
