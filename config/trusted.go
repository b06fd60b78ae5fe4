package config

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

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
