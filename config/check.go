package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pyhost/pyhost/privdrop"
)

// CheckAppFile validates the app file at path as the daemon would load
// it, for caller (pyctl check), and returns every problem located in the
// file (FILE:LINE: KEY: MSG), or nil when the daemon would run it.
//
// A user's file is checked as Discover checks the files of their
// user_dir: trust (their own file, in directories only they or root may
// write), syntax, the admin's policy against their running apps (except
// one of the same name, which the file would replace), domain claims
// against the claims ledger held (every running app's, and those a
// broken file keeps; see Discover), and the paths it names with their
// rights.
//
// Root has no apps, so root checks a file for whoever it would run as: a
// file in admin_dir (however path reaches it: see adminDirPath) as
// Discover reads admin_dir (root's own file, which names its user; the
// app is that user's, and errors name the file in admin_dir), any other
// file as its owner
// (the owner of the path itself, a symlink included, as a link in a
// user_dir is that user's). A root-owned file outside admin_dir is
// refused: it would never run. A user's check of a file of admin_dir is
// refused as ErrAdminDir, saying so, and of another user's file as
// ErrNotYours; but a file of a user_dir (a link to admin_dir too) is
// checked as Discover reads it there, among its user's (for a user, in
// their own user_dir; for root, in its owner's). lookup resolves user names and numeric
// uids; check verifies paths with the app's owner's rights, all of them
// in one call (one helper process), which has PathCheckTimeout to answer.
func CheckAppFile(admin Admin, caller privdrop.Credential, path string, running []App, held Ledger, lookup func(string) (privdrop.Credential, error), check BatchPathChecker) error {
	return CheckAppFileContext(context.Background(), admin, caller, path, running, held, lookup, IgnoringContext(check))
}

// CheckAppFileContext is CheckAppFile with a check that honours ctx,
// which is bounded by PathCheckTimeout: past it, the check is stopped
// (privdrop.CheckManyAsUserContext kills its helper) and the file's
// problem names the timeout.
func CheckAppFileContext(ctx context.Context, admin Admin, caller privdrop.Credential, path string, running []App, held Ledger, lookup func(string) (privdrop.Credential, error), check ContextBatchPathChecker) error {
	if cred, ok := userDirFile(admin, caller, path, lookup); ok {
		// A file of a user_dir, a link to admin_dir too: Discover reads
		// it among its user's files, and so does the check.
		if err := checkUserFile(ctx, admin, cred, path, running, held, check); err != nil {
			return inFile(path, err)
		}
		return nil
	}
	path, inAdminDir := adminDirPath(admin, path)
	if inAdminDir && !caller.IsRoot() {
		// Not "not owned by you": the file is the admin's, deployed for
		// a user it names, and checking it is the admin's business (a
		// tenant cannot change it; pyctl status shows them its app).
		return &Error{File: path, Err: ErrAdminDir, Msg: fmt.Sprintf(
			"a file of admin_dir (%s): the admin deploys it, for the user it names, and only root checks it (sudo pyctl check, or pyhostd check)", admin.Apps.AdminDir)}
	}
	if err := checkAppFile(ctx, admin, caller, path, inAdminDir, running, held, lookup, check); err != nil {
		return inFile(path, err)
	}
	return nil
}

// userDirFile says whose user_dir path is a file of, as Discover finds
// it there: the caller's own; for root, that of the path's owner (the
// path itself, a link included).
func userDirFile(admin Admin, caller privdrop.Credential, path string, lookup func(string) (privdrop.Credential, error)) (privdrop.Credential, bool) {
	if !caller.IsRoot() {
		return caller, filepath.Dir(path) == admin.Apps.UserDirOf(caller.Home)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return caller, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return caller, false
	}
	owner, err := lookup(strconv.FormatUint(uint64(st.Uid), 10))
	if err != nil || filepath.Dir(path) != admin.Apps.UserDirOf(owner.Home) {
		return caller, false
	}
	return owner, true
}

