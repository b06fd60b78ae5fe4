package master

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
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
	cfg  config.App
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
		opts.Output(a.Key(), 0, w)
	}
	opts.Cgroup = s.m.appCgroup(a)
	app := supervisor.NewApp(a, opts)
	ctx, cancel := context.WithCancel(context.Background())
	e := &appEntry{app: app, cfg: a, log: alog, stop: cancel, done: make(chan struct{})}
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
		alog.Line(0, msg)
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
	s.m.reloader.appsChanged()
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
		running = append(running, s.apps[k].cfg)
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
		running = append(running, s.apps[k].cfg)
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

// --- reloads that re-read files (system mode) ---

// keyOf is the app key a refused file would have had.
func keyOf(r config.Refusal) string {
	return r.User + "/" + strings.TrimSuffix(filepath.Base(r.Path), ".toml")
}

// reloadFromFile is pyctl reload APP in system mode: re-read the app's
// file and act on what it says now. A new file starts its app, a deleted
// one stops it, a broken one is refused and the running version keeps
// serving (S6, S10). Claims are decided exactly as pyctl check and a
// restart decide them: against the ledger, so a new file never takes a
// domain another app holds (U3). The admin config is not re-read: a
// tenant's reload applies no pending edit of pyhost.toml (that is
// reload-config's).
func (m *Master) reloadFromFile(ctx context.Context, c control.Caller, name string, progress func(string)) error {
	key, err := m.keyFor(c, name)
	if err != nil {
		return err
	}
	if err := m.mayAct(c, key); err != nil {
		return err
	}
	m.set.reloading.Lock()
	locked := true
	defer func() {
		if locked {
			m.set.reloading.Unlock()
		}
	}()
	if m.set.isPending(key) {
		return &control.ReloadError{App: name, Reason: "a reload of this app is already running"}
	}
	progress("re-reading the app file")
	_, d, err := m.catalog.Rescan(m.set.scan(key), false)
	if err != nil {
		return &control.ReloadError{App: name, Reason: "the daemon's config cannot be read; nothing changed", Detail: err.Error()}
	}
	m.set.mergeRefused(d)
	var next *config.App
	for i := range d.Apps {
		if d.Apps[i].Key() == key {
			next = &d.Apps[i]
		}
	}
	if next != nil && next.AdminDeployed && c.UID != 0 {
		return fmt.Errorf("%w: %s is deployed by the admin; only root may reload it", control.ErrAccessDenied, key)
	}
	app := m.set.get(key)
	for _, r := range d.Refused {
		// Once the app's file is admitted, another file of its name (a
		// user's beside the admin's) refused is no refusal of it.
		if next != nil {
			break
		}
		if keyOf(r) == key || (app != nil && r.Path == m.set.config(key).File) {
			return &control.ReloadError{App: name, Reason: "the app file was refused; the running version (if any) keeps serving", Detail: r.Err.Error()}
		}
	}
	switch {
	case next == nil && app == nil:
		return fmt.Errorf("%w: %s (no app file for it)", control.ErrNoSuchApp, name)
	case next == nil:
		progress("the app file is gone; stopping the app")
		m.set.remove(key)
		m.set.commitClaims(d.Held)
		return nil
	case app == nil:
		progress("new app file; starting the app")
		for _, w := range m.staticWarnings(*next) {
			progress(w)
		}
		if err := m.set.add(*next); err != nil {
			return &control.ReloadError{App: name, Reason: err.Error()}
		}
		m.set.commitClaims(d.Held)
		if next.Disabled {
			progress("enabled = false: loaded, its claims held, not started (pyctl start starts it)")
			return nil
		}
		m.set.reloading.Unlock()
		locked = false
		return startedError(name, m.set.get(key).WaitStarted(ctx))
	}
	// The roll may take up to startup_timeout (the tenant's own): its new
	// claims are held from now on, and the others may decide meanwhile.
	m.set.setPending(key, *next, true)
	m.set.commitClaims(d.Held)
	m.set.reloading.Unlock()
	locked = false
	err = m.roll(ctx, app, *next, progress)
	m.set.reloading.Lock()
	locked = true
	m.set.setPending(key, config.App{}, false)
	m.set.commitClaims(d.Held)
	return err
}

// startedError turns a new app's WaitStarted result into pyctl's error.
func startedError(name string, err error) error {
	if err == nil {
		return nil
	}
	rerr := &control.ReloadError{App: name, Reason: "started, but no worker became ready: " + err.Error()}
	var ie *daemons.ImportError
	var we *supervisor.WarmupError
	switch {
	case errors.As(err, &ie):
		rerr.Detail = strings.TrimRight(ie.Traceback, "\n")
	case errors.As(err, &we):
		rerr.Detail = strings.TrimRight(we.Traceback, "\n")
	}
	return rerr
}

