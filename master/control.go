// The control backend: what pyctl asks of the master (control.Backend
// and its optional interfaces), each verb authorized by authorize.

package master

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pyhost/pyhost/applog"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/supervisor"
	"github.com/pyhost/pyhost/workerproc"
)

// verb is what a control request asks, as authorize judges it.
type verb int

const (
	seeApp       verb = iota // status, logs, metrics of an app
	changeApp                // reload, restart, stop, start an app
	checkFile                // pyctl check of an app file
	daemonOwn                // what is the daemon's own: its logs, why its reload failed
	daemonConfig             // re-read the daemon's config (reload-config)
)

// authorize says why c may not do v (to app, when not nil), nil if it
// may. Every control verb asks it: the control socket's rules are these
// and no others. Root may do everything, and only root re-reads the
// daemon's config; the daemon's own user may do its own business
// (reopen its logs, read why a reload failed). A user the catalog
// allows (in express mode whoever reaches the socket) sees and changes
// their own apps (the daemon's user every app), sees but does not
// change an app the admin deployed for them (admin_dir), and checks
// files. An app that is not the caller's does not exist for them: the
// answer is ErrNoSuchApp, as for a name nobody has.
func (m *Master) authorize(c control.Caller, v verb, app *config.App) error {
	if c.UID == 0 {
		return nil
	}
	switch v {
	case daemonOwn:
		if c.UID == m.ownerUID {
			return nil
		}
		return fmt.Errorf("%w: only root may reopen the daemon's logs", control.ErrAccessDenied)
	case daemonConfig:
		return fmt.Errorf("%w: only root may reload the daemon's config", control.ErrAccessDenied)
	}
	if err := m.catalog.Allowed(c.UID); err != nil {
		return err
	}
	if app == nil {
		return nil
	}
	if c.UID != m.ownerUID && c.UID != app.Cred.UID {
		return fmt.Errorf("%w: %s", control.ErrNoSuchApp, app.Key())
	}
	if v == changeApp && app.AdminDeployed {
		return fmt.Errorf("%w: %s is deployed by the admin (admin_dir); only root may reload, restart, stop or start it", control.ErrAccessDenied, app.Key())
	}
	return nil
}

// find is the apps c may see called name ("user/app" or "app"; "" for
// every one).
func (m *Master) find(c control.Caller, name string) ([]*supervisor.App, error) {
	if err := m.authorize(c, seeApp, nil); err != nil {
		return nil, err
	}
	var out []*supervisor.App
	for _, app := range m.set.all() {
		key := app.Key()
		cfg := m.set.config(key)
		if m.authorize(c, seeApp, &cfg) != nil {
			continue
		}
		if name == "" || name == key || name == cfg.Name {
			out = append(out, app)
		}
	}
	if name != "" && len(out) == 0 {
		return nil, fmt.Errorf("%w: %s", control.ErrNoSuchApp, name)
	}
	return out, nil
}

// findOne is find for operations on exactly one app.
func (m *Master) findOne(c control.Caller, name string) (*supervisor.App, error) {
	apps, err := m.find(c, name)
	if err != nil {
		return nil, err
	}
	if len(apps) != 1 {
		return nil, fmt.Errorf("%w: name one app", control.ErrNoSuchApp)
	}
	return apps[0], nil
}

// Status implements control.Backend.
func (m *Master) Status(ctx context.Context, c control.Caller, name string) ([]control.AppStatus, error) {
	apps, err := m.find(c, name)
	if errors.Is(err, control.ErrNoSuchApp) && m.refusedNamed(c, name) {
		// Not running, but its file was refused: the row below says why.
		apps, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]control.AppStatus, 0, len(apps))
	now := time.Now()
	for _, app := range apps {
		st, err := app.Status(ctx)
		if err != nil {
			return nil, err
		}
		as := control.AppStatus{
			Name: st.Config.Name, User: st.Config.Cred.Username, State: string(st.State),
			Domains: st.Config.Domains, URLPrefix: st.Config.URLPrefix,
			Processes: st.Config.Processes, Threads: st.Config.Threads,
			Restarts: st.Restarts, LastError: fewLines(st.LastError, statusLines, ""), LastLog: lastLines(st.LastLog, statusLines),
			AdminDeployed: st.Config.AdminDeployed,
		}
		containmentStatus(&as, st)
		for _, w := range st.Workers {
			ws := control.WorkerStatus{
				ID: w.Seq, PID: w.Process.PID(), State: string(w.State), Threads: w.Threads,
				StartedAt: w.StartedAt, AgeSeconds: now.Sub(w.StartedAt).Seconds(),
			}
			if s, err := w.Process.Stats(); err == nil {
				ws.RSSBytes, ws.CPUSeconds = s.RSS, s.CPUSeconds
			}
			m.statsMu.Lock()
			ps := m.stats[w.ID]
			m.statsMu.Unlock()
			ws.Requests, ws.Busy = ps.Served, ps.Busy
			as.Workers = append(as.Workers, ws)
		}
		sort.Slice(as.Workers, func(i, j int) bool { return as.Workers[i].ID < as.Workers[j].ID })
		out = append(out, as)
	}
	// Files that were refused, shown to their owners with the reason: on
	// the running app's own row when its newer file was refused, else as
	// a row of their own.
	for _, r := range m.set.refusedFor(c, m.ownerUID) {
		key := keyOf(r)
		merged := false
		for i := range out {
			// The running app's own file, not another of the same name
			// (a user's file beside the admin's app).
			if f := m.set.config(key).File; out[i].User+"/"+out[i].Name == key && (f == "" || f == r.Path) {
				out[i].LastError = "its app file was refused; this is the previous version: " + fewLines(r.Err.Error(), statusLines, checkHint(r.Path))
				merged = true
			}
		}
		if !merged && (name == "" || name == key || name == strings.TrimSuffix(filepath.Base(r.Path), ".toml")) {
			out = append(out, control.AppStatus{
				Name: strings.TrimSuffix(filepath.Base(r.Path), ".toml"), User: r.User, State: control.AppRefused,
				LastError: fewLines(r.Err.Error(), statusLines, checkHint(r.Path)),
			})
		}
	}
	return out, nil
}

