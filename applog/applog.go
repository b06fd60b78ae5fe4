// Package applog owns an app's log file: log_dir/USER/APP.log, readable
// by the app's owner and root only. Worker output, wsgi.errors and the
// supervisor's events for the app are written there one line at a time,
// each with a timestamp and the worker's pid; the file is reopened on
// demand (SIGUSR1 or `pyctl reopen-logs`, for logrotate) and can be
// tailed and followed, across rotations, for `pyctl logs`.
//
// It does not decide what is logged; the supervisor and the daemon do.
package applog

import (
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

	mu        sync.Mutex
	f         *os.File
	waiters   []chan struct{}         // followers waiting for the next line or a reopen
	followers map[*fileQueue]struct{} // each gets every file open swaps in
}

// fileQueue holds, for one follower, the files the log moved to since it
// last looked, oldest first, each a descriptor of its own. Guarded by the
// log's mu.
type fileQueue struct {
	files []*os.File
	err   error // a file could not be queued; the follower gives up
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
	// Read-write, so that Tail can read the very file lines go to through
	// a duplicate of this descriptor; O_APPEND keeps every write at the
	// end whatever a reader does.
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
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
	for q := range l.followers {
		if q.err != nil {
			continue
		}
		nf, err := dupFile(f)
		if err != nil {
			q.err = err
			continue
		}
		q.files = append(q.files, nf)
	}
	l.wakeLocked() // followers move to the new file
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

// NotePID, in place of a process's pid, marks a line as pyhost's own
// note about the app (a restart, a limit, an OOM kill) rather than a
// process's output; the log shows it as "[pyhost]".
const NotePID = 0

// Line appends one line: "TIME [pid PID] TEXT", or "TIME [pyhost] TEXT"
// for NotePID.
func (l *Log) Line(pid int, text string) {
	var b bytes.Buffer
	b.WriteString(time.Now().UTC().Format("2006-01-02T15:04:05.000Z"))
	if pid != NotePID {
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
	l.wakeLocked()
}

// wakeLocked wakes every follower; l.mu must be held.
func (l *Log) wakeLocked() {
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

// changed returns a channel closed at the next Line or reopen.
func (l *Log) changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := make(chan struct{})
	l.waiters = append(l.waiters, c)
	return c
}

// dupFile is a descriptor of its own for f's file, to read it through:
// the log's own descriptor is closed at the next reopen.
func dupFile(f *os.File) (*os.File, error) {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("dup app log: %w", err)
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// follow registers a follower: it returns a descriptor of the file lines
// go to now and the queue that will receive every later one. It reads
// through the log's own descriptor, not by name: between logrotate's
// rename and the reopen that follows, the name leads nowhere (or to an
// empty file logrotate created) while lines still go to the renamed file.
func (l *Log) follow() (*os.File, *fileQueue, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil, nil, errors.New("the log is closed")
	}
	f, err := dupFile(l.f)
	if err != nil {
		return nil, nil, err
	}
	q := &fileQueue{}
	if l.followers == nil {
		l.followers = make(map[*fileQueue]struct{})
	}
	l.followers[q] = struct{}{}
	return f, q, nil
}

// unfollow forgets q and closes what it still holds.
func (l *Log) unfollow(q *fileQueue) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.followers, q)
	for _, f := range q.files {
		f.Close()
	}
	q.files = nil
}

// moved takes the files q received since the last call.
func (l *Log) moved(q *fileQueue) ([]*os.File, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	files := q.files
	q.files = nil
	return files, q.err
}

// Tail calls out with the last n lines of the log, oldest first, and,
// when follow is set, with every line written after them until ctx ends.
//
// A follower follows the log across rotation, as `tail -F` does: after a
// reopen it reads what was still written to the old file, then the new
// file from its start; a file truncated under it (logrotate's
// copytruncate) is read again from its start. No line the log wrote is
// skipped by a reopen, however many come in a row.
func (l *Log) Tail(ctx context.Context, n int, follow bool, out func(string) error) error {
	wake := l.changed()
	f, q, err := l.follow()
	if err != nil {
		return fmt.Errorf("read app log: %w", err)
	}
	defer l.unfollow(q)
	t := &follower{f: f, out: out}
	defer func() { t.f.Close() }()
	lines, off, err := lastLines(f, n)
	if err != nil {
		return err
	}
	t.off = off
	for _, s := range lines {
		if err := out(s); err != nil {
			return err
		}
	}
	if !follow {
		return nil
	}
	for {
		// Take the files the log moved to first: once the log has moved
		// on from a file, nothing more goes to it, so reading it to its
		// end loses nothing.
		files, qerr := l.moved(q)
		err := t.drain()
		for i, next := range files {
			if err == nil {
				err = t.switchTo(next)
			} else {
				files[i].Close()
			}
		}
		if err == nil && len(files) == 0 {
			err = t.truncated()
		}
		if err == nil && qerr != nil {
			err = fmt.Errorf("follow app log: %w", qerr)
		}
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-time.After(time.Second):
			// A truncation by another process wakes nobody.
		}
		wake = l.changed()
	}
}

// follower reads a log file from off on, line by line.
type follower struct {
	f       *os.File
	off     int64
	partial []byte // a line not yet ended by '\n'
	out     func(string) error
	buf     []byte
}

// drain passes on every whole line from off to the end of the file.
func (t *follower) drain() error {
	if t.buf == nil {
		t.buf = make([]byte, 64<<10)
	}
	for {
		k, err := t.f.ReadAt(t.buf, t.off)
		t.off += int64(k)
		rest := t.buf[:k]
		for {
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				break
			}
			line := rest[:i]
			if len(t.partial) > 0 {
				line = append(t.partial, line...)
				t.partial = t.partial[:0]
			}
			if e := t.out(string(line)); e != nil {
				return e
			}
			rest = rest[i+1:]
		}
		t.partial = append(t.partial, rest...)
		if k == 0 || errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("follow app log: %w", err)
		}
	}
}

// switchTo moves to the log's new file, read from its start; a last
// line of the old file without its newline is passed on as it is.
func (t *follower) switchTo(next *os.File) error {
	t.f.Close()
	t.f, t.off = next, 0
	if len(t.partial) > 0 {
		line := string(t.partial)
		t.partial = t.partial[:0]
		if err := t.out(line); err != nil {
			return err
		}
	}
	return t.drain()
}

// truncated starts over when the file became shorter than what was read.
func (t *follower) truncated() error {
	fi, err := t.f.Stat()
	if err != nil {
		return fmt.Errorf("follow app log: %w", err)
	}
	if fi.Size() >= t.off {
		return nil
	}
	t.off, t.partial = 0, t.partial[:0]
	return t.drain()
}

// lastLines reads the last n lines of f and the offset after them.
func lastLines(f *os.File, n int) ([]string, int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("read app log: %w", err)
	}
	end := fi.Size()
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
