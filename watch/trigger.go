package watch

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"

	"github.com/pyhost/pyhost/privdrop"
)

// StatFunc reports on a trigger file. It must not follow a symbolic link
// at the path's last element (os.Lstat does not); a symlink there is
// reported back and the watcher ignores it. It runs on the watcher's
// goroutine, at most once per trigger per burst (and per PollInterval
// when polling): a slow one delays events, not loses them.
type StatFunc func(path string) (fs.FileInfo, error)

// ErrSymlink is logged for a trigger that is a symbolic link (or any
// other non-regular file): it is never followed, and never fires.
var ErrSymlink = errors.New("not a regular file (a symbolic link is never followed)")

// StatAs returns a StatFunc that answers only what c could learn itself:
// as root it lstats the trigger with c's file-system credentials
// (privdrop.LstatAs), so the kernel resolves the whole path, symlinked
// directories and all, with the owner's rights in one step, and a root
// daemon never reports on a file its owner could not stat, whatever
// links the owner planted or swaps meanwhile. (It used to check mode
// bits along the path and then lstat as root: a directory swapped for a
// symlink between the two made root stat a file in /root.)
func StatAs(c privdrop.Credential) StatFunc {
	return func(path string) (fs.FileInfo, error) {
		return privdrop.LstatAs(c, path)
	}
}

// fstate is what identifies one version of a file: a touch changes the
// mtime, a rename over it or a delete and create changes the inode.
type fstate struct {
	exists   bool
	dev, ino uint64
	size     int64
	mtime    int64 // ns
}

func stateOf(fi fs.FileInfo) fstate {
	s := fstate{exists: true, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), st.Ino
	}
	return s
}

// trigger is one watched file. The loop owns it.
type trigger struct {
	path string // as given: reported, and stat'ed
	dir  string // filepath.Dir(path), as given
	base string
	// rdir is dir with its symlinks resolved, the directory actually
	// watched (inotify follows links when a watch is added, and events
	// are named after the path the watch was added with); "" while dir
	// does not exist (then the trigger is polled).
	rdir  string
	state fstate
	// touched: an event named the trigger as created, written or touched
	// since its last check; dirty: the trigger must be checked at the
	// next flush (any event named it, or its directory changed).
	touched, dirty bool
	// dirWarned: its directory could not be watched, and that was said.
	dirWarned bool
	// complained: the last check failed and was logged; log again only
	// after a success.
	complained bool
}

// check stats t and reports whether it fired: it exists as a regular
// file and either an event named it since the last check or its identity
// changed. A trigger that disappears does not fire: deleting restart.txt
// is tidying up, not a deploy; creating it again fires.
func (w *Watcher) check(t *trigger) bool {
	touched := t.touched
	t.touched, t.dirty = false, false
	fi, err := w.stat(t.path)
	if err == nil && !fi.Mode().IsRegular() {
		err = ErrSymlink
	}
	var now fstate
	switch {
	case err == nil:
		now = stateOf(fi)
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		// absent
	default:
		if !t.complained {
			t.complained = true
			w.log.Warn("reload trigger not checked", "path", t.path, "error", err)
		}
		return false
	}
	if t.complained {
		t.complained = false
		w.log.Info("reload trigger checked again", "path", t.path)
	}
	fired := now.exists && (touched || now != t.state)
	t.state = now
	return fired
}

func (t *trigger) mark() { t.dirty = true }

// validTriggers validates paths for Options.Triggers and SetTriggers.
func validTriggers(paths []string) error {
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("reload trigger %q: not an absolute path", p)
		}
		if filepath.Base(p) == string(filepath.Separator) {
			return fmt.Errorf("reload trigger %q: not a file", p)
		}
	}
	return nil
}
