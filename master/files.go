// The files the master makes: the worker script, the socket directory,
// the access log handed to the proxy, and each app's log.

package master

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/pyhost/pyhost/applog"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/wsgiadapter"
)

// writeScript writes the worker script where every app user can read it
// and none can change it: replaced atomically, so a worker starting now
// never reads half a file.
func writeScript(path string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, wsgiadapter.WorkerScript, 0o644); err != nil {
		return fmt.Errorf("write worker script: %w", err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("write worker script: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write worker script: %w", err)
	}
	return nil
}

// prepareSocketDir creates the directory for worker sockets. Only the
// proxy's user (and root) may enter it, so no app of another user can
// reach a worker socket.
func (m *Master) prepareSocketDir() error {
	dir := m.cfg.SocketDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, int(m.cfg.ProxyCred.UID), int(m.cfg.ProxyCred.GID)); err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
	}
	return nil
}

// prepareAccessLog creates the access log if it is missing, for the
// proxy's user to append to: the proxy cannot create files in a log
// directory that root owns, and must not be able to. Root changes the
// owner of no file but one it has just created (O_CREAT|O_EXCL): an
// existing file must be the proxy's user's already (a previous run's, or
// logrotate's `create`), or a mistaken path such as /etc/shadow, a
// root-owned log or a hard link to one would become the proxy's. The
// judgement is privdrop.CheckHandover, the one pyhostd check prints.
func (m *Master) prepareAccessLog() error {
	path := m.cfg.AccessLog
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	// Twice at most: logrotate may move an existing file away between the
	// create that found it and the lstat that judges it.
	for try := 0; ; try++ {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o640)
		if err == nil {
			// Ours: the descriptor is the file just made, whatever the
			// name leads to by now.
			if os.Geteuid() == 0 {
				err = f.Chown(int(m.cfg.ProxyCred.UID), int(m.cfg.ProxyCred.GID))
			}
			f.Close()
			if err != nil {
				return fmt.Errorf("access log: %w", err)
			}
			break
		}
		if !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("access log: %w", err)
		}
		// There already (a symlink too: O_EXCL does not follow one).
		// Looked at, never opened, by root.
		n, err := privdrop.Lstat(path)
		if errors.Is(err, os.ErrNotExist) && try == 0 {
			continue
		}
		if err != nil {
			return fmt.Errorf("access log: %w", err)
		}
		if err := privdrop.CheckHandover(path, n, m.cfg.ProxyCred); err != nil {
			return fmt.Errorf("access log: %w", err)
		}
		break
	}
	// The proxy opens it by path (again after every rotation): say now,
	// plainly, if its user cannot.
	if err := privdrop.CheckAccess(m.cfg.ProxyCred, path, privdrop.Write); err != nil {
		return fmt.Errorf("access log %s: the proxy's user %s cannot write it: %w", path, m.cfg.ProxyCred.Username, err)
	}
	return nil
}

// openAppLog opens LogDir/USER/APP.log for a, owned by a's user.
func (m *Master) openAppLog(a config.App) (*applog.Log, error) {
	dir := filepath.Join(m.cfg.LogDir, a.Cred.Username)
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		uid, gid = int(a.Cred.UID), int(a.Cred.GID)
	}
	if err := applog.MakeDir(dir, gid, privdrop.PrivateGroup(a.Cred)); err != nil {
		return nil, err
	}
	return applog.Open(applog.FilePath(m.cfg.LogDir, a.Cred.Username, a.Name), uid, gid)
}
