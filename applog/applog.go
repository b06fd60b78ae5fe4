// Package applog owns an app's log file: log_dir/USER/APP.log, readable
// by the app's owner and root only. Worker output, wsgi.errors and the
// supervisor's events for the app are written there one line at a time,
// each with a timestamp and the worker's pid; the file is reopened on
// demand (SIGUSR1, for logrotate) and can be tailed and followed for
// `pyctl logs`.
//
// It does not decide what is logged; the supervisor and the daemon do.
package applog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Log is one app's log file. It is safe for concurrent use.
type Log struct {
	path     string
	uid, gid int

	mu      sync.Mutex
	f       *os.File
	waiters []chan struct{} // followers waiting for the next line
}

// Open opens (creating if needed) the log at path for the app's owner.
//
// The directory above path must be owned by root and not writable by
// others (the daemon creates it with MakeDir): the file is opened with
// O_NOFOLLOW, and nobody but root can plant a link in its place. The file
// is owned by uid:gid with mode 0600, so its owner reads it, and nobody
// else but root. uid -1 leaves ownership alone (express mode).
func Open(path string, uid, gid int) (*Log, error) {
	l := &Log{path: path, uid: uid, gid: gid}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

// MakeDir creates log_dir/USER for a user whose primary group is gid:
// owned by root, so the owner can reach their files but not replace
// them, and closed to every other tenant, who must not even learn the
// names of the user's apps. When the group is the user's own (private)
// the mode is 0750 and the owner can list it; when the group is shared
// with others it is 0710, and the owner opens their logs by name (pyctl
// logs does it for them). Run by a non-root user (express mode), it is
// theirs with mode 0700. gid < 0 means "not root": nothing is chowned.
func MakeDir(dir string, gid int, privateGroup bool) error {
	mode := os.FileMode(0o700)
	if gid >= 0 {
		mode = 0o710
		if privateGroup {
			mode = 0o750
		}
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("log directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("log directory %s is not a directory", dir)
	}
	if gid >= 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != 0 || int(st.Gid) != gid {
			if err := os.Lchown(dir, 0, gid); err != nil {
				return fmt.Errorf("log directory: %w", err)
			}
		}
	}
	return os.Chmod(dir, mode)
}

func (l *Log) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("open app log: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return fmt.Errorf("app log %s is not a regular file", l.path)
	}
	if l.uid >= 0 {
		if err := f.Chown(l.uid, l.gid); err != nil {
			f.Close()
			return fmt.Errorf("app log ownership: %w", err)
		}
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return fmt.Errorf("app log mode: %w", err)
		}
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Reopen closes and reopens the file, after logrotate moved it away.
func (l *Log) Reopen() error { return l.open() }

// Path is the file's path.
func (l *Log) Path() string { return l.path }

// Line appends one line: "TIME [pid PID] TEXT". pid 0 is the
// supervisor's own line ("[pyhost]").
func (l *Log) Line(pid int, text string) {
	var b bytes.Buffer
	b.WriteString(time.Now().UTC().Format("2006-01-02T15:04:05.000Z"))
	if pid > 0 {
		fmt.Fprintf(&b, " [pid %d] ", pid)
	} else {
		b.WriteString(" [pyhost] ")
	}
	b.WriteString(text)
	b.WriteByte('\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Write(b.Bytes())
	}
	for _, c := range l.waiters {
		close(c)
	}
	l.waiters = nil
}

// Close closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// changed returns a channel closed at the next Line.
func (l *Log) changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := make(chan struct{})
	l.waiters = append(l.waiters, c)
	return c
}

// Tail calls out with the last n lines of the file, oldest first, and,
// when follow is set, with every line written after them until ctx ends.
func (l *Log) Tail(ctx context.Context, n int, follow bool, out func(string) error) error {
	f, err := os.Open(l.path)
	if err != nil {
		return fmt.Errorf("read app log: %w", err)
	}
	defer f.Close()
	wake := l.changed()
	lines, off, err := lastLines(f, n)
	if err != nil {
		return err
	}
	for _, s := range lines {
		if err := out(s); err != nil {
			return err
		}
	}
	if !follow {
		return nil
	}
	r := bufio.NewReader(io.NewSectionReader(f, off, 1<<62))
	var partial []byte
	for {
		for {
			b, err := r.ReadBytes('\n')
			if len(b) > 0 && err == nil {
				if e := out(string(append(partial, b[:len(b)-1]...))); e != nil {
					return e
				}
				partial = partial[:0]
				continue
			}
			partial = append(partial, b...)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("follow app log: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
			wake = l.changed()
		case <-time.After(time.Second):
			// Lines written by another process (a rotated file) are
			// noticed within a second too.
		}
	}
}

// lastLines reads the last n lines of f and the offset after them.
func lastLines(f *os.File, n int) ([]string, int64, error) {
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, 0, fmt.Errorf("read app log: %w", err)
	}
	if n <= 0 {
		return nil, end, nil
	}
	const chunk = 64 << 10
	var buf []byte
	pos := end
	for pos > 0 && bytes.Count(buf, []byte{'\n'}) <= n {
		step := int64(chunk)
		if pos < step {
			step = pos
		}
		pos -= step
		b := make([]byte, step)
		if _, err := f.ReadAt(b, pos); err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, fmt.Errorf("read app log: %w", err)
		}
		buf = append(b, buf...)
	}
	text := string(bytes.TrimSuffix(buf, []byte{'\n'}))
	if text == "" {
		return nil, end, nil
	}
	lines := bytes.Split([]byte(text), []byte{'\n'})
	if pos > 0 {
		lines = lines[1:] // the first may be cut
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := make([]string, len(lines))
	for i, b := range lines {
		out[i] = string(b)
	}
	return out, end, nil
}

// FilePath is log_dir/USER/APP.log.
func FilePath(logDir, user, app string) string {
	return filepath.Join(logDir, user, app+".log")
}