// mayAct refuses a user's action on an app the admin deployed for them
// (admin_dir): they see it, its status and its logs, but its life is the
// admin's to decide.
func (m *Master) mayAct(c control.Caller, key string) error {
	if c.UID == 0 {
		return nil
	}
	if cfg := m.set.config(key); cfg.AdminDeployed {
		return fmt.Errorf("%w: %s is deployed by the admin (admin_dir); only root may reload, restart, stop or start it", control.ErrAccessDenied, key)
	}
	return nil
}

// keyFor turns what the caller typed into an app key, checking that the
// caller owns it (or is root): "blog" is the caller's own app,
// "alice/blog" names another user's (root only).
func (m *Master) keyFor(c control.Caller, name string) (string, error) {
	if c.UID != 0 {
		if err := m.catalog.Allowed(c.UID); err != nil {
			return "", err
		}
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

// reloadConfig re-reads the admin config and every app file (SIGHUP,
// pyctl reload-config): new apps start, removed ones stop, changed ones
// roll; a file that became invalid is reported and its running version
// keeps serving (S10). progress hears what it does to each app, then a
// summary; the error, if any, says what did not happen (the admin config
// is broken or a listener cannot be bound: nothing changed; starts or
// rolls that failed).
func (m *Master) reloadConfig(ctx context.Context, progress func(string)) (err error) {
	if !m.catalog.Rereads() {
		return errors.New("express mode has no config to reload")
	}
	defer func() { m.noteReload(err); m.countReload(err) }() // for pyctl status and the metrics
	m.set.reloading.Lock()
	defer m.set.reloading.Unlock()
	admin, d, err := m.catalog.Rescan(m.set.scan(""), true)
	if err != nil {
		return fmt.Errorf("%w; nothing changed, every app keeps running as it was", err)
	}
	// The certificates are read and checked first, but put in force
	// only once the listeners changed: a reload that fails on a port
	// changes nothing. A broken pair keeps the running set (T3) and
	// fails the reload's exit status, but not the rest of it, unless
	// there is no running set to keep while TLS listeners want one.
	pairs, certErr := readCertPairs(admin.TLS)
	if certErr != nil && len(m.servedCerts()) == 0 && len(admin.Proxy.TLSListen) > 0 {
		return fmt.Errorf("%w; nothing changed, every app keeps running as it was", certErr)
	}
	// Listeners first, all or nothing: a port that cannot be bound
	// stops the reload before anything changes, the admin config too.
	added, removed, err := m.setListen(admin.Proxy.Listen, admin.Proxy.TLSListen)
	if err != nil {
		return fmt.Errorf("[proxy] listen: %w; nothing changed, the proxy listens where it did and every app keeps running as it was", err)
	}
	for _, a := range added {
		progress("now listening on " + a)
	}
	for _, a := range removed {
		progress("no longer listening on " + a + " (its connections finish first)")
	}
	if m.setProxyProtocol(admin.Proxy.ProxyProtocol) {
		progress(fmt.Sprintf("proxy_protocol is now %v for new connections", prefixStrings(admin.Proxy.ProxyProtocol)))
	}
	var sum reloadSummary
	if certErr != nil {
		sum.certs = certErr
		progress(fmt.Sprintf("%v; the certificates in use stay", certErr))
		m.log.Error("certificates not reloaded; the ones in use stay", "error", certErr)
	} else {
		m.setCerts(pairs)
		// Applied by the time reload-config returns: the proxy loads
		// them before the next table, and this waits for that table.
		wctx, cancel := context.WithTimeout(ctx, ackTimeout)
		werr := m.waitApplied(wctx, m.sendTable())
		cancel()
		if werr != nil && len(pairs) > 0 {
			progress("the proxy did not confirm it loaded the certificates in time")
		} else if len(pairs) > 0 {
			progress(fmt.Sprintf("certificates loaded: %s", count(len(pairs), "[[tls]] pair")))
		}
	}
	for _, line := range m.restartOnly(admin) { // master/daemoninfo.go
		progress(line)
	}
	m.catalog.Adopt(admin)
	m.reloadACME(progress) // [proxy] acme as adopted: master/acme.go
	m.set.setRefused(d.Refused)
	m.markChanged() // the admin's default_app may have changed alone
	for _, r := range d.Refused {
		sum.refused++
		progress("refused " + r.Error())
		m.log.Warn("app file refused", "file", r.Path, "user", r.User, "reason", r.Err)
	}
	want := map[string]config.App{}
	for _, a := range d.Apps {
		want[a.Key()] = a
	}
	for _, app := range m.set.all() {
		key := app.Key()
		if _, ok := want[key]; ok {
			continue
		}
		why, stop := m.stopReason(admin, key, d.Refused)
		if !stop {
			continue
		}
		progress("stopping " + key + ": " + why)
		m.set.remove(key)
		sum.stopped++
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	result := func(key string, err error, ok string) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			progress(fmt.Sprintf("%s: %v", key, err))
			sum.failed++
			return
		}
		progress(ok)
	}
	for _, a := range d.Apps {
		key := a.Key()
		app := m.set.get(key)
		switch {
		case m.set.isPending(key):
			progress(key + ": a pyctl reload of it is underway; left to that")
			sum.unchanged++
		case app == nil:
			progress("starting " + key)
			for _, w := range m.staticWarnings(a) {
				progress(w)
			}
			if err := m.set.add(a); err != nil {
				progress(fmt.Sprintf("cannot start %s: %v", key, err))
				sum.failed++
				continue
			}
			sum.started++
			if a.Disabled {
				progress(key + ": enabled = false: loaded, its claims held, not started")
				continue
			}
			app := m.set.get(key)
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := app.WaitStarted(ctx)
				if err != nil {
					err = fmt.Errorf("started, but no worker became ready (it is retried with backoff): %w", err)
				}
				result(key, err, "started "+key)
			}()
		case !reflect.DeepEqual(m.set.config(key), a):
			progress("rolling " + key + " onto its changed settings")
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := m.roll(ctx, app, a, nil)
				if err != nil {
					err = fmt.Errorf("reload failed, its running version keeps serving: %w", err)
				} else {
					mu.Lock()
					sum.rolled++
					mu.Unlock()
				}
				result(key, err, "rolled "+key)
			}()
		default:
			sum.unchanged++
		}
	}
	wg.Wait()
	m.set.commitClaims(d.Held)
	progress(sum.String())
	return sum.err()
}

