package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
)

// Defaults and bounds of Options.
const (
	DefaultQuiet        = 200 * time.Millisecond
	DefaultMaxDelay     = 2 * time.Second
	DefaultMaxDirs      = 5000
	DefaultPollInterval = time.Second

	minInterval = 10 * time.Millisecond
	maxPoll     = time.Minute
)

// Options says what a Watcher watches. The zero value of every field but
// Root and Triggers means its default.
type Options struct {
	// Root is the directory watched recursively for --reload; "" for
	// none. It is resolved (symlinks, relative path) once, at New.
	Root string
	// Include adds globs to DefaultInclude; Exclude removes files and
	// whole directories. See the package doc for the matching rules.
	Include, Exclude []string
	// Triggers are files whose touch fires a change: absolute paths, in
	// or out of Root (the app file, a restart.txt). SetTriggers replaces
	// them later.
	Triggers []string

	// Quiet is how long a burst must pause before it is reported
	// (DefaultQuiet); MaxDelay bounds how long a burst that never pauses
	// is held (DefaultMaxDelay; never less than Quiet).
	Quiet, MaxDelay time.Duration
	// MaxDirs bounds the directories a tree watch uses (DefaultMaxDirs).
	MaxDirs int
	// PollInterval is how often files are stat'ed when polling, and how
	// often triggers' directories are re-resolved and missing ones looked
	// for (DefaultPollInterval; at least 10ms, at most a minute).
	PollInterval time.Duration
	// Poll forces polling instead of inotify.
	Poll bool

	// Stat reports on trigger files (nil: os.Lstat). In system mode pass
	// StatAs(owner) so a trigger is judged with its owner's rights.
	Stat StatFunc
	// Logger receives the watcher's notices (nil: discarded).
	Logger hclog.Logger

	hooks *testHooks
}

// testHooks let the package's tests synchronize on the loop without
// sleeping. Called on the loop goroutine; they must not block.
type testHooks struct {
	event func(name string)      // every raw inotify event, before filtering
	scan  func()                 // after every polling scan
	add   func(dir string) error // before each inotify watch is added; an error fails it
}

// Watcher watches a tree and trigger files and reports debounced changes.
type Watcher struct {
	changes chan Change
	setReq  chan setReq
	probe   chan chan loopState
	cancel  context.CancelFunc
	done    chan struct{}
	polling atomic.Bool
	once    sync.Once

	log                        hclog.Logger
	stat                       StatFunc
	quiet, maxDelay, pollEvery time.Duration
	maxDirs                    int
	hooks                      *testHooks

	// Everything below is owned by the loop goroutine (and by New before
	// the loop starts).
	fsw       *fsnotify.Watcher // nil when polling
	root      string            // resolved; "" without a tree
	shownRoot string            // as given (made absolute), for Change.Paths
	filter    *filter
	tdirs     map[string]bool // tree directories watched
	uses      map[string]int  // watched directory -> users (tree, triggers)
	warnedMax bool
	triggers  map[string]*trigger // by path as given
	byDir     map[string][]*trigger
	snapshot  map[string]fstate // polling: the tree's wanted files
	deb       debouncer
	acc       batch  // events since the last flush
	ready     *batch // flushed, not yet taken by the consumer
	readyC    Change // ready as a Change
	pollNext  time.Duration
	running   bool // the loop has started
}

// loopState answers the tests' probe.
type loopState struct{ pending, ready bool }

type setReq struct {
	paths []string
	reply chan error
}

