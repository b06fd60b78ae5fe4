package master

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/pyhost/pyhost/applog"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/supervisor"
)

// appSet owns the running apps: their supervisors and logs. It changes
// at runtime (reload-config, a new or deleted app file), so everything
// is guarded by one mutex; the supervisors themselves run on their own
// goroutines. An app's settings are its supervisor's alone (App.Config):
// nothing here keeps a copy that could disagree with what runs.
type appSet struct {
	m    *Master
	opts supervisor.Options

	mu      sync.Mutex
	order   []string
	apps    map[string]*appEntry
	refused []config.Refusal
	// held is the claims ledger: who holds each domain and prefix. It
	// changes only through commitClaims, after the apps changed.
	held config.Ledger

	// pending are the settings apps are being rolled onto, by key
	// (guarded by mu): their claims count as held from the decision on,
	// so a reload decided meanwhile cannot take them.
	pending map[string]config.App
	closed  bool // guarded by mu; set by stopAll

	// reloading serializes the decisions of the operations that re-read
	// files (pyctl reload, reload-config, SIGHUP), so that each decides
	// its claims against what the one before it applied or is applying.
	// pyctl reload lets go of it while its app rolls (one tenant's slow
	// import must not hold up another's reload); reload-config holds it
	// to the end.
	reloading sync.Mutex
}

type appEntry struct {
	app  *supervisor.App
	log  *applog.Log
	stop context.CancelFunc
	done chan struct{}
}

func newAppSet(m *Master, opts supervisor.Options, refused []config.Refusal, held config.Ledger) *appSet {
	return &appSet{m: m, opts: opts, apps: map[string]*appEntry{}, refused: refused, held: held, pending: map[string]config.App{}}
}

// errClosed refuses an app added after stopAll began (a reload still
// running when the daemon stops).
var errClosed = errors.New("the daemon is stopping")

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
	for _, w := range s.m.staticWarnings(a) {
		opts.Output(a.Key(), applog.NotePID, w)
	}
	opts.Cgroup = s.m.appCgroup(a)
	app := supervisor.NewApp(a, opts)
	ctx, cancel := context.WithCancel(context.Background())
	e := &appEntry{app: app, log: alog, stop: cancel, done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		alog.Close()
		return errClosed
	}
	s.apps[a.Key()] = e
	s.order = append(s.order, a.Key())
	s.mu.Unlock()
	go func() { defer close(e.done); app.Run(ctx) }()
	s.m.markChanged()
	s.m.reloader.appsChanged()
	if a.Disabled {
		// enabled = false (D5): the supervisor begins it stopped, with
		// no process at all, its claims held.
		msg := "not started: enabled = false in " + a.File + " (pyctl start starts it until the daemon restarts)"
		s.m.log.Info(msg, "app", a.Key())
		alog.Line(applog.NotePID, msg)
	}
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
	s.m.reloader.appsChanged()
	e.stop()
	<-e.done
	e.log.Close()
}

// stopAll stops every app and waits for them; no app can be added
// afterwards.
func (s *appSet) stopAll() {
	s.mu.Lock()
	s.closed = true
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

// config is the settings in force of key's app (its supervisor's, see
// App.Config), or the zero App when none runs.
func (s *appSet) config(key string) config.App {
	if app := s.get(key); app != nil {
		return app.Config()
	}
	return config.App{}
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

// claims is the ledger as it stands, with the claims of rolls underway.
func (s *appSet) claims() config.Ledger {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := maps.Clone(s.held)
	for k, c := range config.LedgerOf(slices.Collect(maps.Values(s.pending))) {
		l[k] = c
	}
	return l
}

// scan is the state a Discover decides against: the ledger, the apps as
// they run, and only, the one app a pyctl reload asks about ("" for all).
func (s *appSet) scan(only string) config.Scan {
	held := s.claims()
	s.mu.Lock()
	defer s.mu.Unlock()
	running := make([]config.App, 0, len(s.order))
	for _, k := range s.order {
		running = append(running, s.apps[k].app.Config())
	}
	return config.Scan{Held: held, Running: running, Only: only}
}

// setPending marks key as rolling onto a (or, with ok false, done).
func (s *appSet) setPending(key string, a config.App, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		s.pending[key] = a
	} else {
		delete(s.pending, key)
	}
}

// isPending reports whether a roll of key is underway.
func (s *appSet) isPending(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pending[key]
	return ok
}

// commitClaims recomputes the ledger from the apps as they run now and
// the claims kept by a scan (config.NextLedger), and writes it to the
// claims file, so a restart decides nothing anew.
func (s *appSet) commitClaims(kept config.Ledger) {
	s.mu.Lock()
	running := make([]config.App, 0, len(s.apps)+len(s.pending))
	for _, k := range s.order {
		running = append(running, s.apps[k].app.Config())
	}
	// A roll underway holds its new claims besides its old ones.
	for _, a := range s.pending {
		running = append(running, a)
	}
	s.held = config.NextLedger(s.held, running, kept)
	held := maps.Clone(s.held)
	s.mu.Unlock()
	if err := s.m.catalog.SaveClaims(held); err != nil {
		s.m.log.Error("cannot save the claims ledger; a restart would decide claims by file order", "error", err)
	}
}

// mergeRefused replaces the refusals of every key a scan looked at with
// d's, keeping those of the keys it skipped (pyctl reload of one app
// does not judge the others' new files).
func (s *appSet) mergeRefused(d config.Discovery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	skipped := map[string]bool{}
	for _, k := range d.Skipped {
		skipped[k] = true
	}
	out := append([]config.Refusal(nil), d.Refused...)
	for _, r := range s.refused {
		if skipped[keyOf(r)] {
			out = append(out, r)
		}
	}
	s.refused = out
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

// keyOf is the app key a refused file would have had.
func keyOf(r config.Refusal) string {
	return r.User + "/" + strings.TrimSuffix(filepath.Base(r.Path), ".toml")
}

// staticWarnings are the [[static]] mounts of a that the proxy's user
// cannot enter: the proxy serves them as itself, not as the app's owner,
// so a home closed with chmod 700 turns them into 403s. Checked at every
// start and reload, and said in the app log and pyctl's output.
func (m *Master) staticWarnings(a config.App) []string {
	var out []string
	for _, st := range a.Static {
		if err := privdrop.CheckAccess(m.cfg.ProxyCred, st.Dir, privdrop.Execute); err != nil {
			out = append(out, fmt.Sprintf("warning: [[static]] %s: the proxy's user %s cannot enter %s (%v); its files will answer 403 or 404", st.URL, m.cfg.ProxyCred.Username, st.Dir, err))
		}
	}
	return out
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