// statusLines bounds what pyctl status shows of an app's last error and
// last log lines (D7): the reason at a glance; pyctl logs and pyctl
// check have the rest.
const statusLines = 6

// fewLines is s cut to its first n lines, with a last one saying how
// many more there are and where they are (hint, or pyctl logs).
func fewLines(s string, n int, hint string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return s
	}
	if hint == "" {
		hint = "pyctl logs has the rest"
	}
	return strings.Join(lines[:n], "\n") + fmt.Sprintf("\n… %d more lines (%s)", len(lines)-n, hint)
}

// lastLines is the last n of lines: a traceback ends with its exception.
func lastLines(lines []string, n int) []string {
	if len(lines) <= n {
		return lines
	}
	return lines[len(lines)-n:]
}

// checkHint says where a refused file's every problem is listed.
func checkHint(path string) string { return "pyctl check " + path + " lists them all" }

// refusedNamed reports whether c may see a refused file of an app called
// name ("blog" or "alice/blog").
func (m *Master) refusedNamed(c control.Caller, name string) bool {
	for _, r := range m.set.refusedFor(c, m.ownerUID) {
		if name == keyOf(r) || name == strings.TrimSuffix(filepath.Base(r.Path), ".toml") {
			return true
		}
	}
	return false
}

// Reload implements control.Backend: the app's settings are re-read (in
// express mode they are fixed) and its workers rolled onto fresh imports.
func (m *Master) Reload(ctx context.Context, c control.Caller, name string, progress func(string)) error {
	if m.catalog.Rereads() {
		return m.reloadFromFile(ctx, c, name, progress)
	}
	app, err := m.findOne(c, name)
	if err != nil {
		return err
	}
	cfg := app.Config()
	if err := m.authorize(c, changeApp, &cfg); err != nil {
		return err
	}
	return m.roll(ctx, app, cfg, progress)
}

// roll rolls app onto cfg and reports a refusal as a ReloadError; cfg
// with enabled = false stops it instead (the file's word).
func (m *Master) roll(ctx context.Context, app *supervisor.App, cfg config.App, progress func(string)) error {
	m.warnStatic(app, cfg, progress)
	if cfg.Disabled {
		// enabled = false (D5): the file is taken, the app stays (or
		// becomes) stopped; pyctl start starts it on these settings,
		// which its supervisor keeps (App.Disable).
		say := func(line string) {
			if progress != nil {
				progress(line)
			}
		}
		say("enabled = false in " + cfg.File + ": the app stays stopped (pyctl start starts it until the daemon restarts)")
		if err := app.Disable(context.WithoutCancel(ctx), cfg); err != nil {
			return &control.ReloadError{App: cfg.Name, Reason: "cannot stop it: " + err.Error()}
		}
		m.reloader.appsChanged() // its trigger paths may have moved
		return nil
	}
	return m.replace(ctx, app, cfg, progress)
}

// replace rolls app's workers onto cfg, whatever cfg says of enabled.
func (m *Master) replace(ctx context.Context, app *supervisor.App, cfg config.App, progress func(string)) error {
	// The reload goes on if pyctl is interrupted: a half-done roll is
	// worse than a finished one nobody watched.
	err := app.Reload(context.WithoutCancel(ctx), cfg, progress)
	if err == nil {
		// cfg is in force now (App.Config): its trigger paths may
		// have moved.
		m.reloader.appsChanged()
	}
	return failed(cfg.Name, "", "", err)
}

