package config

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/pyhost/pyhost/privdrop"
)

// ErrUntrusted is wrapped by every refusal of a file for its ownership or
// mode (U4).
var ErrUntrusted = errors.New("untrusted file")

// ErrPolicy is wrapped by refusals that come from the admin's policy (the
// user is not listed, a domain is not theirs, a quota), as opposed to a
// broken file. A running app refused for policy is stopped on reload; one
// whose file broke keeps its running version.
var ErrPolicy = errors.New("refused by policy")

// policyErr marks err as a policy refusal without changing its text.
type policyErr struct{ err error }

func (e policyErr) Error() string   { return e.err.Error() }
func (e policyErr) Unwrap() []error { return []error{e.err, ErrPolicy} }

// Refusal is an app file that was not loaded, and why. It is logged, and
// shown to the file's owner by pyctl status and pyctl check.
type Refusal struct {
	Path string
	User string // the owner, when known
	Err  error
}

func (r Refusal) Error() string { return fileProblem(r.Path, r.Err) }

// PathChecker checks that cred can use paths, with cred's own rights (a
// child process running as that user), never root's (U4). want maps a
// path to privdrop.Read/Execute bits.
type PathChecker func(cred privdrop.Credential, want map[string]uint32) error

// BatchPathChecker is a PathChecker for many sets of paths of one user
// at once (one helper process for all of a user's apps, not one each):
// errs[i] answers wants[i] as a PathChecker would, on its own.
type BatchPathChecker func(cred privdrop.Credential, wants []map[string]uint32) (errs []error)

// ContextBatchPathChecker is a BatchPathChecker that gives up when ctx
// is done: privdrop.CheckManyAsUserContext, which then kills its helper.
// Discover and CheckAppFile bound every call by PathCheckTimeout.
type ContextBatchPathChecker func(ctx context.Context, cred privdrop.Credential, wants []map[string]uint32) (errs []error)

// IgnoringContext makes check a ContextBatchPathChecker that does not
// know of ctx: past its bound, its call is abandoned, and goes on alone
// until its answer, which is dropped.
func IgnoringContext(check BatchPathChecker) ContextBatchPathChecker {
	if check == nil {
		return nil
	}
	return func(_ context.Context, cred privdrop.Credential, wants []map[string]uint32) []error {
		return check(cred, wants)
	}
}

// OneByOne makes check a BatchPathChecker that asks about each set in
// turn.
func OneByOne(check PathChecker) BatchPathChecker {
	if check == nil {
		return nil
	}
	return func(cred privdrop.Credential, wants []map[string]uint32) []error {
		errs := make([]error, len(wants))
		for i, w := range wants {
			errs[i] = check(cred, w)
		}
		return errs
	}
}

// Discovery is the outcome of a scan: the apps to run, in a stable order,
// the files refused, and the claims ledger that results.
type Discovery struct {
	Apps    []App
	Refused []Refusal
	// Held is every claim the scan gave or kept: the admitted apps'
	// claims, and those kept for a holder that runs, or whose file is
	// broken or out of reach. See NextLedger for what the daemon keeps of
	// it.
	Held Ledger
	// Skipped are the app keys Scan.Only left out: files that hold
	// nothing and were not asked about.
	Skipped []string
}

// Scan is the daemon's state a Discover decides against.
type Scan struct {
	// Held is the claims ledger as it stands (the running apps' claims
	// and the reservations kept; or the one saved before a restart).
	Held Ledger
	// Running are the apps the daemon runs, in the settings each runs
	// with (not what their files say now).
	Running []App
	// Only, when set, is the one app (a key) a newcomer may be admitted
	// for: pyctl reload NAME. Other files that hold no claim and do not
	// run are left out (Discovery.Skipped), so a file nobody loaded
	// cannot stand in the way of the one being reloaded, as it could not
	// in pyctl check.
	Only string
}

// candidate is an app file that parsed, before the policy is applied.
type candidate struct {
	path string
	app  App
	meta AppFileMeta
}

// Discover finds every app file the admin config allows (U1–U4, U8): the
// user_dir of each listed user and the admin_dir. Files of unlisted users
// are refused with the reason. lookup resolves user names; check
// verifies the paths an app names with its owner's rights.
//
// Holders (apps that run, or hold a claim in s.Held) are admitted first,
// so they keep their domains and their places in the user's quota
// (max_apps, max_processes, max_memory). A held claim stays reserved for
// its holder while the holder runs (until it is stopped, whatever its
// file says now), or while its file is there (broken, out of reach or
// valid); a new file asking for it is refused naming the holder (U3).
// Everything else goes in file order: admin_dir files first, then users
// by name, files by name. An admin_dir file owns its app's name: a
// user's file of the same name is refused.
func Discover(admin Admin, lookup func(string) (privdrop.Credential, error), check PathChecker, s Scan) Discovery {
	return DiscoverBatch(admin, lookup, OneByOne(check), s)
}