// New starts watching. The watcher stops when ctx is done or Close is
// called; then Changes is closed.
func New(ctx context.Context, o Options) (*Watcher, error) {
	w := &Watcher{
		changes:   make(chan Change),
		setReq:    make(chan setReq),
		probe:     make(chan chan loopState),
		done:      make(chan struct{}),
		log:       o.Logger,
		stat:      o.Stat,
		quiet:     o.Quiet,
		maxDelay:  o.MaxDelay,
		pollEvery: o.PollInterval,
		maxDirs:   o.MaxDirs,
		hooks:     o.hooks,
		uses:      map[string]int{},
		tdirs:     map[string]bool{},
		triggers:  map[string]*trigger{},
		byDir:     map[string][]*trigger{},
	}
	if w.log == nil {
		w.log = hclog.NewNullLogger()
	}
	if w.stat == nil {
		w.stat = os.Lstat
	}
	if w.quiet <= 0 {
		w.quiet = DefaultQuiet
	}
	w.quiet = max(w.quiet, minInterval)
	if w.maxDelay <= 0 {
		w.maxDelay = DefaultMaxDelay
	}
	w.maxDelay = max(w.maxDelay, w.quiet)
	if w.pollEvery <= 0 {
		w.pollEvery = DefaultPollInterval
	}
	w.pollEvery = min(max(w.pollEvery, minInterval), maxPoll)
	w.pollNext = w.pollEvery
	if w.maxDirs <= 0 {
		w.maxDirs = DefaultMaxDirs
	}
	w.deb = debouncer{quiet: w.quiet, max: w.maxDelay}
	if err := validTriggers(o.Triggers); err != nil {
		return nil, err
	}
	f, err := newFilter(o.Include, o.Exclude)
	if err != nil {
		return nil, err
	}
	w.filter = f
	if o.Root != "" {
		abs, err := filepath.Abs(o.Root)
		if err != nil {
			return nil, err
		}
		real, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return nil, fmt.Errorf("watch %s: %w", o.Root, err)
		}
		if fi, err := os.Stat(real); err != nil {
			return nil, fmt.Errorf("watch %s: %w", o.Root, err)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("watch %s: not a directory", o.Root)
		}
		w.root, w.shownRoot = real, abs
	}

	if o.Poll {
		w.log.Info("file watching polls", "every", w.pollEvery)
		w.polling.Store(true)
	} else if w.fsw, err = fsnotify.NewWatcher(); err != nil {
		// EMFILE: the user's 128 inotify instances are used up.
		w.log.Warn("file watching falls back to polling", "every", w.pollEvery, "reason", err)
		w.polling.Store(true)
	}
	if err := w.start(); err != nil {
		if !errors.Is(err, syscall.ENOSPC) {
			w.closeInotify()
			return nil, err
		}
		w.fallback(err)
	}
	for _, p := range o.Triggers {
		if err := w.addTrigger(p); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				w.closeInotify()
				return nil, err
			}
			w.fallback(err)
		}
	}

	ctx, w.cancel = context.WithCancel(ctx)
	go w.loop(ctx)
	return w, nil
}

// Changes delivers one Change per debounced burst. A consumer that is
// slow (busy reloading) loses nothing: bursts that finish meanwhile are
// merged into the one waiting to be taken. Closed when the watcher stops.
func (w *Watcher) Changes() <-chan Change { return w.changes }

// Close stops the watcher and waits for its goroutines to end. It is
// idempotent.
func (w *Watcher) Close() error {
	w.once.Do(w.cancel)
	<-w.done
	return nil
}

// Mode is "inotify", or "polling" once the watcher fell back (or was
// told to poll).
func (w *Watcher) Mode() string {
	if w.polling.Load() {
		return "polling"
	}
	return "inotify"
}

// SetTriggers replaces the trigger files (absolute paths). A new trigger's
// current state is its baseline: adding one never fires it. An error
// leaves the previous set.
func (w *Watcher) SetTriggers(paths []string) error {
	if err := validTriggers(paths); err != nil {
		return err
	}
	r := setReq{paths: paths, reply: make(chan error, 1)}
	select {
	case w.setReq <- r:
		return <-r.reply
	case <-w.done:
		return errors.New("watcher closed")
	}
}

// start takes the tree's baseline: its watches, or its snapshot.
func (w *Watcher) start() error {
	if w.root == "" {
		return nil
	}
	if w.polling.Load() {
		w.snapshot = w.scanTree()
		return nil
	}
	return w.walk(w.root, w.watchDir, nil)
}

func (w *Watcher) loop(ctx context.Context) {
	defer close(w.done)
	defer close(w.changes)
	defer w.closeInotify()
	w.running = true

	flush := time.NewTimer(time.Hour)
	flush.Stop()
	defer flush.Stop()
	var armed time.Time // the flush timer's deadline; zero when stopped
	tick := time.NewTimer(w.pollNext)
	defer tick.Stop()

	for {
		var out chan<- Change
		if w.ready != nil {
			out = w.changes
		}
		var events <-chan fsnotify.Event
		var errs <-chan error
		if w.fsw != nil {
			events, errs = w.fsw.Events, w.fsw.Errors
		}
		var tickC <-chan time.Time
		if w.polling.Load() || len(w.triggers) > 0 {
			tickC = tick.C
		}
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				w.fallback(errors.New("inotify stopped"))
				break
			}
			if err := w.handle(ev); err != nil {
				w.fallback(err)
			}
		case err, ok := <-errs:
			if !ok {
				w.fallback(errors.New("inotify stopped"))
				break
			}
			w.handleError(err)
		case <-flush.C:
			armed = time.Time{}
			w.flush()
		case <-tickC:
			w.tick()
			tick.Reset(w.pollNext)
		case r := <-w.setReq:
			r.reply <- w.setTriggers(r.paths)
		case out <- w.readyC:
			w.ready = nil
		case reply := <-w.probe:
			reply <- loopState{pending: w.deb.pending || !w.acc.empty(), ready: w.ready != nil}
		}

		// Keep the flush timer on the burst's deadline. (Since Go 1.23
		// a Reset or Stop timer never delivers a stale tick.)
		if at, ok := w.deb.due(); ok && !at.Equal(armed) {
			flush.Reset(time.Until(at))
			armed = at
		} else if !ok && !armed.IsZero() {
			flush.Stop()
			armed = time.Time{}
		}
	}
}

