package privdrop

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Bits of CheckAsUser's want beyond the access(2) ones (Read, Write,
// Execute), for the paths that decide what code an app runs.
const (
	// Trusted: no user but the app's owner and root can change the path
	// (docs/design.md, "Trust before parsing", as sshd's StrictModes):
	// see CheckTrusted.
	Trusted = 8
	// Interpreter: the path is a Python interpreter, trusted along with
	// what it reads at startup to find its code: see CheckInterpreter.
	Interpreter = 16
	// UserSite: the path is the app owner's home, whose Python user site
	// must be Trusted: see CheckUserSite. It asks nothing of access(2).
	UserSite = 32
	// RegularFile: the path must be a regular file, or a symlink to one
	// (an app's script, its python): a FIFO named as the script would
	// pass every other check, and the worker would hang reading it until
	// startup_timeout.
	RegularFile = 64
	// Directory: the path must be a directory, or a symlink to one.
	Directory = 128
)

// FileNode is what the trust checks need to know of a file: what lstat(2)
// says of its owner and mode, and where a symlink points.
type FileNode struct {
	UID  uint32
	Mode fs.FileMode // type and permission bits, with ModeSticky, ModeSetgid…
	Link string      // a symlink's target, as readlink(2) returns it
}

// LstatFunc describes path without following a final symlink. Lstat is
// the real one; tests pass a fake file system.
type LstatFunc func(path string) (FileNode, error)

// Lstat is the LstatFunc of the running process: called as the app's
// user, it sees only what that user may see.
func Lstat(path string) (FileNode, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return FileNode{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return FileNode{}, fmt.Errorf("cannot read the owner of %s", path)
	}
	n := FileNode{UID: st.Uid, Mode: fi.Mode()}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if n.Link, err = os.Readlink(path); err != nil {
			return FileNode{}, err
		}
	}
	return n, nil
}

// UntrustedError is a path that users other than its app's owner and root
// could change (or, through a directory, replace): code planted there
// would run as the owner.
type UntrustedError struct {
	Path    string // as the app file names it
	Bad     string // what others could change: Path, or a directory on the way
	Problem string // what is wrong with Bad, and the fix
	how     string // how Path depends on Bad ("" when Bad is Path)
}

func (e *UntrustedError) Error() string {
	if e.how == "" {
		return e.Path + " is " + e.Problem
	}
	return e.Path + " " + e.how + ", which is " + e.Problem
}

// maxLinks bounds the symlinks followed in one path, as the kernel's
// MAXSYMLINKS (40) does.
const maxLinks = 40

// CheckTrusted reports, as an *UntrustedError, a path that users other
// than uid and root could change (sshd's StrictModes; docs/design.md,
// "Trust before parsing"): path itself, and every directory up from it
// to the first owned by root (included) or to /, must be owned by uid or
// root and not be writable by group or others. A shared directory such as /tmp (world-writable and sticky) is
// refused as well: anyone may create new names in it, such as a module
// the app would import. Symlinks are resolved and the real path is
// checked, and so is the directory that holds each symlink followed,
// whoever could replace the link could redirect the path. path must be
// absolute; lstat is called as uid, so that nothing uid could not see is
// examined or reported.
func CheckTrusted(lstat LstatFunc, uid uint32, path string) error {
	_, err := checkTrusted(lstat, uid, path)
	return err
}

// checkTrusted is CheckTrusted, returning path's real path as well.
func checkTrusted(lstat LstatFunc, uid uint32, path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%s: not an absolute path", path)
	}
	real, links, err := resolve(lstat, path)
	if err != nil {
		return "", err
	}
	for _, l := range links {
		if err := checkDirs(lstat, uid, l.dir, path, "goes through the symlink "+l.path+", in "); err != nil {
			return "", err
		}
	}
	n, err := lstat(real)
	if err != nil {
		return "", err
	}
	if problem := judge(n, uid, real); problem != "" {
		e := &UntrustedError{Path: path, Bad: real, Problem: problem}
		if real != path {
			e.how = "leads to " + real
		}
		return "", e
	}
	if real == "/" {
		return real, nil
	}
	how := "is in "
	if real != path {
		how = "leads to " + real + ", in "
	}
	return real, checkDirs(lstat, uid, filepath.Dir(real), path, how)
}