// DiscoverBatch is Discover with the paths of all of a user's apps
// checked in one call to check: what a boot of many apps needs. Each
// app still gets its own verdict, so one app whose paths fail (or
// whose paths break the check) costs the others nothing.
func DiscoverBatch(admin Admin, lookup func(string) (privdrop.Credential, error), check BatchPathChecker, s Scan) Discovery {
	return DiscoverBatchContext(context.Background(), admin, lookup, IgnoringContext(check), s)
}

// DiscoverBatchContext is DiscoverBatch with a check that honours ctx,
// which bounds each user's call by PathCheckTimeout: a user whose check
// gives no answer in time (a path on a hung mount) has all of their
// files refused for that, naming the timeout, and the scan goes on with
// the other users. The check is stopped (its helper killed) when its
// bound or ctx ends.
func DiscoverBatchContext(ctx context.Context, admin Admin, lookup func(string) (privdrop.Credential, error), check ContextBatchPathChecker, s Scan) Discovery {
	var d Discovery
	refuse := func(path, user string, err error) {
		d.Refused = append(d.Refused, Refusal{Path: path, User: user, Err: err})
	}
	running := map[string]App{}
	for _, a := range s.Running {
		running[a.Key()] = a
	}
	held := s.Held
	var cands []candidate
	// broken are app keys whose file exists but does not parse, is not
	// trusted, or cannot be reached (a home not mounted): their running
	// version, if any, serves on, and their claims stay theirs.
	broken := map[string]bool{}
	adminFiles := map[string]string{}

	// admin_dir: root-owned files that name their user.
	adminList, err := tomlFiles(admin.Apps.AdminDir)
	if err != nil {
		refuse(admin.Apps.AdminDir, "", fmt.Errorf("cannot read admin_dir: %w; the apps from it keep running as they are", err))
		for k, a := range running {
			if a.AdminDeployed {
				broken[k] = true
				adminFiles[k] = a.File
			}
		}
	}
	for _, path := range adminList {
		f, err := readAdminDirFile(admin, path, lookup)
		user := f.User
		if f.Cred.Username != "" {
			user = f.Cred.Username // "1014" names the same app as "bob"
		}
		if user != "" {
			adminFiles[fileKey(user, path)] = path
		}
		if err != nil {
			if user != "" {
				broken[fileKey(user, path)] = true
			}
			// A file so broken its user is unknown still is the file a
			// running admin app came from.
			for k, a := range running {
				if a.AdminDeployed && a.File == path {
					broken[k] = true
					adminFiles[k] = path
				}
			}
			refuse(path, user, err)
			continue
		}
		cands = append(cands, candidate{path, f.App, f.Meta})
	}

	// Each listed user's own directory.
	users := make([]string, 0, len(admin.Users))
	for name := range admin.Users {
		users = append(users, name)
	}
	sort.Strings(users)
	// unreachable keeps a user's running apps when their files cannot be
	// read at all: a failed lookup or a home that is not there (not
	// mounted yet) says nothing about what the user wants.
	unreachable := func(name string, why error) {
		// After a restart nothing runs yet: the ledger's holders of the
		// user keep their claims all the same.
		for _, holder := range held {
			if strings.HasPrefix(holder, name+"/") {
				broken[holder] = true
			}
		}
		for _, a := range s.Running {
			if a.Cred.Username == name && !a.AdminDeployed {
				broken[a.Key()] = true
				refuse(a.File, name, fmt.Errorf("cannot read this file now (%w); the running version keeps serving", why))
			}
		}
	}
	for _, name := range users {
		cred, err := lookup(name)
		if err != nil {
			refuse(admin.Path, name, admin.UserError(name, err))
			unreachable(name, err)
			continue
		}
		if cred.IsRoot() {
			refuse(admin.Path, name, admin.UserError(name, privdrop.ErrRoot))
			continue
		}
		dir := admin.Apps.UserDirOf(cred.Home)
		files, err := tomlFiles(dir)
		if err == nil && len(files) == 0 {
			if _, herr := os.Stat(cred.Home); herr != nil {
				err = herr
			}
		}
		if err != nil {
			unreachable(name, err)
			continue
		}
		for _, path := range files {
			key := fileKey(name, path)
			by, ok := adminFiles[key]
			if !ok && running[key].AdminDeployed {
				ok, by = true, running[key].File
			}
			if ok {
				refuse(path, name, policyErr{fmt.Errorf("the app %s is deployed by the admin (%s), which takes precedence; rename this file to deploy another app", key, by)})
				continue
			}
			data, err := readTrusted(path, cred.UID, cred.Home)
			if err != nil {
				broken[key] = true
				refuse(path, name, err)
				continue
			}
			app, meta, err := ParseAppFile(path, data, cred, admin.Defaults)
			if err != nil {
				broken[key] = true
				refuse(path, name, err)
				continue
			}
			cands = append(cands, candidate{path, app, meta})
		}
	}

	present := map[string]bool{}
	for _, c := range cands {
		present[c.app.Key()] = true
	}
	holds := func(key string) bool {
		_, runs := running[key]
		return runs || held.Holds(key)
	}
	// A claim is only kept for what the admin's policy still allows its
	// holder: a listed user, a domain matching their patterns. What the
	// holder's own file says now (a typo, a quota its edit breaks) does
	// not take it away.
	allowed := func(k, holder string) bool {
		user, _, _ := strings.Cut(holder, "/")
		policy, ok := admin.Users[user]
		domain, _, _ := strings.Cut(k, " ")
		return ok && DomainAllowed(policy.Domains, domain)
	}
	claims := Claims{}
	for k, holder := range held {
		if _, runs := running[holder]; (runs || present[holder] || broken[holder]) && allowed(k, holder) {
			claims.reserve(k, holder)
		}
	}
	// A running app's claims are its own until it stops, even when no
	// ledger has them yet.
	for k, a := range running {
		for _, dom := range a.Domains {
			if ck := claimKey(dom, a.URLPrefix); allowed(ck, k) {
				claims.reserve(ck, k)
			}
		}
	}

	// Holders first, then the rest, each group in file order.
	sort.SliceStable(cands, func(i, j int) bool {
		return holds(cands[i].app.Key()) && !holds(cands[j].app.Key())
	})
	// Quotas count what keeps running: apps whose file is broken, and
	// those refused below, in their running settings.
	perUser := map[string][]App{}
	for k, a := range running {
		if broken[k] && !present[k] {
			perUser[a.Cred.Username] = append(perUser[a.Cred.Username], a)
		}
	}
	skip := func(key string) bool { return s.Only != "" && key != s.Only && !holds(key) }
	verdicts := checkPaths(ctx, admin, cands, skip, check)
	for i, c := range cands {
		key := c.app.Key()
		if skip(key) {
			d.Skipped = append(d.Skipped, key)
			continue
		}
		cred := c.app.Cred
		keepRunning := func() {
			if a, ok := running[key]; ok {
				perUser[cred.Username] = append(perUser[cred.Username], a)
			}
		}
		var verdict PathChecker
		if check != nil {
			verdict = func(privdrop.Credential, map[string]uint32) error { return verdicts[i] }
		}
		if err := admitApp(admin, cred, c.app, c.meta, perUser[cred.Username], verdict); err != nil {
			keepRunning()
			refuse(c.path, cred.Username, err)
			continue
		}
		if err := claims.Claim(key, c.app.Domains, c.app.URLPrefix); err != nil {
			keepRunning()
			refuse(c.path, cred.Username, err)
			continue
		}
		c.app.Sandbox = daemonSandbox(admin, c.app)
		perUser[cred.Username] = append(perUser[cred.Username], c.app)
		d.Apps = append(d.Apps, c.app)
	}
	d.Held = claims.ledger()
	return d
}