// event notes that something happened now.
func (w *Watcher) event() { w.deb.event(time.Now()) }

// flush ends a burst: triggers named by events are checked, and what
// changed is handed to the consumer (merged into what it has not taken).
func (w *Watcher) flush() {
	w.deb.reset()
	for _, t := range w.triggers {
		if t.dirty {
			if w.check(t) {
				w.acc.add(t.path)
			}
		}
	}
	if w.acc.empty() {
		return
	}
	if w.ready == nil {
		w.ready = &batch{}
	}
	w.ready.merge(w.acc)
	w.readyC = w.ready.change()
	w.acc = batch{}
}

// handle applies one inotify event. An error means inotify cannot go on
// (the watch limit): the caller falls back to polling.
func (w *Watcher) handle(ev fsnotify.Event) error {
	if w.hooks != nil && w.hooks.event != nil {
		w.hooks.event(ev.Name)
	}
	dir, base := filepath.Dir(ev.Name), filepath.Base(ev.Name)
	gone := ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)

	for _, t := range w.byDir[dir] {
		if t.base == base {
			// Created, written, touched (IN_ATTRIB) or renamed onto: a
			// touch even when the coarse mtime clock did not move.
			t.touched = t.touched || !gone || ev.Has(fsnotify.Create)
			t.dirty = true
			w.event()
		}
	}
	if gone {
		for _, t := range append([]*trigger(nil), w.byDir[ev.Name]...) {
			w.lostDir(t)
			w.event()
		}
	}

	if w.root == "" || !(w.tdirs[dir] || ev.Name == w.root) {
		return nil
	}
	if w.tdirs[ev.Name] {
		if gone {
			if ev.Name == w.root {
				w.log.Warn("watched directory removed; nothing more to watch there", "dir", w.shownRoot)
			}
			w.dropTree(ev.Name)
			w.acc.add(w.shown(ev.Name))
			w.event()
		}
		return nil
	}
	rel := w.rel(ev.Name)
	if ev.Has(fsnotify.Create) {
		if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
			if w.filter.skipDir(rel) {
				return nil
			}
			// Files may have landed before the watch did (mkdir -p
			// and cp, git checkout): report the ones found.
			return w.walk(ev.Name, w.watchDir, func(p string) {
				w.acc.add(w.shown(p))
				w.event()
			})
		}
	}
	if base == venvMark && ev.Has(fsnotify.Create) && dir != w.root {
		// `python -m venv` writes pyvenv.cfg after its directories and
		// before any file: stop watching the new environment now.
		w.dropTree(dir)
		return nil
	}
	if w.filter.wantFile(rel) {
		w.acc.add(w.shown(ev.Name))
		w.event()
	}
	return nil
}

func (w *Watcher) handleError(err error) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		// Events were lost: say a change happened, check every trigger,
		// and watch any directory whose creation was lost.
		w.log.Warn("file events lost (inotify queue overflow); treating it as a change")
		w.acc.overflow = true
		for _, t := range w.triggers {
			t.mark()
		}
		w.event()
		if w.root != "" {
			if err := w.walk(w.root, w.watchDir, nil); err != nil {
				w.fallback(err)
			}
		}
		return
	}
	w.log.Warn("file watching error", "error", err)
}

