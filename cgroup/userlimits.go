package cgroup

import (
	"errors"
	"strings"

	"golang.org/x/sys/unix"
)

// A user's totals ([users.NAME] max_memory) change with the admin's
// config, which reload-config rereads without touching an unchanged app;
// so the user's group is not written once when the first app starts but
// settled: each app's supervisor calls SettleUser as it goes about its
// work, and the group is written whenever what the config says differs
// from what was last written (or was refused: v1 will not lower a
// memory limit below what the group uses, and the next call tries again).

// SetUserLimits says what each user's group is to carry; f is asked on
// every SettleUser, so it must be cheap and safe for concurrent use.
func (t *Tree) SetUserLimits(f func(user string) Limits) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.userLimits = f
	t.userApplied = map[string]Limits{}
}

// SettleUser writes the limits SetUserLimits gives for the app's user to
// the user's group, if they differ from those last written there. Only
// an app's group has a user; for others, and without SetUserLimits, it
// does nothing. The error is Apply's, returned by the call that wrote.
func (g *Group) SettleUser() error {
	if g.kind != kindApp {
		return nil
	}
	user, _, _ := strings.Cut(strings.TrimPrefix(g.rel, "apps/"), "/")
	t := g.t
	t.mu.Lock()
	f := t.userLimits
	last, done := t.userApplied[user]
	t.mu.Unlock()
	if f == nil {
		return nil
	}
	l := f(user)
	if done && last == l {
		return nil
	}
	ug, err := t.User(user)
	if err != nil {
		return err
	}
	err = ug.Apply(l)
	t.mu.Lock()
	if errors.Is(err, unix.EBUSY) {
		delete(t.userApplied, user) // refused for now: again next time
	} else {
		t.userApplied[user] = l // an unsupported limit stays so: said once
	}
	t.mu.Unlock()
	return err
}
