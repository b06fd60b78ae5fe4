// Package syscatalog is system mode's catalog of apps (`pyhostd run`):
// the admin config in force (pyhost.toml), the app files of every user it
// lists, and the policy that follows from both: who may use the control
// socket, which app answers a Host no app claims, whether a file may run
// for its owner, each user's memory limit. It implements master.Catalog;
// the master asks it and never which mode it runs in.
//
// The admin config changes only by reload-config (Adopt), as a whole;
// every question reads the config in force.
package syscatalog

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/master"
	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/proxymsg"
)

// Options are what a Catalog reads and checks with. The zero value of
// each func field is not usable; cmd/pyhostd gives the real ones, tests
// fakes.
type Options struct {
	// Path is the admin config file; Load reads it.
	Path string
	Load func(path string) (config.Admin, error)
	// Lookup resolves a user name or uid (privdrop.Lookup).
	Lookup func(name string) (privdrop.Credential, error)
	// FindPython resolves an app's python for its owner (as the app
	// would start it).
	FindPython func(name string, cred privdrop.Credential) (string, error)
	// PythonKey is what FindPython's answer depends on besides the
	// name (the owner's PATH): apps of one user mostly name the same
	// python, looked up once per scan.
	PythonKey func(cred privdrop.Credential) string
	// CheckAsUser checks, as cred, that it may do what want asks of each
	// path (privdrop.CheckManyAsUserContext), until ctx ends (its helper
	// is then killed); one call a user per scan, bounded by
	// config.PathCheckTimeout.
	CheckAsUser config.ContextBatchPathChecker
	// Problems is what the system cannot do of admin with apps (a start
	// refuses them, and so does reload-config); nil when none.
	Problems func(admin config.Admin, apps []config.App) error
	// Proxy is the proxy's user, for [proxy] acme's files.
	Proxy privdrop.Credential
}

// Catalog is system mode's master.Catalog.
type Catalog struct {
	opts       Options
	initial    master.Initial
	claimsFile string // where the start's data_dir keeps the ledger

	mu     sync.Mutex
	admin  config.Admin    // guarded by mu: the admin config in force
	listed map[uint32]bool // guarded by mu: the uids admin lists
}

var _ master.Catalog = (*Catalog)(nil)
var _ master.UserLimiter = (*Catalog)(nil)

// New is the catalog of admin, in force now, whose start-up scan found d
// against the ledger saved before this start.
func New(admin config.Admin, d config.Discovery, saved config.Ledger, opts Options) *Catalog {
	c := &Catalog{opts: opts, claimsFile: ClaimsFile(admin)}
	c.initial = master.Initial{Apps: d.Apps, Refused: d.Refused, Claims: config.NextLedger(saved, d.Apps, d.Held)}
	c.admin, c.listed = admin, c.listedUIDs(admin)
	return c
}

// ClaimsFile is where the daemon of admin keeps its claims ledger.
func ClaimsFile(admin config.Admin) string {
	return filepath.Join(admin.Daemon.DataDir, config.LedgerFile)
}

// Scan finds the apps admin allows, deciding claims against s, with
// each app's paths checked as its owner (one helper per user for all of
// its apps' paths, each app answered on its own) and its python found.
// An app whose python cannot be found is refused.
func Scan(admin config.Admin, s config.Scan, opts Options) config.Discovery {
	d := config.DiscoverBatchContext(context.Background(), admin, opts.Lookup, opts.CheckAsUser, s)
	type found struct {
		path string
		err  error
	}
	pythons := map[string]found{}
	apps := d.Apps[:0]
	for _, a := range d.Apps {
		k := a.Python + "\x00" + opts.PythonKey(a.Cred)
		f, ok := pythons[k]
		if !ok {
			f.path, f.err = opts.FindPython(a.Python, a.Cred)
			pythons[k] = f
		}
		if f.err != nil {
			d.Refused = append(d.Refused, config.Refusal{Path: a.File, User: a.Cred.Username, Err: fmt.Errorf("python: %w", f.err)})
			continue
		}
		a.Python = f.path
		apps = append(apps, a)
	}
	d.Apps = apps
	return d
}

// current is the admin config in force.
func (c *Catalog) current() config.Admin {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.admin
}