// tick polls: the tree and triggers when polling; else the triggers'
// directories, which may have appeared, gone, or moved under a symlink
// (a Capistrano-style `current` link switched to a new release).
func (w *Watcher) tick() {
	if w.polling.Load() {
		start := time.Now()
		if w.root != "" {
			snap := w.scanTree()
			for p, s := range snap {
				if w.snapshot[p] != s {
					w.acc.add(w.shown(p))
					w.event()
				}
			}
			for p := range w.snapshot {
				if _, ok := snap[p]; !ok {
					w.acc.add(w.shown(p))
					w.event()
				}
			}
			w.snapshot = snap
		}
		for _, t := range w.triggers {
			t.touched = false
			if w.check(t) {
				w.acc.add(t.path)
				w.event()
			}
		}
		// Keep a big tree's polling under about a tenth of a CPU.
		w.pollNext = min(max(w.pollEvery, 10*time.Since(start)), 10*w.pollEvery)
		if w.hooks != nil && w.hooks.scan != nil {
			w.hooks.scan()
		}
		return
	}
	resolved := map[string]string{}
	for _, t := range w.triggers {
		real, ok := resolved[t.dir]
		if !ok {
			if r, err := filepath.EvalSymlinks(t.dir); err == nil {
				real = r
			}
			resolved[t.dir] = real
		}
		old := t.rdir
		if real == old {
			continue
		}
		if old != "" {
			w.lostDir(t)
		}
		if real != "" {
			if err := w.watchTriggerDir(t, real); err != nil {
				w.fallback(err)
				return
			}
		}
		if t.rdir != old { // not when a watch failed again
			t.mark()
			w.event()
		}
	}
}

func (w *Watcher) setTriggers(paths []string) error {
	want := map[string]bool{}
	for _, p := range paths {
		want[filepath.Clean(p)] = true
	}
	for p, t := range w.triggers {
		if !want[p] {
			if t.rdir != "" {
				w.lostDir(t)
			}
			delete(w.triggers, p)
		}
	}
	for p := range want {
		if err := w.addTrigger(p); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				return err
			}
			w.fallback(err)
		}
	}
	return nil
}

// addTrigger watches the trigger's directory and takes its baseline.
func (w *Watcher) addTrigger(p string) error {
	p = filepath.Clean(p)
	if w.triggers[p] != nil {
		return nil
	}
	t := &trigger{path: p, dir: filepath.Dir(p), base: filepath.Base(p)}
	w.triggers[p] = t
	var err error
	if !w.polling.Load() {
		// Watch first, then take the baseline: a touch in between
		// is then seen as an event, not lost.
		if real, rerr := filepath.EvalSymlinks(t.dir); rerr == nil {
			err = w.watchTriggerDir(t, real)
		} else {
			w.log.Info("reload trigger's directory does not exist yet; looking for it every poll interval", "path", p, "every", w.pollEvery)
		}
	}
	w.check(t) // the baseline, even when falling back: a new trigger never fires
	return err
}

func (w *Watcher) watchTriggerDir(t *trigger, real string) error {
	if err := w.use(real); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return err
		}
		if !t.dirWarned {
			t.dirWarned = true
			w.log.Warn("cannot watch reload trigger's directory; trying again every poll interval", "path", t.path, "error", err)
		}
		return nil
	}
	t.dirWarned = false
	t.rdir = real
	w.byDir[real] = append(w.byDir[real], t)
	return nil
}

// lostDir forgets t's watched directory (deleted, moved, or the trigger
// is dropped); the next tick looks for it again.
func (w *Watcher) lostDir(t *trigger) {
	ts := w.byDir[t.rdir]
	for i, x := range ts {
		if x == t {
			ts = append(ts[:i:i], ts[i+1:]...)
			break
		}
	}
	if len(ts) == 0 {
		delete(w.byDir, t.rdir)
	} else {
		w.byDir[t.rdir] = ts
	}
	w.unuse(t.rdir)
	t.rdir = ""
	t.mark()
}

// use adds an inotify watch on dir for one more user.
func (w *Watcher) use(dir string) error {
	if w.fsw == nil {
		return nil
	}
	if w.uses[dir] == 0 {
		if w.hooks != nil && w.hooks.add != nil {
			if err := w.hooks.add(dir); err != nil {
				return err
			}
		}
		if err := w.fsw.Add(dir); err != nil {
			return err
		}
	}
	w.uses[dir]++
	return nil
}

func (w *Watcher) unuse(dir string) {
	if w.uses[dir] == 0 {
		return
	}
	w.uses[dir]--
	if w.uses[dir] == 0 {
		delete(w.uses, dir)
		if w.fsw != nil {
			// ErrNonExistentWatch when the kernel already dropped it
			// (the directory was deleted).
			_ = w.fsw.Remove(dir)
		}
	}
}