// warnStatic says what of cfg's static mounts cannot be served; at
// every reload, not only the first start: a home closed since then
// turns static files into 403s with no other word.
func (m *Master) warnStatic(app *supervisor.App, cfg config.App, progress func(string)) {
	for _, w := range m.staticWarnings(cfg) {
		if progress != nil {
			progress(w)
		}
		if l := m.set.logOf(app.Key()); l != nil {
			l.Line(applog.NotePID, w)
		}
	}
}

// Act implements control.Backend: restart (a rolling replacement of
// every worker with the same settings), stop and start (of an app that
// runs or is starting: nothing, said so).
func (m *Master) Act(ctx context.Context, c control.Caller, action control.Action, name string, progress func(string)) error {
	app, err := m.findOne(c, name)
	if errors.Is(err, control.ErrNoSuchApp) && m.refusedNamed(c, name) {
		// pyctl status lists it (refused): "no such app" alone would
		// contradict it. Still no such app: there is none to act on.
		return fmt.Errorf("%w: %s: its file was refused, so no app runs to %s (pyctl status %s says why; fix the file, then pyctl reload %s)", control.ErrNoSuchApp, name, action, name, name)
	}
	if err != nil {
		return err
	}
	cfg := app.Config() // the settings in force: its supervisor's
	if err := m.authorize(c, changeApp, &cfg); err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	st, err := app.Status(ctx)
	if err != nil {
		return err
	}
	switch action {
	case control.ActionRestart:
		// Same settings: the file is not re-read (that is reload). A
		// disabled app that pyctl start started is replaced as any other:
		// restart is no word about its file (roll would stop it again).
		if cfg.Disabled && st.State != supervisor.AppStopped {
			m.warnStatic(app, cfg, progress)
			return m.replace(ctx, app, cfg, progress)
		}
		return m.roll(ctx, app, cfg, progress)
	case control.ActionStop:
		progress("stopping every worker (each finishes its requests first)")
		if err := app.Stop(ctx); err != nil {
			return err
		}
		progress(stopLasts(cfg, m.catalog.Rereads()))
		return nil
	case control.ActionStart:
		return m.start(ctx, app, cfg, st, name, progress)
	}
	return fmt.Errorf("unknown action %q", action)
}

// start is pyctl start of app, whose settings in force are cfg and
// whose state st: what there is to start, said as it is.
func (m *Master) start(ctx context.Context, app *supervisor.App, cfg config.App, st supervisor.Status, name string, progress func(string)) error {
	switch st.State {
	case supervisor.AppRunning, supervisor.AppStarting:
		// Nothing to start, unless a worker died, or could not be
		// spawned, and its restart waits out a back-off (it is not
		// failing yet, or a slow crash loop never is): the supervisor's
		// start retries that now, as a failing app, on the settings in
		// force (enabled = false kept), and says when it did nothing. A
		// start is no reload: no file is re-applied, no worker replaced.
		err := app.Start(ctx)
		if errors.Is(err, supervisor.ErrAlreadyStarted) {
			return alreadyStarted(st.State, progress)
		}
		if err == nil {
			progress("a worker of it had died or could not start, and its restart was waiting out a back-off: started now")
		}
		return failed(name, "", "", err)
	case supervisor.AppReloading:
		// A roll is under way: it serves on its old workers (and
		// does whatever the roll ends with), or a reload is starting
		// it from stopped and decides. Either way there is nothing
		// for a start to do; it said "starting", then "start done".
		if serving(st) {
			progress("already running, and a roll of it is under way; nothing to do")
			return control.ErrNothingToDo
		}
		return failed(name, "", "", supervisor.ErrReloadRunning)
	}
	if !cfg.Disabled {
		progress("starting")
		return startedOr(st.State, app.Start(ctx), name, progress)
	}
	progress("starting; it stays disabled: enabled = false in " + cfg.File + " stops it again at the next daemon restart")
	if st.State == supervisor.AppStopped {
		// Started on the settings its file gave (a stopped app's
		// reload starts it), which may be newer than its workers':
		// its supervisor keeps them (App.Disable).
		return failed(name, "start", "", app.Reload(ctx, cfg, progress))
	}
	// Idle or failing since a start: its file's settings are in
	// force already.
	return startedOr(st.State, app.Start(ctx), name, progress)
}

// startedOr is the answer to a start that found app in state and got
// err: as failed, or nothing done when another start got there first.
func startedOr(state supervisor.AppState, err error, name string, progress func(string)) error {
	if errors.Is(err, supervisor.ErrAlreadyStarted) {
		return alreadyStarted(state, progress)
	}
	return failed(name, "", "", err)
}

