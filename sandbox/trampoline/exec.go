package trampoline

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Exec is the trampoline's whole work (pyhost-sandbox JOB -- PATH
// ARGV..., or pyhostd sandbox-exec with the same arguments): in the
// mount namespace sandbox.Wrap asked for, still root, it applies the
// job's Plan, drops to the job's user, enters its directory and executes
// PATH with ARGV and the environment it was given. It returns only on
// failure, before the app's code ran; the caller prints the error (the
// app's log) and exits non-zero.
func Exec(args []string) error {
	// The parent-death signal is per thread and cleared by the change of
	// user: it is set again on the thread that executes the program.
	runtime.LockOSThread()
	parent := os.Getppid()
	if len(args) < 4 || args[1] != "--" {
		return errors.New("usage: " + Binary + " JOB -- PATH ARGV")
	}
	var j Job
	if err := json.Unmarshal([]byte(args[0]), &j); err != nil {
		return fmt.Errorf("bad job: %w", err)
	}
	if j.Version != Version {
		// A pyhost-sandbox of another release than the daemon that
		// started it (an upgrade replaced one and the daemon runs on):
		// the job may mean something else to it.
		return fmt.Errorf("job format %d, this %s understands %d: restart pyhostd after an upgrade", j.Version, Binary, Version)
	}
	path, argv := args[2], args[3:]
	if j.UID == 0 {
		return ErrRootApp
	}
	if err := ownNamespace(parent); err != nil {
		return err
	}
	if err := Apply(j.Plan); err != nil {
		return err
	}
	if err := drop(j.UID, j.GID, j.Groups); err != nil {
		return err
	}
	if err := os.Chdir(j.Dir); err != nil {
		return fmt.Errorf("enter the app's directory: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("parent-death signal: %w", err)
	}
	if os.Getppid() != parent {
		return errors.New("the daemon exited while the sandbox was being set up")
	}
	return fmt.Errorf("exec %s: %w", path, syscall.Exec(path, argv, os.Environ()))
}

// ownNamespace refuses to go on unless this process has a mount
// namespace of its own, not its parent's: run by hand as root, without
// Wrap's unshare, the Plan would cover the host's /home.
func ownNamespace(parent int) error {
	var mine, theirs unix.Stat_t
	if err := unix.Stat("/proc/self/ns/mnt", &mine); err != nil {
		return fmt.Errorf("read this process's mount namespace: %w", err)
	}
	if err := unix.Stat("/proc/"+strconv.Itoa(parent)+"/ns/mnt", &theirs); err != nil {
		return fmt.Errorf("read the parent's mount namespace: %w", err)
	}
	if mine.Ino == theirs.Ino && mine.Dev == theirs.Dev {
		return errors.New("not in a mount namespace of its own (the trampoline is started by pyhostd, never by hand)")
	}
	return nil
}

// drop becomes uid, gid and exactly groups on this thread (Exec locked
// it), in the order the kernel's rules need (groups and gid while still
// root), and checks it took: nothing of root's may reach the app.
//
// Raw system calls, not syscall.Setuid and its siblings: those change
// every thread of the process, stopping each to do so, which cost
// milliseconds per start on a loaded machine. Here only the thread that
// executes the program matters: execve gives the process that thread's
// credentials and ends every other thread, and until then the others
// run only Go's runtime, no code of the app's.
func drop(uid, gid uint32, groups []uint32) error {
	gs := groups
	if len(gs) == 0 {
		gs = []uint32{gid} // a pointer to pass; the count says none
	}
	if _, _, e := unix.RawSyscall(sysSetgroups, uintptr(len(groups)), uintptr(unsafe.Pointer(&gs[0])), 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	if _, _, e := unix.RawSyscall(sysSetresgid, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
		return fmt.Errorf("setgid: %w", e)
	}
	if _, _, e := unix.RawSyscall(sysSetresuid, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
		return fmt.Errorf("setuid: %w", e)
	}
	ru, eu, su := unix.Getresuid()
	rg, eg, sg := unix.Getresgid()
	if ru != int(uid) || eu != int(uid) || su != int(uid) || rg != int(gid) || eg != int(gid) || sg != int(gid) {
		return fmt.Errorf("the drop to %d:%d did not take", uid, gid)
	}
	return nil
}

// Apply builds p's view in the current mount namespace, which must be a
// private one of this process's (Wrap's Unshareflags): every Bind source
// is opened first, so it is the host's whatever the Steps before it
// hide, then the Steps run in order.
func Apply(p Plan) error {
	// Nothing mounted here may reach the host's namespace; Go's unshare
	// did this already, and doing it again costs one call.
	if err := unix.Mount("none", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	sources := map[int]*os.File{}
	defer func() {
		for _, f := range sources {
			f.Close()
		}
	}()
	for i, s := range p.Steps {
		if s.Kind != Bind {
			continue
		}
		fd, err := unix.Open(s.Path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			continue // nothing to keep
		}
		if err != nil {
			return fmt.Errorf("open %s to keep it: %w", s.Path, err)
		}
		sources[i] = os.NewFile(uintptr(fd), s.Path)
	}
	for i, s := range p.Steps {
		var err error
		switch s.Kind {
		case Tmpfs:
			err = cover(s.Path, s.Mode)
		case Bind:
			if f := sources[i]; f != nil {
				err = bindBack(f, s.Path)
			}
		case Proc:
			err = mountProc(s.Path)
		default:
			err = fmt.Errorf("unknown step %q", s.Kind)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// cover mounts an empty tmpfs over dir, unless dir is not there to see.
// A cover holds only mount points (its root's mode is 0755, root's); the
// private /tmp (01777) is the app's, charged to its memory cgroup.
func cover(dir string, mode uint32) error {
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hide %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("hide %s: not a directory", dir)
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	opts := "mode=" + strconv.FormatUint(uint64(mode), 8)
	if mode != TmpMode {
		flags |= unix.MS_NOEXEC
		opts += ",size=1m"
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", flags, opts); err != nil {
		return fmt.Errorf("hide %s: %w", dir, err)
	}
	return nil
}

// bindBack mounts src (the host's object, opened before any cover) at
// path, creating its mount point and the directories above it inside
// the cover it lies in.
func bindBack(src *os.File, path string) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return fmt.Errorf("keep %s: %w", path, err)
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if err := mountPoint(path, isDir); err != nil {
		return fmt.Errorf("keep %s: %w", path, err)
	}
	from := "/proc/self/fd/" + strconv.Itoa(int(src.Fd()))
	if err := unix.Mount(from, path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("keep %s: %w", path, err)
	}
	return nil
}

// mountPoint makes path exist, as a directory or an empty file, with
// the directories above it (root's, 0755). It runs as root, so it
// follows no symbolic link it did not expect: one in the way is an
// error, not a path to create things through. Created components are
// only ever inside a cover (a Bind's path exists in the host's view;
// what is missing was hidden by this Plan's tmpfs).
func mountPoint(path string, isDir bool) error {
	parts := strings.Split(strings.TrimPrefix(filepath.Clean(path), "/"), "/")
	cur := "/"
	for i, part := range parts {
		cur = filepath.Join(cur, part)
		last := i == len(parts)-1
		st, err := os.Lstat(cur)
		switch {
		case err == nil && st.Mode()&fs.ModeSymlink != 0 && !last:
			// A link above the mount point resolves as the host's does
			// (/home -> /data/home): only the last one must not be.
			continue
		case err == nil && st.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symbolic link", cur)
		case err == nil:
			continue
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
		if !last || isDir {
			err = os.Mkdir(cur, 0o755)
		} else {
			var f *os.File
			f, err = os.OpenFile(cur, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o644)
			if err == nil {
				f.Close()
			}
		}
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

// mountProc mounts a procfs of this process's pid namespace over dir in
// which each user sees only its own processes. Since Linux 5.8 each
// procfs mount has options of its own (hidepid=invisible is then
// understood); before, the mount would share the host's and change it,
// so an older kernel's refusal of "invisible" leaves /proc as it is, and
// the trampoline says so in the app's log.
func mountProc(dir string) error {
	err := unix.Mount("proc", dir, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "hidepid=invisible")
	if errors.Is(err, unix.EINVAL) {
		fmt.Fprintln(os.Stderr, "pyhost sandbox: this kernel (before 5.8) has no per-mount hidepid; other users' processes stay visible in /proc")
		return nil
	}
	if err != nil {
		return fmt.Errorf("mount %s: %w", dir, err)
	}
	return nil
}