// watchDir is walk's directory callback for inotify.
func (w *Watcher) watchDir(dir string) error {
	if w.tdirs[dir] {
		return nil
	}
	if len(w.tdirs) >= w.maxDirs {
		return errFull
	}
	if err := w.use(dir); err != nil {
		return err
	}
	w.tdirs[dir] = true
	return nil
}

// dropTree forgets dir and every tree directory under it.
func (w *Watcher) dropTree(dir string) {
	for d := range w.tdirs {
		if d == dir || strings.HasPrefix(d, dir+"/") {
			delete(w.tdirs, d)
			w.unuse(d)
		}
	}
}

// errFull stops a walk at MaxDirs.
var errFull = errors.New("directory bound reached")

// walk visits start and the directories under it breadth-first (shallow
// directories first: the code is near the top, deep trees are data),
// skipping what the filter skips and never following a symlink, calling
// dirFn for each directory and fileFn (if not nil) for each wanted file.
// It stops at MaxDirs tree directories, saying so once. Only ENOSPC
// (inotify's watch limit) is returned; other errors skip the directory.
func (w *Watcher) walk(start string, dirFn func(string) error, fileFn func(string)) error {
	queue := []string{start}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if err := dirFn(d); err != nil {
			if errors.Is(err, errFull) {
				w.full()
				return nil
			}
			if errors.Is(err, syscall.ENOSPC) {
				return err
			}
			w.log.Debug("directory not watched", "dir", d, "error", err)
			continue
		}
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		if d != w.root && slices.ContainsFunc(entries, func(e os.DirEntry) bool { return e.Name() == venvMark }) {
			// A virtual environment under any name. (Its watch, if
			// any, was added first so no file created meanwhile
			// escapes; it goes again.)
			w.dropTree(d)
			continue
		}
		for _, e := range entries {
			p := filepath.Join(d, e.Name())
			rel := w.rel(p)
			if e.IsDir() { // from the directory entry: a symlink is not a dir
				if !w.filter.skipDir(rel) {
					queue = append(queue, p)
				}
				continue
			}
			if fileFn != nil && w.filter.wantFile(rel) {
				fileFn(p)
			}
		}
	}
	return nil
}

func (w *Watcher) full() {
	if !w.warnedMax {
		w.warnedMax = true
		w.log.Warn("too many directories to watch; the rest are not watched (exclude some)",
			"root", w.shownRoot, "max", w.maxDirs)
	}
}

// scanTree is the polling snapshot: every wanted file's identity.
func (w *Watcher) scanTree() map[string]fstate {
	snap := map[string]fstate{}
	n := 0
	_ = w.walk(w.root, func(string) error {
		if n >= w.maxDirs {
			return errFull
		}
		n++
		return nil
	}, func(p string) {
		if fi, err := os.Lstat(p); err == nil {
			snap[p] = stateOf(fi)
		}
	})
	return snap
}

// fallback switches to polling for good, saying why once.
func (w *Watcher) fallback(reason error) {
	if w.polling.Load() {
		return
	}
	w.log.Warn("file watching falls back to polling", "every", w.pollEvery, "reason", reason)
	if errors.Is(reason, syscall.ENOSPC) {
		w.log.Warn("the inotify watch limit is reached: see /proc/sys/fs/inotify/max_user_watches, or exclude directories")
	}
	w.closeInotify()
	w.polling.Store(true)
	w.uses, w.tdirs, w.byDir = map[string]int{}, map[string]bool{}, map[string][]*trigger{}
	for _, t := range w.triggers {
		t.rdir = ""
	}
	if w.root != "" {
		if w.running {
			// Running: what changed between the last event and this
			// snapshot is unknown, so report a change.
			w.acc.overflow = true
			w.event()
		}
		w.snapshot = w.scanTree()
	}
}

func (w *Watcher) closeInotify() {
	if w.fsw != nil {
		_ = w.fsw.Close()
		w.fsw = nil
	}
}

func (w *Watcher) rel(p string) string {
	if p == w.root {
		return "."
	}
	return filepath.ToSlash(strings.TrimPrefix(p, strings.TrimSuffix(w.root, "/")+"/"))
}

func (w *Watcher) shown(p string) string {
	return filepath.Join(w.shownRoot, filepath.FromSlash(w.rel(p)))
}

// venvMark is the file `python -m venv` writes at the top of a virtual
// environment: a directory holding it is skipped under any name.
const venvMark = "pyvenv.cfg"
