package master

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/pyhost/pyhost/applog"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/supervisor"
	"github.com/pyhost/pyhost/watch"
)

// WatchTree is what `pyhostd serve --reload` watches (D1): the app's
// directory, with the user's --reload-include and --reload-exclude
// globs (package watch has the rules).
type WatchTree struct {
	Root             string
	Include, Exclude []string
}

// triggerOf is why a path rolls apps: it is the app file or the
// reload_trigger of each of them.
type triggerOf struct {
	keys  []string
	owner privdrop.Credential // whose rights judge it (system mode)
}

// reloader turns file changes into rolling reloads (D1, D2). One Watcher
// serves the whole daemon: a user has 128 inotify instances, and a
// daemon of many apps would use them up with one each. Its triggers are
// every running app's file and reload_trigger, set anew whenever the
// apps change; a change of the tree (serve --reload) rolls every app
// (express mode has one).
type reloader struct {
	m *Master

	mu       sync.Mutex
	triggers map[string]triggerOf // by path, as the app's settings give it
	rolls    map[string]*rollState

	changed chan struct{} // the apps changed: set the triggers anew
}

// rollState coalesces the reasons that arrive while an app rolls: they
// make one more roll after it, not one each.
type rollState struct {
	again bool
	why   []string
}

func newReloader(m *Master) *reloader {
	return &reloader{m: m, triggers: map[string]triggerOf{}, rolls: map[string]*rollState{}, changed: make(chan struct{}, 1)}
}

// appsChanged asks for the triggers to be computed again.
func (r *reloader) appsChanged() {
	if r == nil {
		return
	}
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// wanted computes the trigger paths of apps.
func wantedTriggers(apps []config.App) map[string]triggerOf {
	out := map[string]triggerOf{}
	for _, a := range apps {
		for _, p := range []string{a.File, a.ReloadTrigger} {
			if p == "" {
				continue
			}
			t := out[p]
			if len(t.keys) == 0 {
				t.owner = a.Cred
			}
			if !slices.Contains(t.keys, a.Key()) {
				t.keys = append(t.keys, a.Key())
			}
			out[p] = t
		}
	}
	return out
}

// stat judges a trigger with its owner's rights when the daemon is root:
// a root daemon must not report on a file its owner could not stat.
func (r *reloader) stat(path string) (fs.FileInfo, error) {
	if os.Geteuid() != 0 {
		return os.Lstat(path)
	}
	r.mu.Lock()
	t, ok := r.triggers[path]
	r.mu.Unlock()
	if !ok {
		return nil, fs.ErrNotExist
	}
	return watch.StatAs(t.owner)(path)
}

// update sets the watcher's triggers from the apps as they run now.
func (r *reloader) update(w *watch.Watcher) {
	var cfgs []config.App
	for _, app := range r.m.set.all() {
		cfgs = append(cfgs, r.m.set.config(app.Key()))
	}
	want := wantedTriggers(cfgs)
	paths := make([]string, 0, len(want))
	for p := range want {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	r.mu.Lock()
	r.triggers = want
	r.mu.Unlock()
	r.m.log.Debug("reload triggers", "paths", paths)
	if err := w.SetTriggers(paths); err != nil {
		r.m.log.Error("cannot watch the apps' reload triggers", "error", err)
	}
}

// start sets up the watcher, the triggers' baseline taken, so that a
// touch once start returns is seen. tree is serve --reload's, or nil.
// It returns nil when nothing can be watched (logged).
func (r *reloader) start(ctx context.Context, tree *WatchTree) *watch.Watcher {
	opts := watch.Options{Logger: r.m.log.Named("watch"), Stat: r.stat}
	if tree != nil {
		opts.Root, opts.Include, opts.Exclude = tree.Root, tree.Include, tree.Exclude
	}
	w, err := watch.New(ctx, opts)
	if err != nil {
		r.m.log.Error("cannot watch files for reloads; touch-to-reload and --reload are off", "error", err)
		return nil
	}
	if tree != nil {
		r.m.log.Info("watching for changes", "dir", tree.Root, "mode", w.Mode())
	}
	r.update(w)
	return w
}

// run turns w's changes into reloads until ctx is done.
func (r *reloader) run(ctx context.Context, w *watch.Watcher, tree bool) {
	defer w.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.changed:
			r.update(w)
		case c, ok := <-w.Changes():
			if !ok {
				return
			}
			r.dispatch(ctx, c, tree)
		}
	}
}