// adminDirPath says whether path is an app file of admin_dir, where
// Discover finds it: a name in that directory, reached by any path (a
// symlinked directory, /etc itself a link), or a symlink to a file
// there (which Discover reads under its name in admin_dir). Symlinks
// are resolved before deciding, so root's check of a file the daemon
// reads from admin_dir answers as the daemon would. The path returned
// names the file as Discover does, in admin_dir as the admin file
// spells it, or is path unchanged when it is no file of admin_dir.
func adminDirPath(admin Admin, path string) (string, bool) {
	dir := admin.Apps.AdminDir
	if dir == "" {
		return path, false
	}
	if filepath.Dir(path) == filepath.Clean(dir) {
		return path, true
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return path, false // no admin_dir: no file is in it
	}
	if d, err := filepath.EvalSymlinks(filepath.Dir(path)); err == nil && d == real {
		return filepath.Join(dir, filepath.Base(path)), true
	}
	if p, err := filepath.EvalSymlinks(path); err == nil && filepath.Dir(p) == real {
		return filepath.Join(dir, filepath.Base(p)), true
	}
	return path, false
}

func checkAppFile(ctx context.Context, admin Admin, caller privdrop.Credential, path string, inAdminDir bool, running []App, held Ledger, lookup func(string) (privdrop.Credential, error), check ContextBatchPathChecker) error {
	if !caller.IsRoot() {
		if err := othersFile(admin, caller, path, lookup); err != nil {
			return err
		}
		return checkUserFile(ctx, admin, caller, path, running, held, check)
	}
	if inAdminDir {
		f, err := readAdminDirFile(admin, path, lookup)
		if err != nil {
			return err
		}
		return admitAmong(ctx, admin, f.Cred, f.App, f.Meta, running, held, check)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%w: cannot read the owner of %s", ErrUntrusted, path)
	}
	if st.Uid == 0 {
		return &Error{File: path, Err: privdrop.ErrRoot, Msg: fmt.Sprintf(
			"a file of root's is an app file only in admin_dir (%s), where it names the user its app runs as; elsewhere an app runs as the owner of its file, and never as root", admin.Apps.AdminDir)}
	}
	owner, err := lookup(strconv.FormatUint(uint64(st.Uid), 10))
	if err != nil {
		return fmt.Errorf("the file's owner, uid %d: %w", st.Uid, err)
	}
	return checkUserFile(ctx, admin, owner, path, running, held, check)
}

// checkUserFile checks path as an app file of cred's own.
func checkUserFile(ctx context.Context, admin Admin, cred privdrop.Credential, path string, running []App, held Ledger, check ContextBatchPathChecker) error {
	data, err := readTrusted(path, cred.UID, cred.Home)
	if err != nil {
		return err
	}
	app, meta, err := ParseAppFile(path, data, cred, admin.Defaults)
	if err != nil {
		return err
	}
	return admitAmong(ctx, admin, cred, app, meta, running, held, check)
}

// admitAmong applies the admin's policy to app, of cred, as if it joined
// the running apps in place of the one of its name, if any (unless that
// one is the admin's and app is not): cred's quota counts cred's other
// apps, and its domains must be free.
func admitAmong(ctx context.Context, admin Admin, cred privdrop.Credential, app App, meta AppFileMeta, running []App, held Ledger, check ContextBatchPathChecker) error {
	var mine []App
	// The ledger as the daemon keeps it: every claim a running app holds,
	// and those a broken file keeps, exactly what a reload decides by.
	var claims Claims
	for k, holder := range held {
		if holder != app.Key() {
			claims.reserve(k, holder)
		}
	}
	for _, a := range running {
		if a.Key() == app.Key() {
			// An admin_dir file owns its app's name (as in Discover).
			if a.AdminDeployed && !app.AdminDeployed {
				return policyErr{fmt.Errorf("the app %s is deployed by the admin (in %s), which takes precedence; rename this file to deploy another app", app.Key(), admin.Apps.AdminDir)}
			}
			continue
		}
		claims.Claim(a.Key(), a.Domains, a.URLPrefix)
		if a.Cred.UID == cred.UID {
			mine = append(mine, a)
		}
	}
	if err := admitApp(admin, cred, app, meta, mine, locatePaths(ctx, app, meta, check)); err != nil {
		return err
	}
	return claims.Claim(app.Key(), app.Domains, app.URLPrefix)
}

// adminDirFile is an app file of admin_dir, read as Discover reads them.
type adminDirFile struct {
	// User is the user the file names, as written; "" until known.
	User string
	Cred privdrop.Credential // User, resolved
	App  App
	Meta AppFileMeta
}

