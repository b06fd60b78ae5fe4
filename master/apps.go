package master

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"

	"github.com/pyhost/pyhost/applog"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/daemons"
	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/supervisor"
)

// appSet owns the running apps: their supervisors, settings and logs.
// It changes at runtime (reload-config, a new or deleted app file), so
// everything is guarded by one mutex; the supervisors themselves run on
// their own goroutines.
type appSet struct {
	m    *Master
	opts supervisor.Options

	mu      sync.Mutex
	order   []string
	apps    map[string]*appEntry
	refused []config.Refusal
}

type appEntry struct {
	app  *supervisor.App
	cfg  config.App
	log  *applog.Log
	stop context.CancelFunc
	done chan struct{}
}

func newAppSet(m *Master, opts supervisor.Options, refused []config.Refusal) *appSet {
	return &appSet{m: m, opts: opts, apps: map[string]*appEntry{}, refused: refused}
}

// add starts an app.
func (s *appSet) add(a config.App) error {
	alog, err := s.m.openAppLog(a)
	if err != nil {
		return err
	}
	opts := s.opts
	out := s.m.cfg.AppOutput
	opts.Output = func(key string, pid int, line string) {
		alog.Line(pid, line)
		if out != nil {
			out(key, pid, line)
		}
	}
	// The proxy serves [[static]] as its own user, not as the app's
	// owner: say so in the owner's log if that user cannot get in.
	for _, m := range a.Static {
		if err := privdrop.CheckAccess(s.m.cfg.ProxyCred, m.Dir, privdrop.Execute); err != nil {
			opts.Output(a.Key(), 0, fmt.Sprintf("[[static]] %s: the proxy's user %s cannot read %s (%v); its files will answer 403 or 404", m.URL, s.m.cfg.ProxyCred.Username, m.Dir, err))
		}
	}
	app := supervisor.NewApp(a, opts)
	ctx, cancel := context.WithCancel(context.Background())
	e := &appEntry{app: app, cfg: a, log: alog, stop: cancel, done: make(chan struct{})}
	s.mu.Lock()
	s.apps[a.Key()] = e
	s.order = append(s.order, a.Key())
	s.mu.Unlock()
	go func() { defer close(e.done); app.Run(ctx) }()
	s.m.markChanged()
	return nil
}

// remove stops an app (its workers finish their requests) and forgets it.
func (s *appSet) remove(key string) {
	s.mu.Lock()
	e := s.apps[key]
	delete(s.apps, key)
	for i, k := range s.order {
		if k == key {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	if e == nil {
		return
	}
	s.m.markChanged()
	e.stop()
	<-e.done
	e.log.Close()
}

// stopAll stops every app and waits for them.
func (s *appSet) stopAll() {
	s.mu.Lock()
	entries := make([]*appEntry, 0, len(s.apps))
	for _, e := range s.apps {
		entries = append(entries, e)
	}
	s.mu.Unlock()
	for _, e := range entries {
		e.stop()
	}
	for _, e := range entries {
		<-e.done
		e.log.Close()
	}
}

func (s *appSet) all() []*supervisor.App {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*supervisor.App, 0, len(s.order))
	for _, k := range s.order {
		out = append(out, s.apps[k].app)
	}
	return out
}

func (s *appSet) get(key string) *supervisor.App {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.apps[key]; e != nil {
		return e.app
	}
	return nil
}

func (s *appSet) config(key string) config.App {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.apps[key]; e != nil {
		return e.cfg
	}
	return config.App{}
}

func (s *appSet) setConfig(a config.App) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.apps[a.Key()]; e != nil {
		e.cfg = a
	}
}

func (s *appSet) logOf(key string) *applog.Log {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.apps[key]; e != nil {
		return e.log
	}
	return nil
}

func (s *appSet) logsByKey() map[string]*applog.Log {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*applog.Log, len(s.apps))
	for k, e := range s.apps {
		out[k] = e.log
	}
	return out
}

func (s *appSet) setRefused(r []config.Refusal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refused = r
}

// refusedFor lists the refused files c may see: their owner's, or all
// for root and the daemon's own user.
func (s *appSet) refusedFor(c control.Caller, owner uint32) []config.Refusal {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []config.Refusal
	for _, r := range s.refused {
		if c.UID == 0 || c.UID == owner || uidOf(r.User) == c.UID {
			out = append(out, r)
		}
	}
	return out
}

// --- reloads that re-read files (system mode) ---

// keyOf is the app key a refused file would have had.
func keyOf(r config.Refusal) string {
	return r.User + "/" + strings.TrimSuffix(filepath.Base(r.Path), ".toml")
}