// listedUIDs are the uids of the users admin lists.
func (c *Catalog) listedUIDs(admin config.Admin) map[uint32]bool {
	out := map[uint32]bool{}
	for name := range admin.Users {
		if cred, err := c.opts.Lookup(name); err == nil {
			out[cred.UID] = true
		}
	}
	return out
}

// Mode implements master.Catalog.
func (*Catalog) Mode() string { return "system" }

// Initial implements master.Catalog.
func (c *Catalog) Initial() master.Initial { return c.initial }

// Rereads implements master.Catalog: app files come and go.
func (*Catalog) Rereads() bool { return true }

// Rescan implements master.Catalog. Only reload-config re-reads
// pyhost.toml; a tenant's reload judges by the config in force. A broken
// admin file keeps everything as it runs, and so does one asking what a
// start would refuse.
func (c *Catalog) Rescan(s config.Scan, reread bool) (config.Admin, config.Discovery, error) {
	admin := c.current()
	if reread {
		var err error
		if admin, err = c.opts.Load(c.opts.Path); err != nil {
			return config.Admin{}, config.Discovery{}, err
		}
	}
	d := Scan(admin, s, c.opts)
	if reread {
		if err := c.opts.Problems(admin, d.Apps); err != nil {
			return config.Admin{}, config.Discovery{}, err
		}
	}
	return admin, d, nil
}

// Adopt implements master.Catalog.
func (c *Catalog) Adopt(admin config.Admin) {
	listed := c.listedUIDs(admin) // user lookups, outside the lock
	c.mu.Lock()
	defer c.mu.Unlock()
	c.admin, c.listed = admin, listed
}

// SaveClaims implements master.Catalog: the ledger is kept in data_dir
// as the start-up configured it (data_dir is restart-only).
func (c *Catalog) SaveClaims(l config.Ledger) error {
	if err := l.Save(c.claimsFile); err != nil {
		return fmt.Errorf("%s: %w", c.claimsFile, err)
	}
	return nil
}

// Allowed implements master.Catalog: a user the admin config in force
// lists (U5).
func (c *Catalog) Allowed(uid uint32) error {
	c.mu.Lock()
	ok := c.listed[uid]
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: uid %d is not a user the admin allows to host apps (see [users] in pyhost.toml)", control.ErrAccessDenied, uid)
	}
	return nil
}

// DefaultApp implements master.Catalog: [proxy] default_app in force.
func (c *Catalog) DefaultApp() string { return c.current().Proxy.DefaultApp }

// CheckFile implements master.Catalog. The caller must be able to read
// the file themselves: the daemon never reads, or quotes in an error,
// what they could not. Root's check is for whoever the file would run
// as.
func (c *Catalog) CheckFile(uid uint32, file string, running []config.App, held config.Ledger) error {
	// Allowed let only root and listed users, who have entries, this
	// far: a failed lookup is the user database's, said as it is.
	caller, err := c.opts.Lookup(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return fmt.Errorf("%w: uid %d cannot be looked up now, so no file can be checked for it: %v", control.ErrAccessDenied, uid, err)
	}
	// The file itself on a hung mount must not hold the check for ever
	// either: the same bound, the helper killed past it.
	ctx, cancel := context.WithTimeout(context.Background(), config.PathCheckTimeout)
	err = c.opts.CheckAsUser(ctx, caller, []map[string]uint32{{file: privdrop.Read}})[0]
	cancel()
	if err != nil {
		return err
	}
	// Every path of the file in one helper, bounded (config.PathCheckTimeout).
	return config.CheckAppFileContext(context.Background(), c.current(), caller, file, running, held, c.opts.Lookup, c.opts.CheckAsUser)
}

// KeepFailed implements master.Catalog: one tenant's broken app must not
// take down the others'.
func (*Catalog) KeepFailed() bool { return true }

// ACME implements master.Catalog: [proxy] acme in force.
func (c *Catalog) ACME() (*proxymsg.ACME, error) {
	return master.ACMESetup(c.current(), c.opts.Proxy)
}

// UserMaxMemory implements master.UserLimiter: [users.NAME] max_memory
// in force.
func (c *Catalog) UserMaxMemory(user string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.admin.Users[user].MaxMemory
}