// checkDirs checks dir and the directories above it up to the first
// owned by root (included) or /; how tells how path depends on them.
func checkDirs(lstat LstatFunc, uid uint32, dir, path, how string) error {
	for ; ; dir = filepath.Dir(dir) {
		n, err := lstat(dir)
		if err != nil {
			return err
		}
		if problem := judge(n, uid, dir); problem != "" {
			return &UntrustedError{Path: path, Bad: dir, Problem: problem, how: how + dir}
		}
		if n.UID == 0 || dir == "/" {
			return nil
		}
	}
}

// judge says what is wrong with n, at path, for uid ("" when nothing).
func judge(n FileNode, uid uint32, path string) string {
	if n.Mode&fs.ModeSymlink != 0 {
		return "a symlink, changed while it was being checked; check again"
	}
	if n.UID != uid && n.UID != 0 {
		return fmt.Sprintf("owned by uid %d, not by the app's owner (uid %d) or root; the owner can use a copy of their own, or root can run chown %d %s", n.UID, uid, uid, path)
	}
	mode := unixMode(n.Mode)
	switch {
	case n.Mode&fs.ModeSticky != 0 && mode&0o002 != 0:
		return fmt.Sprintf("a shared directory anyone can create files in (mode %04o); use a directory of the app owner's own", mode)
	case mode&0o022 != 0:
		return fmt.Sprintf("writable by group or others (mode %04o); run chmod go-w %s", mode, path)
	}
	return ""
}

// unixMode is m's permission bits as chmod(1) numbers them.
func unixMode(m fs.FileMode) uint32 {
	mode := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

type link struct{ path, dir string } // a symlink followed, and its directory

// resolve follows path's symlinks one component at a time, as the kernel
// does, and returns the real path and every symlink followed.
func resolve(lstat LstatFunc, path string) (string, []link, error) {
	var links []link
	todo := strings.Split(path, "/")
	cur := "/"
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur) // cur is real, so its parent is too
			continue
		}
		next := filepath.Join(cur, name)
		n, err := lstat(next)
		if err != nil {
			return "", nil, err
		}
		if n.Mode&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if len(links) == maxLinks {
			return "", nil, &fs.PathError{Op: "resolve", Path: path, Err: syscall.ELOOP}
		}
		links = append(links, link{next, cur})
		if strings.HasPrefix(n.Link, "/") {
			cur = "/"
		}
		todo = append(strings.Split(n.Link, "/"), todo...)
	}
	return cur, links, nil
}