// reloadFromFile is pyctl reload APP in system mode: re-read the app's
// file and act on what it says now. A new file starts its app, a deleted
// one stops it, a broken one is refused and the running version keeps
// serving (S6, S10).
func (m *Master) reloadFromFile(ctx context.Context, c control.Caller, name string, progress func(string)) error {
	key, err := m.keyFor(c, name)
	if err != nil {
		return err
	}
	progress("re-reading the app file")
	d := m.cfg.Rescan()
	var next *config.App
	for i := range d.Apps {
		if d.Apps[i].Key() == key {
			next = &d.Apps[i]
		}
	}
	for _, r := range d.Refused {
		if keyOf(r) == key {
			m.set.setRefused(d.Refused)
			return &control.ReloadError{App: name, Reason: "the app file was refused; the running version (if any) keeps serving", Detail: r.Err.Error()}
		}
	}
	m.set.setRefused(d.Refused)
	app := m.set.get(key)
	switch {
	case next == nil && app == nil:
		return fmt.Errorf("%w: %s (no app file for it)", control.ErrNoSuchApp, name)
	case next == nil:
		progress("the app file is gone; stopping the app")
		m.set.remove(key)
		return nil
	case app == nil:
		progress("new app file; starting the app")
		if err := m.set.add(*next); err != nil {
			return &control.ReloadError{App: name, Reason: err.Error()}
		}
		if err := m.set.get(key).WaitStarted(ctx); err != nil {
			rerr := &control.ReloadError{App: name, Reason: "started, but no worker became ready: " + err.Error()}
			var ie *daemons.ImportError
			if errors.As(err, &ie) {
				rerr.Detail = strings.TrimRight(ie.Traceback, "\n")
			}
			return rerr
		}
		return nil
	}
	return m.roll(ctx, app, *next, progress)
}

// keyFor turns what the caller typed into an app key, checking that the
// caller owns it (or is root): "blog" is the caller's own app,
// "alice/blog" names another user's (root only).
func (m *Master) keyFor(c control.Caller, name string) (string, error) {
	if m.cfg.Listed != nil && c.UID != 0 && !m.cfg.Listed(c.UID) {
		return "", fmt.Errorf("%w: uid %d is not a user the admin allows to host apps (see [users] in pyhost.toml)", control.ErrAccessDenied, c.UID)
	}
	user, app, found := strings.Cut(name, "/")
	if !found {
		app = user
		user = nameOf(c.UID)
	}
	if user == "" || app == "" {
		return "", fmt.Errorf("%w: %s", control.ErrNoSuchApp, name)
	}
	if c.UID != 0 && uidOf(user) != c.UID {
		return "", fmt.Errorf("%w: %s", control.ErrNoSuchApp, name)
	}
	return user + "/" + app, nil
}

// ReloadConfig re-reads every app file (SIGHUP, pyctl reload-config):
// new apps start, removed ones stop, changed ones roll; a file that became
// invalid is reported and its running version keeps serving (S10).
func (m *Master) reloadConfig(ctx context.Context, progress func(string)) error {
	if m.cfg.Rescan == nil {
		return errors.New("express mode has no config to reload")
	}
	d := m.cfg.Rescan()
	m.set.setRefused(d.Refused)
	m.markChanged() // the admin's default_app may have changed alone
	refused := map[string]bool{}
	for _, r := range d.Refused {
		// A broken file keeps its app running as it was; an app the
		// admin's policy no longer allows stops.
		refused[keyOf(r)] = !errors.Is(r.Err, config.ErrPolicy)
		progress(fmt.Sprintf("refused %s: %v", r.Path, r.Err))
		m.log.Warn("app file refused", "file", r.Path, "user", r.User, "reason", r.Err)
	}
	want := map[string]config.App{}
	for _, a := range d.Apps {
		want[a.Key()] = a
	}
	for _, app := range m.set.all() {
		key := app.Key()
		if _, ok := want[key]; ok || refused[key] {
			continue
		}
		progress("stopping " + key + " (no longer loaded: its file is gone, or its user is no longer listed)")
		m.set.remove(key)
	}
	var wg sync.WaitGroup
	for _, a := range d.Apps {
		key := a.Key()
		app := m.set.get(key)
		switch {
		case app == nil:
			progress("starting " + key)
			if err := m.set.add(a); err != nil {
				progress(fmt.Sprintf("cannot start %s: %v", key, err))
			}
		case !reflect.DeepEqual(m.set.config(key), a):
			progress("rolling " + key + " onto its changed settings")
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := m.roll(ctx, app, a, nil); err != nil {
					progress(fmt.Sprintf("reload of %s failed: %v", key, err))
				}
			}()
		}
	}
	wg.Wait()
	return nil
}

// ReloadConfig implements control.Backend (root only).
func (m *Master) ReloadConfig(ctx context.Context, c control.Caller, progress func(string)) error {
	if c.UID != 0 {
		return fmt.Errorf("%w: only root may reload the daemon's config", control.ErrAccessDenied)
	}
	return m.reloadConfig(context.WithoutCancel(ctx), progress)
}

// uidOf is the uid of a user name, or an impossible uid when unknown.
func uidOf(name string) uint32 {
	c, err := privdrop.Lookup(name)
	if err != nil {
		return 1<<32 - 1
	}
	return c.UID
}

// nameOf is the user name of a uid, or "" when unknown.
func nameOf(uid uint32) string {
	c, err := privdrop.Lookup(fmt.Sprint(uid))
	if err != nil {
		return ""
	}
	return c.Username
}