// alreadyStarted says a start had nothing to do: control.ErrNothingToDo
// tells pyctl so, which says no "start done" then.
func alreadyStarted(state supervisor.AppState, progress func(string)) error {
	if state != supervisor.AppStarting {
		state = supervisor.AppRunning
	}
	progress(fmt.Sprintf("already %s; nothing to do (pyctl restart replaces its workers, pyctl reload rolls it onto fresh code)", state))
	return control.ErrNothingToDo
}

// serving reports whether any of st's workers takes requests.
func serving(st supervisor.Status) bool {
	for _, w := range st.Workers {
		if w.State == supervisor.WorkerReady {
			return true
		}
	}
	return false
}

// stopLasts is what pyctl stop says about how long the stop lasts (D5).
func stopLasts(cfg config.App, system bool) string {
	switch {
	case !system:
		return "stopped until pyctl start (or until serve exits)"
	case cfg.Disabled:
		return "stopped; enabled = false in " + cfg.File + " keeps it stopped across daemon restarts"
	case cfg.File != "":
		return "stopped until the next daemon restart; set enabled = false in " + cfg.File + " to keep it stopped"
	}
	return "stopped until the next daemon restart"
}

// Logs implements control.Backend from the app's log file.
func (m *Master) Logs(ctx context.Context, c control.Caller, name string, n int, follow bool, out func(string) error) error {
	app, err := m.findOne(c, name)
	if err != nil {
		return err
	}
	l := m.set.logOf(app.Key())
	if l == nil {
		return fmt.Errorf("%w: %s", control.ErrNoSuchApp, name)
	}
	return l.Tail(ctx, n, follow, out)
}

// Check implements control.Backend: the file at path, validated for the
// caller as the daemon would load it (pyctl check). Root, who has no
// apps, gets the answer for whoever the file would run as: the user an
// admin_dir file names, else the file's owner (config.CheckAppFile).
// The catalog resolves the caller: an express daemon, which has no
// policy, answers so to every uid, one with no passwd entry too.
func (m *Master) Check(ctx context.Context, c control.Caller, path string) error {
	if err := m.authorize(c, checkFile, nil); err != nil {
		return err
	}
	s := m.set.scan("") // the apps as they run, and the ledger
	err := m.catalog.CheckFile(c.UID, path, s.Running, s.Held)
	switch {
	case errors.Is(err, ErrNoPolicy) || errors.Is(err, control.ErrAccessDenied):
		// No answer about the file: why there is none, as it is.
		return err
	case errors.Is(err, config.ErrAdminDir) || errors.Is(err, config.ErrNotYours):
		// The daemon would not refuse it (it runs it for the user it
		// names, or its owner): it is not the caller's to check.
		return fmt.Errorf("%w: %v", control.ErrAccessDenied, err)
	}
	if err != nil {
		return &control.ReloadError{App: filepath.Base(path), Reason: "the daemon would refuse this file", Detail: err.Error()}
	}
	return nil
}

// ReloadConfig implements control.Backend (root only).
func (m *Master) ReloadConfig(ctx context.Context, c control.Caller, progress func(string)) error {
	if err := m.authorize(c, daemonConfig, nil); err != nil {
		return err
	}
	return m.reloadConfig(context.WithoutCancel(ctx), progress)
}

// keyFor turns what the caller typed into an app key, checking that the
// caller owns it (or is root): "blog" is the caller's own app,
// "alice/blog" names another user's (root only).
func (m *Master) keyFor(c control.Caller, name string) (string, error) {
	if err := m.authorize(c, changeApp, nil); err != nil {
		return "", err
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

// startedError turns a new app's WaitStarted result into pyctl's error.
func startedError(name string, err error) error {
	return failed(name, "", "started, but no worker became ready: ", err)
}

// failed is how pyctl hears that a roll or a start of app failed (op as
// control.ReloadError has it, "" for a reload), nil when err is: its
// reason, after prefix, and the traceback of the import or warm-up
// that failed, which pyctl prints below it. A roll that was aborted
// says why in its own words (supervisor.ReloadError).
func failed(app, op, prefix string, err error) error {
	if err == nil {
		return nil
	}
	out := &control.ReloadError{App: app, Op: op, Reason: prefix + err.Error()}
	var re *supervisor.ReloadError
	var ie *workerproc.ImportError
	var we *supervisor.WarmupError
	switch {
	case errors.As(err, &re):
		out.Reason, out.Detail = prefix+re.Reason, re.Traceback
	case errors.As(err, &ie):
		out.Detail = ie.Traceback
	case errors.As(err, &we):
		out.Detail = we.Traceback
	}
	out.Detail = strings.TrimRight(out.Detail, "\n")
	return out
}