// stopReason decides whether a running app that a scan did not admit
// stops, and why. Its file refused for what the file says (a typo, a
// domain or quota its own edit would pass, a conflict) keeps it running
// as it is; only the admin's policy no longer allowing what runs (its
// user unlisted, a domain it serves no longer theirs), or its file gone,
// stops it.
func (m *Master) stopReason(admin config.Admin, key string, refused []config.Refusal) (string, bool) {
	cfg := m.set.config(key)
	if err := config.RunningAllowed(admin, cfg); err != nil {
		return err.Error(), true
	}
	for _, r := range refused {
		if keyOf(r) == key || (cfg.File != "" && r.Path == cfg.File) {
			return "", false
		}
	}
	return "its app file is gone", true
}

// reloadSummary counts what a reload-config did.
type reloadSummary struct {
	started, rolled, stopped, unchanged, refused, failed int
	// certs is why the [[tls]] certificates were not reloaded; nil when
	// they were.
	certs error
}

func (s reloadSummary) String() string {
	out := fmt.Sprintf("%d started, %d rolled, %d stopped, %d unchanged; %d app files refused, %d failed to start or roll",
		s.started, s.rolled, s.stopped, s.unchanged, s.refused, s.failed)
	if s.certs != nil {
		out += fmt.Sprintf("; certificates not reloaded, the ones in use stay: %v", s.certs)
	}
	return out
}

// err is nil when every app the files ask for runs as they say. A
// refused file is not a failure of the reload: it is reported above and
// by pyhostd check, and it is the steady state while its owner has not
// fixed it, so a config-management handler running reload-config does not
// fail for a tenant's typo. An app that could not start or roll is.
//
// A certificate that could not be reloaded is a failure too: it is the
// admin's own file, and a renewal hook running reload-config must see
// that the renewed certificate is not served.
func (s reloadSummary) err() error {
	switch {
	case s.failed > 0 && s.certs != nil:
		return fmt.Errorf("not everything was applied: %d apps failed to start or roll, and the certificates were not reloaded (see above)", s.failed)
	case s.certs != nil:
		return fmt.Errorf("not everything was applied: the certificates were not reloaded, the ones in use stay: %w", s.certs)
	case s.failed > 0:
		return fmt.Errorf("not everything was applied: %d apps failed to start or roll (see above); they keep running as they were, if they ran", s.failed)
	}
	return nil
}

// count is "1 app", "2 apps".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// ReloadConfig implements control.Backend (root only).
func (m *Master) ReloadConfig(ctx context.Context, c control.Caller, progress func(string)) error {
	if c.UID != 0 {
		return fmt.Errorf("%w: only root may reload the daemon's config", control.ErrAccessDenied)
	}
	return m.reloadConfig(context.WithoutCancel(ctx), progress)
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
