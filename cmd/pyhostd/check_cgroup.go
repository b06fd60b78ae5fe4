package main

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/config"
)

// reportCgroups prints what the host's cgroups offer, in the line the
// daemon logs at start, and a warning for each limit the config asks for
// that the kernel here would not enforce: not an error, since the daemon
// runs without it (C6), but the admin should know before relying on it.
func reportCgroups(w io.Writer, h cgroup.Host, admin config.Admin, apps []config.App) {
	fmt.Fprintln(w, h.String())
	users := make([]string, 0, len(admin.Users))
	for u := range admin.Users {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		if m := admin.Users[u].MaxMemory; m > 0 {
			warnUnenforced(w, "[users."+u+"] max_memory", h.Check(cgroup.Limits{MemoryMax: m}))
		}
	}
	for _, a := range apps {
		warnUnenforced(w, a.Key(), h.Check(a.Limits))
	}
}

func warnUnenforced(w io.Writer, who string, err error) {
	if err == nil {
		return
	}
	var joined interface{ Unwrap() []error }
	errs := []error{err}
	if errors.As(err, &joined) {
		errs = joined.Unwrap()
	}
	for _, e := range errs {
		fmt.Fprintf(w, "warning: %s: %v\n", who, e)
	}
}
