package master

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The pid file ([daemon] pid_file) is for tools that want one (monit,
// a non-systemd init script, logrotate's kill -USR1). It is written once
// the daemon holds its instance lock and its listeners are bound, so a
// pid in it is a daemon that got that far. It is a fact, never a guard:
// a file left by a crash (or naming any other process) is overwritten,
// not believed; the instance lock (package instance) is what keeps a
// second daemon of the same state_dir out, and that daemon never reaches
// the pid file. One exception: a file naming another pyhostd that runs
// (the same binary) is a second daemon, with a state_dir of its own,
// given the same pid_file: taking it over would leave the first one's
// tools signalling the wrong daemon, and the second's exit would remove
// the file of the first, still running. That start is refused.

// writePIDFile writes this process's pid to path: a new file in the
// same directory renamed over it, so a reader never sees half a pid and
// a symlink planted at path is replaced, not followed.
func writePIDFile(path string) error {
	if path == "" {
		return nil
	}
	if pid, ok := runningPyhostd(path); ok {
		return fmt.Errorf("pid_file %s names pid %d, a pyhostd that runs (another daemon, with a state_dir of its own?); give each daemon a pid_file of its own", path, pid)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("pid_file: %w", err)
	}
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o644)
	if errors.Is(err, fs.ErrExist) {
		// Left by a daemon of the same pid that crashed here (a reboot
		// without tmpfs): ours to replace.
		os.Remove(tmp)
		f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o644)
	}
	if err != nil {
		return fmt.Errorf("pid_file: %w", err)
	}
	_, err = f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pid_file: %w", err)
	}
	return nil
}

// removePIDFile removes path if it still names this process: one that
// names another (an admin who gave two daemons one pid_file) is theirs.
func removePIDFile(path string) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pid_file: %w", err)
	}
	if strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pid_file: %w", err)
	}
	return nil
}

// runningPyhostd reports the pid in the file at path when it is another
// live process running this same binary.
func runningPyhostd(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return 0, false
	}
	self, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, false
	}
	// A daemon started before its binary was upgraded runs a file now
	// "(deleted)"; still the same program.
	other, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil || strings.TrimSuffix(other, " (deleted)") != strings.TrimSuffix(self, " (deleted)") {
		return 0, false
	}
	return pid, true
}