// dispatch rolls the apps a Change concerns: the apps whose trigger it
// names, and with a tree, every app for any other path.
func (r *reloader) dispatch(ctx context.Context, c watch.Change, tree bool) {
	why := map[string][]string{}
	var treePaths []string
	r.mu.Lock()
	for _, p := range c.Paths {
		if t, ok := r.triggers[p]; ok {
			for _, k := range t.keys {
				why[k] = append(why[k], p+" touched")
			}
			continue
		}
		treePaths = append(treePaths, p)
	}
	r.mu.Unlock()
	if tree && (len(treePaths) > 0 || c.More > 0 || c.Overflow) {
		what := watch.Change{Paths: treePaths, More: c.More, Overflow: c.Overflow}.String() + " changed"
		for _, app := range r.m.set.all() {
			why[app.Key()] = append(why[app.Key()], what)
		}
	}
	for key, w := range why {
		r.request(ctx, key, w)
	}
}

// request rolls key, or, while it rolls, once more after.
func (r *reloader) request(ctx context.Context, key string, why []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.rolls[key]; st != nil {
		st.again = true
		st.why = append(st.why, why...)
		return
	}
	r.rolls[key] = &rollState{}
	go r.roll(ctx, key, why)
}

// roll does the rolling reload pyctl reload does, as root, and says in
// the daemon's log and the app's what triggered it and how it ended.
func (r *reloader) roll(ctx context.Context, key string, why []string) {
	for ctx.Err() == nil {
		msg := "reload of " + key + ": " + strings.Join(dedupe(why), ", ")
		r.m.log.Info(msg)
		r.m.appLine(key, msg)
		if r.stoppedByOwner(ctx, key) {
			// pyctl stop holds until pyctl start: a deploy's touch does
			// not undo it (pyctl reload, asked by a person, does).
			msg := "reload of " + key + " skipped: it was stopped with pyctl stop; pyctl start or pyctl reload starts it on the new code"
			r.m.log.Info(msg)
			r.m.appLine(key, msg)
			if !r.next(key, &why) {
				return
			}
			continue
		}
		err := r.m.Reload(ctx, control.Caller{UID: 0}, key, func(line string) {
			r.m.log.Debug("reload progress", "app", key, "step", line)
		})
		var rerr *control.ReloadError
		switch {
		case errors.As(err, &rerr):
			r.m.log.Error("reload failed; the running version keeps serving", "app", key, "reason", rerr.Reason)
			// The traceback is in the log already: the new worker's own
			// output, as it failed.
			r.m.appLine(key, "reload failed; the running version keeps serving: "+rerr.Reason)
		case err != nil:
			r.m.log.Error("reload failed", "app", key, "error", err)
			r.m.appLine(key, "reload failed: "+err.Error())
		default:
			r.m.log.Info("reload of " + key + " done")
			r.m.appLine(key, "reload done")
		}
		if !r.next(key, &why) {
			return
		}
	}
	r.mu.Lock()
	delete(r.rolls, key)
	r.mu.Unlock()
}

// next takes the reasons that arrived during a roll of key into why and
// reports whether to roll again; if not, the roll is over.
func (r *reloader) next(key string, why *[]string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.rolls[key]
	if !st.again {
		delete(r.rolls, key)
		return false
	}
	*why, st.why, st.again = st.why, nil, false
	return true
}

// stoppedByOwner reports whether key is stopped by pyctl stop (not by
// enabled = false, whose file's new word a touch is for).
func (r *reloader) stoppedByOwner(ctx context.Context, key string) bool {
	app := r.m.set.get(key)
	if app == nil || r.m.set.config(key).Disabled {
		return false
	}
	st, err := app.Status(ctx)
	return err == nil && st.State == supervisor.AppStopped
}

func dedupe(s []string) []string {
	var out []string
	for _, x := range s {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// appLine writes a line of the daemon's to an app's log, so pyctl logs
// shows what rolled it. (Serve's terminal has the daemon's log line.)
func (m *Master) appLine(key, line string) {
	if l := m.set.logOf(key); l != nil {
		l.Line(applog.NotePID, line)
	}
}
