package master

import (
	"errors"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/proxymsg"
)

// Catalog is where the master's apps come from, and the policy that
// comes with them: who may use the control socket, which app answers a
// Host no app claims, whether a file may run for its owner, whether one
// failing app stops the daemon. The master asks it and never which mode
// it runs in. Two implement it: Express (pyhostd serve: one app, its
// settings fixed) and package syscatalog's (pyhostd run: every permitted
// user's app files, re-read on reload).
//
// Every method may be called from any goroutine.
type Catalog interface {
	// Mode is what pyctl version says the daemon is: "serve" or "system".
	Mode() string
	// Initial is what the daemon starts with.
	Initial() Initial
	// Rereads reports whether the apps' files can be re-read while the
	// daemon runs: pyctl reload APP then re-reads its file, SIGHUP and
	// pyctl reload-config re-read everything (Rescan), and new files are
	// watched for. When false the settings are fixed: reload rolls the
	// app onto the settings it has, SIGHUP rolls every app.
	Rereads() bool
	// Rescan re-reads every app file and decides against s (the ledger,
	// the apps as they run, the one app asked about). With reread it
	// re-reads the admin config first (reload-config), else it judges
	// by the one adopted last. An error means the admin config could not
	// be read or asks what a start would refuse, and nothing changes.
	// Only called when Rereads.
	Rescan(s config.Scan, reread bool) (config.Admin, config.Discovery, error)
	// Adopt makes admin the config in force (who is allowed, what
	// CheckFile judges by), once reload-config has applied its
	// listeners.
	Adopt(admin config.Admin)
	// SaveClaims keeps the claims ledger after every change, so that a
	// restart decides nothing anew.
	SaveClaims(l config.Ledger) error
	// Allowed says why uid, not root, may not use the control socket for
	// apps (it is no user the admin lets host apps), nil if it may.
	Allowed(uid uint32) error
	// DefaultApp names the app ("user/app") that answers a Host no app
	// claims, "" for none; asked anew for every routing table.
	DefaultApp() string
	// CheckFile validates one app file for the caller uid (pyctl check),
	// as the file would run for them, against the running apps and the
	// ledger. The catalog resolves the uid if it needs a user: a caller
	// with no passwd entry gets the catalog's own answer, not a failed
	// lookup's. ErrNoPolicy: it has no policy to check by.
	CheckFile(caller uint32, path string, running []config.App, held config.Ledger) error
	// KeepFailed reports whether the others keep serving when an app
	// cannot start; if not, the daemon exits instead.
	KeepFailed() bool
	// ACME is [proxy] acme as the proxy gets it, nil when off; asked
	// for each proxy start and reload-config (master/acme.go).
	ACME() (*proxymsg.ACME, error)
}

// UserLimiter is implemented by a Catalog that limits each user's apps
// together ([users.NAME] max_memory), in the user's cgroup.
type UserLimiter interface {
	// UserMaxMemory is user's limit in bytes, 0 for none; asked as the
	// user's apps run, so that reload-config applies it.
	UserMaxMemory(user string) int64
}

// Initial is what a Catalog starts the daemon with.
type Initial struct {
	Apps []config.App
	// Refused are the app files that were not loaded, shown to their
	// owners by pyctl status.
	Refused []config.Refusal
	// Claims is the claims ledger once Apps run (config.NextLedger of
	// the saved one and the start-up scan).
	Claims config.Ledger
}

// Express is the catalog of `pyhostd serve`: one app whose settings are
// fixed for the daemon's life, served to whoever may use its control
// socket (the socket's own mode decides), with no policy file.
type Express struct{ app config.App }

// NewExpress is the catalog of app alone.
func NewExpress(app config.App) *Express { return &Express{app: app} }

// ErrNoPolicy is what a Catalog's CheckFile returns when it has no
// policy to check a file against: pyctl check says it as it is, not as
// a refusal of the file.
var ErrNoPolicy = errors.New("this daemon runs one app in express mode; pyctl check validates against a system daemon's policy (try: pyhostd serve FILE)")

// Mode implements Catalog.
func (*Express) Mode() string { return "serve" }

// Initial implements Catalog.
func (e *Express) Initial() Initial { return Initial{Apps: []config.App{e.app}} }

// Rereads implements Catalog: serve's settings are its flags.
func (*Express) Rereads() bool { return false }

// errNoConfig is reload-config's answer when the catalog's settings are
// fixed (Rereads is false).
var errNoConfig = errors.New("express mode has no config to reload")

// Rescan implements Catalog; the master never calls it, as Rereads is
// false.
func (*Express) Rescan(config.Scan, bool) (config.Admin, config.Discovery, error) {
	return config.Admin{}, config.Discovery{}, errNoConfig
}

// Adopt implements Catalog: there is no admin config to adopt.
func (*Express) Adopt(config.Admin) {}

// SaveClaims implements Catalog: one app claims nothing from others, so
// nothing is kept.
func (*Express) SaveClaims(config.Ledger) error { return nil }

// Allowed implements Catalog: whoever reaches the socket is allowed.
func (*Express) Allowed(uint32) error { return nil }

// DefaultApp implements Catalog: the one app answers every Host anyway.
func (*Express) DefaultApp() string { return "" }

// CheckFile implements Catalog: there is no policy to check against,
// for any caller (a uid with no passwd entry too: nothing is looked up).
func (*Express) CheckFile(uint32, string, []config.App, config.Ledger) error {
	return ErrNoPolicy
}

// KeepFailed implements Catalog: serve exits when its app cannot start,
// so the user sees why at once.
func (*Express) KeepFailed() bool { return false }

// ACME implements Catalog: serve takes certificates from flags only.
func (*Express) ACME() (*proxymsg.ACME, error) { return nil, nil }

// userMaxMemory is the catalog's per-user memory limits, nil when it
// sets none (master/cgroup.go).
func (m *Master) userMaxMemory() func(user string) int64 {
	if u, ok := m.catalog.(UserLimiter); ok {
		return u.UserMaxMemory
	}
	return nil
}
