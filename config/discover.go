package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

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

func (r Refusal) Error() string { return r.Path + ": " + r.Err.Error() }

// PathChecker checks that cred can use paths, with cred's own rights (a
// child process running as that user), never root's (U4). want maps a
// path to privdrop.Read/Execute bits.
type PathChecker func(cred privdrop.Credential, want map[string]uint32) error

// Discovery is the outcome of a scan: the apps to run, in a stable order,
// and the files refused.
type Discovery struct {
	Apps    []App
	Refused []Refusal
}

// Discover finds every app file the admin config allows (U1–U4, U8): the
// user_dir of each listed user and the admin_dir. Files of unlisted users
// are refused with the reason; domain claims go to the first app in
// order (admin_dir files first, then users by name, files by name).
// lookup resolves user names; check verifies the paths an app names with
// its owner's rights.
func Discover(admin Admin, lookup func(string) (privdrop.Credential, error), check PathChecker) Discovery {
	var d Discovery
	var claims Claims
	perUser := map[string][]App{}

	add := func(path string, cred privdrop.Credential, app App, meta AppFileMeta) {
		if err := admitApp(admin, cred, app, meta, perUser[cred.Username], check); err != nil {
			d.Refused = append(d.Refused, Refusal{Path: path, User: cred.Username, Err: err})
			return
		}
		if err := claims.Claim(app.Key(), app.Domains, app.URLPrefix); err != nil {
			d.Refused = append(d.Refused, Refusal{Path: path, User: cred.Username, Err: err})
			return
		}
		perUser[cred.Username] = append(perUser[cred.Username], app)
		d.Apps = append(d.Apps, app)
	}

	// admin_dir: root-owned files that name their user.
	for _, path := range tomlFiles(admin.Apps.AdminDir) {
		data, err := readTrusted(path, 0, filepath.Dir(path))
		if err != nil {
			d.Refused = append(d.Refused, Refusal{Path: path, Err: err})
			continue
		}
		name, err := AppFileUser(path, data)
		if err == nil && name == "" {
			err = fmt.Errorf("a file in %s must name its user (user = \"NAME\")", admin.Apps.AdminDir)
		}
		if err != nil {
			d.Refused = append(d.Refused, Refusal{Path: path, Err: err})
			continue
		}
		cred, err := lookup(name)
		if err != nil {
			d.Refused = append(d.Refused, Refusal{Path: path, User: name, Err: err})
			continue
		}
		app, meta, err := ParseAppFile(path, data, cred, admin.Defaults)
		if err != nil {
			d.Refused = append(d.Refused, Refusal{Path: path, User: name, Err: err})
			continue
		}
		add(path, cred, app, meta)
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
			d.Refused = append(d.Refused, Refusal{Path: admin.Path, User: name, Err: fmt.Errorf("[users.%s]: %w", name, err)})
			continue
		}
		if cred.IsRoot() {
			d.Refused = append(d.Refused, Refusal{Path: admin.Path, User: name, Err: fmt.Errorf("[users.%s]: %w", name, privdrop.ErrRoot)})
			continue
		}
		dir := admin.Apps.UserDirOf(cred.Home)
		for _, path := range tomlFiles(dir) {
			data, err := readTrusted(path, cred.UID, cred.Home)
			if err != nil {
				d.Refused = append(d.Refused, Refusal{Path: path, User: name, Err: err})
				continue
			}
			app, meta, err := ParseAppFile(path, data, cred, admin.Defaults)
			if err != nil {
				d.Refused = append(d.Refused, Refusal{Path: path, User: name, Err: err})
				continue
			}
			add(path, cred, app, meta)
		}
	}
	return d
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
	want := map[string]uint32{app.Directory: privdrop.Read | privdrop.Execute}
	if strings.ContainsRune(app.Python, '/') {
		want[app.Python] = privdrop.Execute
	}
	if app.Script != "" {
		want[app.Script] = privdrop.Read
	}
	for _, p := range app.PythonPath {
		want[p] = privdrop.Read | privdrop.Execute
	}
	for _, s := range app.Static {
		want[s.Dir] = privdrop.Read | privdrop.Execute
	}
	return check(cred, want)
}

// CheckAppFile validates one app file of cred as Discover would (pyctl
// check): trust, syntax, policy against the user's running apps (except
// one of the same name, which it would replace), and paths with cred's
// rights. claims holds the running apps' domains.
func CheckAppFile(admin Admin, cred privdrop.Credential, path string, running []App, check PathChecker) error {
	data, err := readTrusted(path, cred.UID, cred.Home)
	if err != nil {
		return err
	}
	app, meta, err := ParseAppFile(path, data, cred, admin.Defaults)
	if err != nil {
		return err
	}
	var mine []App
	var claims Claims
	for _, a := range running {
		if a.Key() == app.Key() {
			continue
		}
		claims.Claim(a.Key(), a.Domains, a.URLPrefix)
		if a.Cred.UID == cred.UID {
			mine = append(mine, a)
		}
	}
	if err := admitApp(admin, cred, app, meta, mine, check); err != nil {
		return err
	}
	return claims.Claim(app.Key(), app.Domains, app.URLPrefix)
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

// readTrusted reads an app file after the checks sshd's StrictModes
// makes (U4): the file, and every directory from it up to stopAt, must
// be owned by uid or root and not be writable by group or others; a
// symlink is followed only to a file with the same rights. The file is
// opened without following a final symlink after the check, so it cannot
// be swapped in between.
func readTrusted(path string, uid uint32, stopAt string) ([]byte, error) {
	real := path
	if fi, err := os.Lstat(path); err != nil {
		return nil, err
	} else if fi.Mode()&fs.ModeSymlink != 0 {
		if real, err = filepath.EvalSymlinks(path); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrUntrusted, real)
	}
	// The file itself must be the owner's own: a root-owned file in a
	// user's directory (or a link to one) would make the daemon read, and
	// echo in its errors, what only root may read.
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != uid {
		return nil, fmt.Errorf("%w: %s is not owned by the app's owner (uid %d)", ErrUntrusted, path, uid)
	}
	if err := trustedMode(real, fi, uid); err != nil {
		return nil, err
	}
	for dir := filepath.Dir(real); ; dir = filepath.Dir(dir) {
		di, err := os.Stat(dir)
		if err != nil {
			return nil, err
		}
		if err := trustedMode(dir, di, uid); err != nil {
			return nil, err
		}
		if dir == stopAt || dir == "/" || !strings.HasPrefix(dir, stopAt) {
			break
		}
	}
	return io.ReadAll(io.LimitReader(f, MaxAppFileSize+1))
}

func trustedMode(path string, fi fs.FileInfo, uid uint32) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%w: cannot read the owner of %s", ErrUntrusted, path)
	}
	if st.Uid != uid && st.Uid != 0 {
		return fmt.Errorf("%w: %s is owned by uid %d, not by the app's owner (uid %d) or root", ErrUntrusted, path, st.Uid, uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: %s is writable by group or others (mode %04o); run chmod go-w %s", ErrUntrusted, path, fi.Mode().Perm(), path)
	}
	return nil
}
