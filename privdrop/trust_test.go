package privdrop

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

const (
	alice = 1000
	bob   = 1001
)

// fakeFS is a file system for the trust checks: path → node.
type fakeFS map[string]FileNode

func (f fakeFS) lstat(path string) (FileNode, error) {
	if n, ok := f[path]; ok {
		return n, nil
	}
	return FileNode{}, &fs.PathError{Op: "lstat", Path: path, Err: syscall.ENOENT}
}

func (f fakeFS) glob(pattern string) ([]string, error) {
	var out []string
	for p := range f {
		if ok, err := filepath.Match(pattern, p); err != nil {
			return nil, err
		} else if ok {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out, nil
}

func dir(uid uint32, mode uint32) FileNode {
	return FileNode{UID: uid, Mode: fs.ModeDir | fileMode(mode)}
}
func file(uid uint32, mode uint32) FileNode { return FileNode{UID: uid, Mode: fileMode(mode)} }
func symlink(to string) FileNode            { return FileNode{UID: alice, Mode: fs.ModeSymlink | 0o777, Link: to} }

func baseFS() fakeFS {
	return fakeFS{
		"/":                               dir(0, 0o755),
		"/home":                           dir(0, 0o755),
		"/home/alice":                     dir(alice, 0o755),
		"/home/alice/app":                 dir(alice, 0o755),
		"/home/alice/app/wsgi.py":         file(alice, 0o644),
		"/home/alice/app/gw.py":           file(alice, 0o664),
		"/home/alice/app/sub":             dir(alice, 0o2755),
		"/home/alice/open":                dir(alice, 0o777),
		"/home/alice/open/wsgi.py":        file(alice, 0o644),
		"/home/alice/grp":                 dir(alice, 0o775),
		"/home/alice/bobs":                dir(bob, 0o755),
		"/home/alice/rootdir":             dir(0, 0o755),
		"/home/alice/link":                symlink("/srv/www/app"),
		"/home/alice/rel":                 symlink("app"),
		"/home/alice/dots":                symlink("../alice/./app"),
		"/home/alice/badlink":             symlink("/srv/shared"),
		"/home/alice/loop":                symlink("/home/alice/loop"),
		"/home/alice/via":                 symlink("/srv/shared/l"),
		"/home/bob":                       dir(bob, 0o755),
		"/home/bob/rootdir":               dir(0, 0o755),
		"/tmp":                            dir(0, 0o1777),
		"/tmp/alice":                      dir(alice, 0o755),
		"/srv":                            dir(0, 0o755),
		"/srv/shared":                     dir(0, 0o777),
		"/srv/shared/l":                   symlink("/home/alice/app"),
		"/srv/www":                        dir(0, 0o755),
		"/srv/www/app":                    dir(alice, 0o755),
		"/opt":                            dir(0, 0o777),
		"/opt/py":                         dir(0, 0o755),
		"/opt/py/python3":                 file(0, 0o755),
		"/usr":                            dir(0, 0o755),
		"/usr/bin":                        dir(0, 0o755),
		"/usr/bin/python3":                symlink("python3.12"),
		"/usr/bin/python3.12":             file(0, 0o755),
		"/usr/lib":                        dir(0, 0o755),
		"/usr/lib/python3.12":             dir(0, 0o755),
		"/home/alice/venv":                dir(alice, 0o755),
		"/home/alice/venv/bin":            dir(alice, 0o755),
		"/home/alice/venv/bin/python":     symlink("/usr/bin/python3"),
		"/home/alice/venv/pyvenv.cfg":     file(alice, 0o644),
		"/home/alice/venv/lib":            dir(alice, 0o755),
		"/home/alice/venv/lib64":          symlink("lib"),
		"/home/alice/venv/lib/python3.12": dir(alice, 0o755),
		"/home/alice/venv/lib/python3.12/site-packages": dir(alice, 0o755),
		"/home/alice/py":                      dir(alice, 0o755),
		"/home/alice/py/bin":                  dir(alice, 0o755),
		"/home/alice/py/bin/python3":          file(alice, 0o755),
		"/home/alice/py/lib":                  dir(alice, 0o755),
		"/home/alice/py/lib/python3.12":       dir(alice, 0o755),
		"/home/alice/py/lib/python3.12/os.py": file(alice, 0o644),
	}
}

// fileMode is chmod(1)'s mode as an fs.FileMode.
func fileMode(mode uint32) fs.FileMode {
	m := fs.FileMode(mode & 0o777)
	for bit, fm := range map[uint32]fs.FileMode{0o4000: fs.ModeSetuid, 0o2000: fs.ModeSetgid, 0o1000: fs.ModeSticky} {
		if mode&bit != 0 {
			m |= fm
		}
	}
	return m
}

// A trust failure says what (bad) is wrong (msg): empty bad means it is
// trusted; "!" means another error (missing, a loop).
func TestCheckTrusted(t *testing.T) {
	cases := []struct {
		path, bad, msg string
	}{
		{"/home/alice/app", "", ""},
		{"/home/alice/app/wsgi.py", "", ""},
		{"/home/alice/app/sub", "", ""}, // setgid is no write access
		{"/home/alice", "", ""},
		{"/home/alice/rootdir", "", ""},
		{"/usr/bin/python3", "", ""},
		{"/srv/www/app", "", ""}, // a root-owned parent ends the walk
		{"/home/alice/link", "", ""},
		{"/home/alice/rel", "", ""},
		{"/home/alice/dots", "", ""},
		{"/opt/py/python3", "", ""}, // the first root-owned directory ends the walk, even in a 0777 one

		{"/home/alice/open", "/home/alice/open", "/home/alice/open is writable by group or others (mode 0777); run chmod go-w /home/alice/open"},
		{"/home/alice/open/wsgi.py", "/home/alice/open", "/home/alice/open/wsgi.py is in /home/alice/open, which is writable by group or others (mode 0777); run chmod go-w /home/alice/open"},
		{"/home/alice/app/gw.py", "/home/alice/app/gw.py", "is writable by group or others (mode 0664); run chmod go-w /home/alice/app/gw.py"},
		{"/home/alice/grp", "/home/alice/grp", "(mode 0775)"},
		{"/home/alice/bobs", "/home/alice/bobs", "/home/alice/bobs is owned by uid 1001, not by the app's owner (uid 1000) or root; the owner can use a copy of their own, or root can run chown 1000 /home/alice/bobs"},
		// A root-owned path is no better than the directory it is in.
		{"/home/bob/rootdir", "/home/bob", "/home/bob/rootdir is in /home/bob, which is owned by uid 1001"},
		{"/opt/py", "/opt", "(mode 0777)"},
		{"/srv/shared", "/srv/shared", "(mode 0777)"},
		{"/tmp", "/tmp", "/tmp is a shared directory anyone can create files in (mode 1777); use a directory of the app owner's own"},
		{"/tmp/alice", "/tmp", "/tmp/alice is in /tmp, which is a shared directory anyone can create files in (mode 1777)"},
		{"/home/alice/badlink", "/srv/shared", "/home/alice/badlink leads to /srv/shared, which is writable by group or others (mode 0777); run chmod go-w /srv/shared"},
		{"/home/alice/via", "/srv/shared", "/home/alice/via goes through the symlink /srv/shared/l, in /srv/shared, which is writable by group or others (mode 0777)"},
		{"/srv/shared/l", "/srv/shared", "goes through the symlink /srv/shared/l, in /srv/shared"},

		{"/home/alice/nope", "!", "no such file"},
		{"/home/alice/app/nope", "!", "no such file"},
		{"/home/alice/loop", "!", "too many levels of symbolic links"},
		{"home/alice/app", "!", "not an absolute path"},
	}
	fsys := baseFS()
	for _, c := range cases {
		err := CheckTrusted(fsys.lstat, alice, c.path)
		var ue *UntrustedError
		switch {
		case c.bad == "" && err != nil:
			t.Errorf("%s: %v; want trusted", c.path, err)
		case c.bad == "":
		case err == nil:
			t.Errorf("%s: trusted; want %q", c.path, c.msg)
		case c.bad == "!" && errors.As(err, &ue):
			t.Errorf("%s: %v; want another error than untrusted", c.path, err)
		case c.bad != "!" && (!errors.As(err, &ue) || ue.Bad != c.bad || ue.Path != c.path):
			t.Errorf("%s: %#v; want an *UntrustedError for %s", c.path, err, c.bad)
		case !strings.Contains(err.Error(), c.msg):
			t.Errorf("%s: %q; want it to contain %q", c.path, err, c.msg)
		}
	}
}

func TestCheckInterpreter(t *testing.T) {
	cases := []struct {
		name   string
		python string
		change fakeFS // nodes replaced in baseFS
		msg    string // "" for trusted
	}{
		{"venv", "/home/alice/venv/bin/python", nil, ""},
		{"system python", "/usr/bin/python3", nil, ""},
		{"own build", "/home/alice/py/bin/python3", nil, ""},
		{"venv writable", "/home/alice/venv/bin/python",
			fakeFS{"/home/alice/venv": dir(alice, 0o777)},
			"in /home/alice/venv, which is writable by group or others (mode 0777)"},
		{"bin writable", "/home/alice/venv/bin/python",
			fakeFS{"/home/alice/venv/bin": dir(alice, 0o1777)},
			"/home/alice/venv/bin, which is a shared directory"},
		{"pyvenv.cfg writable", "/home/alice/venv/bin/python",
			fakeFS{"/home/alice/venv/pyvenv.cfg": file(alice, 0o666)},
			"/home/alice/venv/pyvenv.cfg is writable by group or others (mode 0666)"},
		{"pyvenv.cfg of bob", "/home/alice/venv/bin/python",
			fakeFS{"/home/alice/venv/pyvenv.cfg": file(bob, 0o644)},
			"/home/alice/venv/pyvenv.cfg is owned by uid 1001"},
		{"pyvenv.cfg in bin is the one read", "/home/alice/venv/bin/python",
			fakeFS{"/home/alice/venv/bin/pyvenv.cfg": file(alice, 0o644), "/home/alice/venv/pyvenv.cfg": file(alice, 0o666)},
			""},
		{"site-packages writable", "/home/alice/venv/bin/python",
			fakeFS{"/home/alice/venv/lib/python3.12/site-packages": dir(alice, 0o777)},
			"/home/alice/venv/lib/python3.12/site-packages is writable by group or others (mode 0777)"},
		{"lib writable", "/home/alice/venv/bin/python",
			fakeFS{"/home/alice/venv/lib": dir(alice, 0o757)},
			"in /home/alice/venv/lib, which is writable by group or others (mode 0757)"},
		{"interpreter of bob", "/home/alice/venv/bin/python",
			fakeFS{"/home/alice/venv/bin/python": symlink("/home/bob/python3"), "/home/bob/python3": file(bob, 0o755)},
			"/home/alice/venv/bin/python leads to /home/bob/python3, which is owned by uid 1001"},
		{"own build's stdlib writable", "/home/alice/py/bin/python3",
			fakeFS{"/home/alice/py/lib/python3.12": dir(alice, 0o777)},
			"/home/alice/py/lib/python3.12 is writable by group or others (mode 0777)"},
	}
	for _, c := range cases {
		fsys := baseFS()
		maps.Copy(fsys, c.change)
		err := CheckInterpreter(fsys.lstat, fsys.glob, alice, c.python)
		switch {
		case c.msg == "" && err != nil:
			t.Errorf("%s: %v; want trusted", c.name, err)
		case c.msg == "":
		case err == nil:
			t.Errorf("%s: trusted; want %q", c.name, c.msg)
		case !strings.Contains(err.Error(), c.msg):
			t.Errorf("%s: %q; want it to contain %q", c.name, err, c.msg)
		}
	}
}

// The user site (~/.local/lib/python3*/site-packages) is held to the
// trust rule, or another user could plant a .pth there that runs as the
// app's owner at every start (issue 9 review, item 3).
func TestCheckUserSite(t *testing.T) {
	site := fakeFS{
		"/home/alice/.local":                                    dir(alice, 0o755),
		"/home/alice/.local/lib":                                dir(alice, 0o755),
		"/home/alice/.local/lib/python3.11":                     dir(alice, 0o755),
		"/home/alice/.local/lib/python3.11/site-packages":       dir(alice, 0o755),
		"/home/alice/.local/lib/python3.12":                     dir(alice, 0o755),
		"/home/alice/.local/lib/python3.12/site-packages":       dir(alice, 0o755),
		"/home/alice/.local/lib/python3.12/site-packages/x.pth": file(alice, 0o644),
	}
	cases := []struct {
		name   string
		home   string
		site   bool   // with site's nodes
		change fakeFS // then these replaced
		msg    string // "" for trusted
	}{
		{"no .local", "/home/alice", false, nil, ""},
		{"a user site", "/home/alice", true, nil, ""},
		{"no home", "/home/nobody", false, nil, ""},
		{"a root-owned home", "/srv/www", false, nil, ""},
		{"not absolute", "", false, nil, ""},
		{"site-packages writable", "/home/alice", true,
			fakeFS{"/home/alice/.local/lib/python3.12/site-packages": dir(alice, 0o777)},
			"the Python user site, loaded at every start of the app: /home/alice/.local/lib/python3.12/site-packages is writable by group or others (mode 0777)"},
		{"another version's site writable", "/home/alice", true,
			fakeFS{"/home/alice/.local/lib/python3.11/site-packages": dir(alice, 0o777)},
			"/home/alice/.local/lib/python3.11/site-packages is writable"},
		{"site-packages of bob", "/home/alice", true,
			fakeFS{"/home/alice/.local/lib/python3.12/site-packages": dir(bob, 0o755)},
			"site-packages is owned by uid 1001"},
		{".local writable", "/home/alice", true,
			fakeFS{"/home/alice/.local": dir(alice, 0o777)},
			"/home/alice/.local/lib is in /home/alice/.local, which is writable by group or others (mode 0777)"},
		{".local writable, no site yet", "/home/alice", false,
			fakeFS{"/home/alice/.local": dir(alice, 0o777)},
			"/home/alice/.local is writable by group or others (mode 0777)"},
		{"python3.12 writable, no site-packages in it", "/home/alice", false,
			fakeFS{"/home/alice/.local": dir(alice, 0o755), "/home/alice/.local/lib": dir(alice, 0o755), "/home/alice/.local/lib/python3.12": dir(alice, 0o777)},
			"/home/alice/.local/lib/python3.12 is writable"},
		{"a home anyone can write, no .local", "/home/alice", false,
			fakeFS{"/home/alice": dir(alice, 0o777)},
			"/home/alice is writable by group or others (mode 0777)"},
		{"/tmp as home", "/tmp", false, nil, "/tmp is a shared directory"},
		{".local a link to a shared directory", "/home/alice", false,
			fakeFS{"/home/alice/.local": symlink("/srv/shared")},
			"/home/alice/.local leads to /srv/shared, which is writable by group or others (mode 0777)"},
	}
	for _, c := range cases {
		fsys := baseFS()
		if c.site {
			maps.Copy(fsys, site)
		}
		maps.Copy(fsys, c.change)
		err := CheckUserSite(fsys.lstat, fsys.glob, alice, c.home)
		var ue *UntrustedError
		switch {
		case c.msg == "" && err != nil:
			t.Errorf("%s: %v; want trusted", c.name, err)
		case c.msg == "":
		case err == nil:
			t.Errorf("%s: trusted; want %q", c.name, c.msg)
		case !strings.Contains(err.Error(), c.msg):
			t.Errorf("%s: %q; want it to contain %q", c.name, err, c.msg)
		case !errors.As(err, &ue):
			t.Errorf("%s: %#v is no *UntrustedError (pyhostd __access reports each once by it)", c.name, err)
		}
	}
}

// The same decisions on the real file system, with files of a uid that
// is not the test's: that needs root (to chown).
func TestCheckTrustedRealFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chowning files to another uid needs root")
	}
	const owner, other = 4242, 4343
	base := t.TempDir() // root's, so the walk ends there
	app := filepath.Join(base, "app")
	script := filepath.Join(app, "wsgi.py")
	os.Mkdir(app, 0o755)
	os.WriteFile(script, nil, 0o644)
	os.Symlink(app, filepath.Join(base, "link"))
	for _, p := range []string{app, script} {
		if err := os.Chown(p, owner, owner); err != nil {
			t.Fatal(err)
		}
	}
	trusted := func(path string) error { return CheckTrusted(Lstat, owner, path) }
	for _, p := range []string{app, script, filepath.Join(base, "link")} {
		if err := trusted(p); err != nil {
			t.Errorf("%s: %v; want trusted", p, err)
		}
	}
	os.Chmod(app, 0o777)
	want := app + " is writable by group or others (mode 0777); run chmod go-w " + app
	if err := trusted(app); err == nil || err.Error() != want {
		t.Errorf("0777 directory: %v; want %q", err, want)
	}
	if err := trusted(script); err == nil || !strings.Contains(err.Error(), "is in "+app+", which is writable") {
		t.Errorf("a script in a 0777 directory: %v", err)
	}
	os.Chmod(app, 0o777|fs.ModeSticky)
	if err := trusted(app); err == nil || !strings.Contains(err.Error(), "a shared directory anyone can create files in (mode 1777)") {
		t.Errorf("a sticky 1777 directory: %v", err)
	}
	os.Chmod(app, 0o755)
	os.Chown(app, other, other)
	if err := trusted(script); err == nil || !strings.Contains(err.Error(), "owned by uid 4343") {
		t.Errorf("a script in another uid's directory: %v", err)
	}

	// A real virtualenv, when this system can make one.
	venv := filepath.Join(base, "venv")
	if out, err := exec.Command("python3", "-m", "venv", "--without-pip", venv).CombinedOutput(); err != nil {
		t.Logf("no virtualenv to check: %v %s", err, out)
		return
	}
	filepath.WalkDir(venv, func(p string, _ fs.DirEntry, _ error) error { return os.Lchown(p, owner, owner) })
	python := filepath.Join(venv, "bin", "python")
	if err := CheckInterpreter(Lstat, filepath.Glob, owner, python); err != nil {
		t.Errorf("a fresh virtualenv: %v", err)
	}
	sites, _ := filepath.Glob(filepath.Join(venv, "lib", "python3*", "site-packages"))
	if len(sites) != 1 {
		t.Fatalf("site-packages of the virtualenv: %v", sites)
	}
	os.Chmod(sites[0], 0o777)
	if err := CheckInterpreter(Lstat, filepath.Glob, owner, python); err == nil || !strings.Contains(err.Error(), sites[0]+" is writable by group or others") {
		t.Errorf("a virtualenv with a 0777 site-packages: %v", err)
	}
}

