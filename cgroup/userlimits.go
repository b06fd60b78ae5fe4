package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

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

// RemoveUser removes the group of the app's user when no group is left
// below it: the user's last app is gone (its file deleted, or moved to
// another user), and an empty group per user who ever had an app would
// otherwise pile up until the daemon exits. It holds the tree's lock
// while it looks and removes, so no App of that user is made in between;
// a later App makes the group anew, and SettleUser writes the user's
// totals there again. It reports whether the group is gone. rmdir is
// retried while the kernel still counts exiting tasks, until ctx ends.
// Only an app's group has a user; for others it does nothing.
func (g *Group) RemoveUser(ctx context.Context) (bool, error) {
	if g.kind != kindApp {
		return false, nil
	}
	user, _, _ := strings.Cut(strings.TrimPrefix(g.rel, "apps/"), "/")
	t := g.t
	pause := time.Millisecond
	for {
		gone, err := t.removeUser(user)
		if err == nil || !errors.Is(err, unix.EBUSY) {
			return gone, err
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("cgroup: %w (%w)", err, ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// removeUser is one attempt of RemoveUser.
func (t *Tree) removeUser(user string) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var dirs []string
	if t.v2 != nil {
		dirs = append(dirs, filepath.Join(t.v2.base, "apps", user))
	}
	for i := range t.v1 {
		dirs = append(dirs, filepath.Join(t.v1[i].base, "apps", user))
	}
	for _, d := range dirs {
		below, err := subdirs(d)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("cgroup: %w", err)
		}
		if len(below) > 0 {
			return false, nil // another app of the user's, or one being made
		}
	}
	for _, d := range dirs {
		if err := t.k.rmdir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("cgroup: %w", err)
		}
	}
	// The group is gone with what was written there.
	delete(t.userApplied, user)
	return true, nil
}
