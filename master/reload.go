// Reloads that re-read files (system mode): pyctl reload APP and
// reload-config (SIGHUP).

package master

import (
	"context"
	"fmt"
	"sync"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
)

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
	if app := m.set.get(key); app != nil {
		running := app.Config()
		if err := m.authorize(c, changeApp, &running); err != nil {
			return err
		}
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
	if next != nil {
		if err := m.authorize(c, changeApp, next); err != nil {
			return err
		}
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

// reloadConfig re-reads the admin config and every app file (SIGHUP,
// pyctl reload-config): new apps start, removed ones stop, changed ones
// roll; a file that became invalid is reported and its running version
// keeps serving (S10). progress hears what it does to each app, then a
// summary; the error, if any, says what did not happen (the admin config
// is broken or a listener cannot be bound: nothing changed; starts or
// rolls that failed).
func (m *Master) reloadConfig(ctx context.Context, progress func(string)) (err error) {
	if !m.catalog.Rereads() {
		return errNoConfig
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
		case !m.set.config(key).Equal(a):
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