// Root hands over an existing file only if its new writer owns it
// already: a root-owned one (a mistaken access_log = "/etc/shadow") is
// refused, so are links, FIFOs and directories (issue 9 review, item 1).
func TestCheckHandover(t *testing.T) {
	proxy := Credential{UID: 990, GID: 990, Username: "pyhost"}
	for _, c := range []struct {
		n    FileNode
		want string // in the error; "" for none
	}{
		{FileNode{UID: 990, Mode: 0o640}, ""},
		{FileNode{UID: 990, Mode: 0o600}, ""},
		{FileNode{UID: 0, Mode: 0o640}, "owned by uid 0 (root), not by pyhost (uid 990)"},
		{FileNode{UID: alice, Mode: 0o666}, "owned by uid 1000, not by pyhost"},
		{FileNode{UID: 990, Mode: fs.ModeSymlink | 0o777, Link: "/etc/shadow"}, "is a symlink"},
		{FileNode{UID: 990, Mode: fs.ModeNamedPipe | 0o600}, "not a regular file (a FIFO)"},
		{FileNode{UID: 990, Mode: fs.ModeDir | 0o755}, "not a regular file (a directory)"},
		{FileNode{UID: 990, Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666}, "not a regular file (a character device)"},
	} {
		err := CheckHandover("/var/log/pyhost/access.log", c.n, proxy)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c.n, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want %q", c.n, err, c.want)
		}
	}
}