// readAdminDirFile reads the app file at path, in admin_dir, as Discover
// reads that directory (U2, U4): it must be root's and not writable by
// group or others, nor may its directory be, and it must name the user
// its app runs as; the app is parsed as that user's. The error is why
// the file is refused; User is set as soon as it is known, for the
// refusal. Policy (admitApp) is the caller's.
func readAdminDirFile(admin Admin, path string, lookup func(string) (privdrop.Credential, error)) (adminDirFile, error) {
	var f adminDirFile
	data, err := readTrusted(path, 0, filepath.Dir(path))
	if err != nil {
		return f, err
	}
	if f.User, err = AppFileUser(path, data); err != nil {
		return f, err
	}
	if f.User == "" {
		return f, &Error{File: path, Msg: fmt.Sprintf("a file in admin_dir (%s) must name the user its app runs as: user = \"NAME\"", admin.Apps.AdminDir)}
	}
	if f.Cred, err = lookup(f.User); err != nil {
		return f, &Error{File: path, Line: scanKeyLines(string(data)).line("user"), Key: "user", Msg: lookupProblem(f.User, err), Err: err}
	}
	f.App, f.Meta, err = ParseAppFile(path, data, f.Cred, admin.Defaults)
	f.App.AdminDeployed = err == nil
	return f, err
}

// inFile is err as a problem of the file at path: err itself when it is
// located in that file already, else an Error of the file as a whole
// that keeps err for errors.Is.
func inFile(path string, err error) error {
	if locatedIn(path, err) {
		return err
	}
	return &Error{File: path, Msg: err.Error(), Err: err}
}

// ErrAdminDir: a user asked to check a file of admin_dir, which is the
// admin's to check.
var ErrAdminDir = errors.New("an admin_dir file")

// ErrNotYours: a user asked to check another user's file, which is that
// user's (or root's) to check. It is ErrUntrusted too: among the
// caller's own files the daemon would not take it either.
var ErrNotYours = fmt.Errorf("%w: another user's file", ErrUntrusted)

// othersFile refuses caller's check of a file another user owns (the
// path itself, a symlink included: a link of the caller's is theirs, as
// in a user_dir) as ErrNotYours: the daemon loads that file for its
// owner, so "not owned by the app's owner", as its check among the
// caller's files says, would be a wrong reason. Root's files are left
// to that check, which refuses them among a user's files (as is a file
// of the caller's own user_dir: CheckAppFileContext).
func othersFile(admin Admin, caller privdrop.Credential, path string, lookup func(string) (privdrop.Credential, error)) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil // the check proper says why
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == caller.UID || st.Uid == 0 {
		return nil
	}
	owner, name := fmt.Sprintf("uid %d", st.Uid), fmt.Sprintf("uid %d", st.Uid)
	if o, err := lookup(strconv.FormatUint(uint64(st.Uid), 10)); err == nil {
		owner, name = fmt.Sprintf("%s (uid %d)", o.Username, st.Uid), o.Username
	}
	return &Error{File: path, Err: ErrNotYours, Msg: fmt.Sprintf(
		"%s is not owned by the app's owner (you, uid %d) but by %s, as whom it runs: it is %s's to check (or root's: sudo pyctl check checks it as %s's)", path, caller.UID, owner, name, name)}
}

// PathCheckTimeout bounds the check of paths as their owner, pyctl
// check's (locatePaths) and each user's in a scan (checkPaths): the
// helper that checks them blocks for as long as a path on a hung network
// mount does, and pyctl check, and the daemon's boot or reload-config,
// would wait as long. Past it the helper is killed (with a check that
// honours its context). A variable for tests.
var PathCheckTimeout = 10 * time.Second

// ErrPathCheckTimeout: the paths' check gave no answer within
// PathCheckTimeout.
var ErrPathCheckTimeout = errors.New("the check of its paths gave no answer")