// RunningAllowed is the pure decision "may this running app go on
// running under admin's policy?": its user is still listed and every
// domain it serves now is still theirs. A refusal of its new file (a
// typo, a quota its own edit would pass) is no reason to stop it; only
// the admin's changed policy is.
func RunningAllowed(admin Admin, a App) error {
	policy, ok := admin.Users[a.Cred.Username]
	if !ok {
		return policyErr{fmt.Errorf("user %s is no longer listed under [users] in %s", a.Cred.Username, admin.Path)}
	}
	for _, dom := range a.Domains {
		if !DomainAllowed(policy.Domains, dom) {
			return policyErr{fmt.Errorf("%s may no longer claim %s", a.Cred.Username, dom)}
		}
	}
	if err := UnsandboxedAllowed(admin, a); err != nil {
		return policyErr{err}
	}
	return nil
}

// fileKey is the key of the app an app file of user would define.
func fileKey(user, path string) string {
	return user + "/" + strings.TrimSuffix(filepath.Base(path), ".toml")
}

// admitApp applies the admin's policy to one parsed app of cred: the user
// is listed, the domains are theirs, the quota holds with the user's
// other apps, and the paths it names are usable by cred.
func admitApp(admin Admin, cred privdrop.Credential, app App, meta AppFileMeta, others []App, check PathChecker) error {
	policy, ok := admin.Users[cred.Username]
	if !ok {
		return policyErr{fmt.Errorf("user %s is not listed under [users] in %s, so may not deploy apps", cred.Username, admin.Path)}
	}
	if len(app.Domains) == 0 {
		return meta.Errorf("domains", "an app must name the domains it serves, e.g. domains = [%q]", firstExample(policy.Domains))
	}
	for i, dom := range app.Domains {
		if !DomainAllowed(policy.Domains, dom) {
			e := meta.Errorf(fmt.Sprintf("domains[%d]", i), "%s may not claim %s; allowed: %s", cred.Username, dom, strings.Join(policy.Domains, ", "))
			e.Err = ErrPolicy
			return e
		}
	}
	if err := UnsandboxedAllowed(admin, app); err != nil {
		e := meta.Errorf("sandbox", "%v", err)
		e.Err = ErrPolicy
		return e
	}
	if err := CheckQuota(cred.Username, policy.Quota, append(append([]App(nil), others...), app)); err != nil {
		return policyErr{err}
	}
	if check == nil {
		return nil
	}
	return check(cred, appPaths(cred, app))
}

