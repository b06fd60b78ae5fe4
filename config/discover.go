package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// Discovery is the outcome of a scan: the apps to run, in a stable order,
// the files refused, and the claims ledger that results.
type Discovery struct {
	Apps    []App
	Refused []Refusal
	// Held is every claim the scan gave or kept: the admitted apps'
	// claims, and those of a prior holder whose file is broken (it keeps
	// its domains until its file is fixed or removed). See NextLedger for
	// what the daemon keeps of it.
	Held Ledger
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
// held is the claims ledger as it stands (the running apps' claims, or
// the one saved before a restart). Its holders are admitted first, so
// they keep their domains and their places in the user's quota (max_apps,
// max_processes, max_memory); a claim stays reserved for its holder while
// the holder's file still claims it or is broken, and a new file asking
// for it is refused naming the holder (U3). Everything else goes in file
// order: admin_dir files first, then users by name, files by name. An
// admin_dir file owns its app's name: a user's file of the same name is
// refused.
func Discover(admin Admin, lookup func(string) (privdrop.Credential, error), check PathChecker, held Ledger) Discovery {
	var d Discovery
	refuse := func(path, user string, err error) {
		d.Refused = append(d.Refused, Refusal{Path: path, User: user, Err: err})
	}
	var cands []candidate
	broken := map[string]bool{} // app keys whose file exists but does not parse or is untrusted
	adminFiles := map[string]string{}

	// admin_dir: root-owned files that name their user.
	for _, path := range tomlFiles(admin.Apps.AdminDir) {
		f, err := readAdminDirFile(admin, path, lookup)
		if f.User != "" {
			adminFiles[fileKey(f.User, path)] = path
		}
		if err != nil {
			if f.Cred.Username != "" { // its user is known: the file does not parse
				broken[fileKey(f.User, path)] = true
			}
			refuse(path, f.User, err)
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
	for _, name := range users {
		cred, err := lookup(name)
		if err != nil {
			refuse(admin.Path, name, admin.UserError(name, err))
			continue
		}
		if cred.IsRoot() {
			refuse(admin.Path, name, admin.UserError(name, privdrop.ErrRoot))
			continue
		}
		dir := admin.Apps.UserDirOf(cred.Home)
		for _, path := range tomlFiles(dir) {
			if by, ok := adminFiles[fileKey(name, path)]; ok {
				refuse(path, name, policyErr{fmt.Errorf("the app %s is deployed by the admin (%s), which takes precedence; rename this file to deploy another app", fileKey(name, path), by)})
				continue
			}
			data, err := readTrusted(path, cred.UID, cred.Home)
			if err != nil {
				broken[fileKey(name, path)] = true
				refuse(path, name, err)
				continue
			}
			app, meta, err := ParseAppFile(path, data, cred, admin.Defaults)
			if err != nil {
				broken[fileKey(name, path)] = true
				refuse(path, name, err)
				continue
			}
			cands = append(cands, candidate{path, app, meta})
		}
	}

	// A held claim stays its holder's while the holder's file is there
	// (if the file no longer claims it, the holder's running version
	// still may: the claim is free once the holder runs without it, see
	// NextLedger) or is broken (its running version serves it). It is
	// free when the file is gone, and when the holder is refused by
	// policy (below).
	claims := Claims{}
	present := map[string]bool{}
	for _, c := range cands {
		present[c.app.Key()] = true
	}
	for k, holder := range held {
		if present[holder] || broken[holder] {
			claims.reserve(k, holder)
		}
	}

	// Holders first, then the rest, each group in file order.
	sort.SliceStable(cands, func(i, j int) bool {
		return held.Holds(cands[i].app.Key()) && !held.Holds(cands[j].app.Key())
	})
	perUser := map[string][]App{}
	for _, c := range cands {
		cred := c.app.Cred
		if err := admitApp(admin, cred, c.app, c.meta, perUser[cred.Username], check); err != nil {
			// Refused by policy, the app stops and gives its domains up
			// at once; otherwise its running version keeps them.
			if errors.Is(err, ErrPolicy) {
				claims.Release(c.app.Key())
			}
			refuse(c.path, cred.Username, err)
			continue
		}
		if err := claims.Claim(c.app.Key(), c.app.Domains, c.app.URLPrefix); err != nil {
			refuse(c.path, cred.Username, err)
			continue
		}
		perUser[cred.Username] = append(perUser[cred.Username], c.app)
		d.Apps = append(d.Apps, c.app)
	}
	d.Held = claims.ledger()
	return d
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
	if err := CheckQuota(cred.Username, policy.Quota, append(append([]App(nil), others...), app)); err != nil {
		return policyErr{err}
	}
	if check == nil {
		return nil
	}
	// What decides the code the app runs must be Trusted (U4): owned by
	// cred or root and not writable by others, nor any directory above
	// it up to root's, or another user could plant code that runs as
	// cred. Static dirs are only read by the proxy. Bits are or-ed: one
	// path may be named twice.
	want := map[string]uint32{app.Directory: privdrop.Read | privdrop.Execute | privdrop.Trusted}
	if strings.ContainsRune(app.Python, '/') {
		want[app.Python] |= privdrop.Execute | privdrop.Interpreter
	}
	if app.Script != "" {
		want[app.Script] |= privdrop.Read | privdrop.Trusted
	}
	for _, p := range app.PythonPath {
		want[p] |= privdrop.Read | privdrop.Execute | privdrop.Trusted
	}
	for _, s := range app.Static {
		want[s.Dir] |= privdrop.Read | privdrop.Execute
	}
	return check(cred, want)
}

func firstExample(patterns []string) string {
	for _, p := range patterns {
		return strings.TrimPrefix(p, "*.")
	}
	return "app.example.com"
}

// tomlFiles lists dir's *.toml entries by name; a missing dir has none.
func tomlFiles(dir string) []string {
	if dir == "" {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".toml") && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}
