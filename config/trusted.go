package config

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// readTrusted reads an app file after the checks sshd's StrictModes
// makes (U4): the file, and every directory from it up to stopAt, must
// be owned by uid or root and not be writable by group or others; a
// symlink is followed only to a file with the same rights.
//
// Root runs this on paths a tenant chooses, so nothing is opened before
// it is known to be a regular file of uid's: a link to /dev/ptmx, a
// FIFO or a socket is refused from lstat(2) (of the name and of the
// link's target) alone, since opening a device can do something (a pty
// allocated, a tape rewound) and opening a FIFO can block. Then the file
// is opened with O_PATH|O_NOFOLLOW, which pins an inode without opening
// it (no driver is called, no FIFO waited on), its fstat must be the
// inode that was checked, and only that inode is opened for reading,
// through /proc/self/fd: a name swapped in between is refused, never
// read.
func readTrusted(path string, uid uint32, stopAt string) ([]byte, error) {
	real := path
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if real, err = filepath.EvalSymlinks(path); err != nil {
			return nil, err
		}
		// real has no symlink left in it: its lstat is the target's.
		if fi, err = os.Lstat(real); err != nil {
			return nil, err
		}
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
	f, err := openChecked(real, fi)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxAppFileSize+1))
}

// openChecked opens path for reading if it is still the regular file
// checked (fi, from lstat): the same device and inode.
func openChecked(path string, fi fs.FileInfo) (*os.File, error) {
	want, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("%w: cannot read the owner of %s", ErrUntrusted, path)
	}
	changed := fmt.Errorf("%w: %s changed while it was being checked; check again", ErrUntrusted, path)
	same := func(st *unix.Stat_t) bool {
		return st.Mode&unix.S_IFMT == unix.S_IFREG && st.Dev == want.Dev && st.Ino == want.Ino
	}
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	if !same(&st) {
		return nil, changed
	}
	// Opening the descriptor's /proc link opens the inode it holds, not
	// whatever the name leads to now.
	f, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(fd), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if got, err := f.Stat(); err != nil || !os.SameFile(got, fi) || !got.Mode().IsRegular() {
		f.Close()
		return nil, changed
	}
	return f, nil
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