// CheckInterpreter checks, with CheckTrusted, a Python interpreter and
// what decides the code it runs before the app's own paths come in:
//
//   - the interpreter (its real file, and every symlink on the way);
//   - the directory that holds it as named (a virtualenv's bin) and the
//     one above (the virtualenv): Python looks for pyvenv.cfg in both;
//   - the first pyvenv.cfg found there, the one Python reads;
//   - the library directories of the prefix, PREFIX/lib*/python3* and
//     PREFIX/lib*/python3*/site-packages, where PREFIX is the directory
//     of that pyvenv.cfg, else the one above the real interpreter's bin:
//     a module or .pth file planted there runs at every start.
//
// Files further down (a package inside site-packages) are not examined.
// glob lists the names matching a pattern (filepath.Glob), as uid.
func CheckInterpreter(lstat LstatFunc, glob func(string) ([]string, error), uid uint32, python string) error {
	real, err := checkTrusted(lstat, uid, python)
	if err != nil {
		return err
	}
	bin := filepath.Dir(python)
	prefix := filepath.Dir(filepath.Dir(real))
	for _, dir := range []string{bin, filepath.Dir(bin)} {
		if err := CheckTrusted(lstat, uid, dir); err != nil {
			return err
		}
	}
	for _, dir := range []string{bin, filepath.Dir(bin)} {
		cfg := filepath.Join(dir, "pyvenv.cfg")
		if _, err := lstat(cfg); errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return err
		}
		if err := CheckTrusted(lstat, uid, cfg); err != nil {
			return err
		}
		prefix = dir
		break
	}
	base := escapeGlob(prefix)
	for _, pattern := range []string{base + "/lib*/python3*", base + "/lib*/python3*/site-packages"} {
		dirs, err := glob(pattern)
		if err != nil {
			return err
		}
		for _, d := range dirs {
			if err := CheckTrusted(lstat, uid, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// CheckUserSite checks, with CheckTrusted, the Python user site of the
// user whose home is home: Python puts HOME/.local/lib/pythonX.Y/
// site-packages on sys.path at every start, ahead of the system's
// site-packages, and runs the .pth files in it, so a directory there
// that another user could write (a 0777 ~/.local, say) lets them run
// code as the app's owner. It checks:
//
//   - every HOME/.local/lib/python3* directory and its site-packages,
//     for each Python version, not only the app's: a bare python =
//     "python3" names no version until it runs, and a stale directory
//     of another version is one chmod or rm away;
//   - the deepest of HOME/.local/lib, HOME/.local and HOME that exists
//     (and, as CheckTrusted does, every directory above it up to root's):
//     where pip install --user would make the user site, nobody else
//     may make it first.
//
// It applies whatever the interpreter: a virtualenv that ignores the
// user site is held to it too (the rule is simple and the fix is the
// owner's own chmod). A home that does not exist has nothing to check.
// glob lists the names matching a pattern (filepath.Glob), as uid.
func CheckUserSite(lstat LstatFunc, glob func(string) ([]string, error), uid uint32, home string) error {
	if !filepath.IsAbs(home) {
		return nil
	}
	home = filepath.Clean(home)
	wrap := func(err error) error {
		return fmt.Errorf("the Python user site, loaded at every start of the app: %w", err)
	}
	for _, d := range []string{home + "/.local/lib", home + "/.local", home} {
		_, err := lstat(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return wrap(err)
		}
		if err := CheckTrusted(lstat, uid, d); err != nil {
			return wrap(err)
		}
		break
	}
	base := escapeGlob(home) + "/.local/lib"
	for _, pattern := range []string{base + "/python3*", base + "/python3*/site-packages"} {
		dirs, err := glob(pattern)
		if err != nil {
			return wrap(err)
		}
		for _, d := range dirs {
			if err := CheckTrusted(lstat, uid, d); err != nil {
				return wrap(err)
			}
		}
	}
	return nil
}

// escapeGlob quotes the characters filepath.Match treats specially.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// CheckHandover says whether an existing file, at path and as lstat(2)
// describes it (n), may be handed to user to write: root gives the
// proxy's user its access log this way. Only a regular file that user
// owns already may (a previous run's, or one logrotate's `create` made):
// root never changes the owner of a file it did not just create itself
// (O_CREAT|O_EXCL), so a mistaken path (/etc/shadow, a root-owned log, a
// hard link to one) never becomes an unprivileged user's. A symlink is
// refused, not followed, and so is anything not a regular file (a FIFO
// would block the writer's open). Nil when the file may be handed over.
func CheckHandover(path string, n FileNode, user Credential) error {
	switch {
	case n.Mode&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symlink, which is not followed; name the file itself, or a path that does not exist yet", path)
	case !n.Mode.IsRegular():
		return fmt.Errorf("%s is not a regular file (%s); name a path that does not exist yet", path, FileType(n.Mode))
	case n.UID != user.UID:
		owner := fmt.Sprintf("uid %d", n.UID)
		if n.UID == 0 {
			owner += " (root)"
		}
		return fmt.Errorf("%s exists and is owned by %s, not by %s (uid %d), who would write it; pyhost hands over only a file it creates itself or one that user owns already: name a path that does not exist yet (pyhost creates it for %s), and chown a file to %s yourself only if it is an access log", path, owner, user.Username, user.UID, user.Username, user.Username)
	}
	return nil
}

// FileType names a file's type as messages say it: "a FIFO", "a
// directory"; pyhostd's path checks and the trust checks share it.
func FileType(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "mode " + m.String()
}