// locatePaths makes check's verdicts problems of the keys that name the
// paths (D7: pyctl check says FILE:LINE: KEY: message for a path as for
// any other problem, one per line). Each path is a set of its own, so
// each failure belongs to one path, and all of them are asked in one
// call: one helper process per check, not one per path. A failure about a
// directory above several paths (an untrusted one) is said once, for the
// first key. A path no key names (the owner's home, for its Python user
// site) is a problem of the file as a whole. A check that gives no answer
// within PathCheckTimeout is a problem of the file that names every path
// it was asked about: which one hangs, the helper does not say. Only
// pyctl check pays the extra checks: Discover calls admitApp directly.
func locatePaths(ctx context.Context, app App, meta AppFileMeta, check ContextBatchPathChecker) PathChecker {
	if check == nil {
		return nil
	}
	keys := map[string]string{}
	name := func(path, key string) {
		if _, ok := keys[path]; !ok {
			keys[path] = key
		}
	}
	name(app.Directory, "directory")
	name(app.Script, "script")
	name(app.Python, "python")
	for i, p := range app.PythonPath {
		name(p, fmt.Sprintf("python_path[%d]", i))
	}
	for i, st := range app.Static {
		name(st.Dir, fmt.Sprintf("static[%d].dir", i))
	}
	return func(cred privdrop.Credential, want map[string]uint32) error {
		paths := make([]string, 0, len(want))
		for p := range want {
			paths = append(paths, p)
		}
		// In the order the keys come in the file, so the first key
		// naming a shared problem is the one that says it.
		sort.SliceStable(paths, func(i, j int) bool { return lineOf(meta, keys[paths[i]]) < lineOf(meta, keys[paths[j]]) })
		sets := make([]map[string]uint32, len(paths))
		for i, p := range paths {
			sets[i] = map[string]uint32{p: want[p]}
		}
		errs, ok := checkWithin(ctx, PathCheckTimeout, check, cred, sets)
		if !ok {
			return &Error{File: meta.Path, Err: ErrPathCheckTimeout, Msg: pathCheckTimeout(cred, paths, keys).Error()}
		}
		var es Errors
		var said []string
		for i, p := range paths {
			var err error
			if i < len(errs) {
				err = errs[i]
			} else {
				err = fmt.Errorf("as user %s: the path check gave no answer about %s", cred.Username, p)
			}
			if err == nil || slices.Contains(said, err.Error()) {
				continue
			}
			said = append(said, err.Error())
			if key := keys[p]; key != "" {
				e := meta.Errorf(key, "%v", err)
				e.Err = err
				es = append(es, e)
			} else {
				es = append(es, &Error{File: meta.Path, Msg: err.Error(), Err: err})
			}
		}
		if len(es) == 0 {
			return nil
		}
		sort.SliceStable(es, func(i, j int) bool { return es[i].Line < es[j].Line })
		return es
	}
}

// checkWithin asks check about sets as cred, and returns its answer,
// or false when it gave none within d (or before ctx ended). The check's
// context ends then too: privdrop.CheckManyAsUserContext kills its
// helper, stuck on a hung mount, and returns; a check that ignores ctx
// goes on alone, and its answer is dropped.
func checkWithin(ctx context.Context, d time.Duration, check ContextBatchPathChecker, cred privdrop.Credential, sets []map[string]uint32) ([]error, bool) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	done := make(chan []error, 1) // the late answer never blocks
	go func() { done <- check(ctx, cred, sets) }()
	select {
	case errs := <-done:
		// An answer given as the bound ended may be the check's own
		// "stopped" for every set: the timeout, said as such.
		return errs, ctx.Err() == nil
	case <-ctx.Done():
		// A check that honours ctx kills and reaps its helper at once:
		// wait that long, so that none is left when this returns. One
		// that ignores ctx is left to itself after stopGrace.
		t := time.NewTimer(stopGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
		}
		return nil, false
	}
}

// stopGrace is how long checkWithin waits for a check past its bound to
// stop. privdrop.CheckManyAsUserContext returns within its own reap
// grace (2 s) when the kill takes; a variable for tests.
var stopGrace = 3 * time.Second

// pathCheckTimeout says that the check of paths as cred gave no answer
// within PathCheckTimeout, naming every path (with the key that names
// it, in keys, if any): which one hangs, the helper does not say.
func pathCheckTimeout(cred privdrop.Credential, paths []string, keys map[string]string) error {
	named := make([]string, len(paths))
	for i, p := range paths {
		named[i] = p
		if key := keys[p]; key != "" {
			named[i] = key + " " + p
		}
	}
	return fmt.Errorf("%w within %v, checking as user %s (a path on a hung network file system?): %s",
		ErrPathCheckTimeout, PathCheckTimeout, cred.Username, strings.Join(named, ", "))
}

// lineOf is where key is written, or past every line when unknown (a
// default directory, the home).
func lineOf(meta AppFileMeta, key string) int {
	if l := meta.Line(key); l > 0 {
		return l
	}
	return 1 << 30
}