// checkPaths checks the paths of every candidate that skip leaves and
// whose user is listed (admitApp refuses the others before it would
// check), one call to check per user, bounded by PathCheckTimeout;
// verdicts[i] is cands[i]'s. The checks run before the policy's order is
// known: one that admitApp refuses for a quota was only checked for
// nothing.
func checkPaths(ctx context.Context, admin Admin, cands []candidate, skip func(string) bool, check ContextBatchPathChecker) []error {
	verdicts := make([]error, len(cands))
	if check == nil {
		return verdicts
	}
	type batch struct {
		cred  privdrop.Credential
		idx   []int
		wants []map[string]uint32
	}
	var order []string
	batches := map[string]*batch{}
	for i, c := range cands {
		cred := c.app.Cred
		if _, listed := admin.Users[cred.Username]; !listed || skip(c.app.Key()) {
			continue
		}
		// One user is one batch only if every credential field agrees:
		// the check runs with exactly the rights the app would.
		id := fmt.Sprintf("%q %d %d %v %q", cred.Username, cred.UID, cred.GID, cred.Groups, cred.Home)
		b := batches[id]
		if b == nil {
			b = &batch{cred: cred}
			batches[id] = b
			order = append(order, id)
		}
		b.idx = append(b.idx, i)
		b.wants = append(b.wants, appPaths(cred, c.app))
	}
	for _, id := range order {
		b := batches[id]
		errs, ok := checkWithin(ctx, PathCheckTimeout, check, b.cred, b.wants)
		if !ok {
			for k, i := range b.idx {
				verdicts[i] = pathCheckTimeout(b.cred, slices.Sorted(maps.Keys(b.wants[k])), nil)
			}
			continue
		}
		for k, i := range b.idx {
			if k < len(errs) {
				verdicts[i] = errs[k]
			} else {
				verdicts[i] = fmt.Errorf("as user %s: the path check gave no answer", b.cred.Username)
			}
		}
	}
	return verdicts
}

// appPaths is what app needs of its paths, as cred: the bits a
// PathChecker checks.
func appPaths(cred privdrop.Credential, app App) map[string]uint32 {
	// What decides the code the app runs must be Trusted (U4): owned by
	// cred or root and not writable by others, nor any directory above
	// it up to root's, or another user could plant code that runs as
	// cred. Static dirs are only read by the proxy. Bits are or-ed: one
	// path may be named twice.
	//
	// What the worker opens must be of the kind it expects
	// (RegularFile, Directory): a FIFO as the script would pass the
	// rest, and hang the worker until startup_timeout. python_path
	// entries may be directories or zip files: either.
	want := map[string]uint32{app.Directory: privdrop.Read | privdrop.Execute | privdrop.Trusted | privdrop.Directory}
	if strings.ContainsRune(app.Python, '/') {
		want[app.Python] |= privdrop.Execute | privdrop.Interpreter | privdrop.RegularFile
	}
	if app.Script != "" {
		want[app.Script] |= privdrop.Read | privdrop.Trusted | privdrop.RegularFile
	}
	for _, p := range app.PythonPath {
		want[p] |= privdrop.Read | privdrop.Execute | privdrop.Trusted
	}
	for _, s := range app.Static {
		want[s.Dir] |= privdrop.Read | privdrop.Execute | privdrop.Directory
	}
	// Python loads the owner's user site (~/.local/lib/python3*/
	// site-packages, its .pth files) at every start, whatever python is.
	if filepath.IsAbs(cred.Home) {
		want[cred.Home] |= privdrop.UserSite
	}
	return want
}

func firstExample(patterns []string) string {
	for _, p := range patterns {
		return strings.TrimPrefix(p, "*.")
	}
	return "app.example.com"
}

// tomlFiles lists dir's *.toml entries by name. A missing dir has none;
// any other error (permission, I/O) is returned, so the caller can tell
// "no apps" from "cannot tell".
func tomlFiles(dir string) ([]string, error) {
	if dir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".toml") && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}
