package watch

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// waitFor bounds every wait of these tests: generous, since a loaded
// machine is slow, and never the thing a test measures.
const waitFor = 10 * time.Second

// state asks the loop what it holds.
func (w *Watcher) state() loopState {
	r := make(chan loopState)
	select {
	case w.probe <- r:
		return <-r
	case <-w.done:
		return loopState{}
	}
}

// idle: no burst pending, no change waiting to be taken.
func (w *Watcher) idle() bool { return w.state() == loopState{} }

// harness runs a Watcher over real files and lets a test wait until the
// watcher has seen everything done so far, without sleeping.
type harness struct {
	t     *testing.T
	w     *Watcher
	mu    sync.Mutex
	seen  map[string]bool
	kick  chan struct{}
	scans atomic.Int64
	syncN int
	log   *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func start(t *testing.T, o Options) *harness {
	t.Helper()
	h := &harness{t: t, seen: map[string]bool{}, kick: make(chan struct{}, 1), log: &lockedBuffer{}}
	if o.hooks == nil {
		o.hooks = &testHooks{}
	}
	o.hooks.event = func(name string) {
		h.mu.Lock()
		h.seen[name] = true
		h.mu.Unlock()
		h.poke()
	}
	o.hooks.scan = func() {
		h.scans.Add(1)
		h.poke()
	}
	o.Logger = hclog.New(&hclog.LoggerOptions{Output: h.log, Level: hclog.Debug})
	w, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	t.Cleanup(func() { w.Close() })
	return h
}

func (h *harness) poke() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// wait returns once cond holds, failing the test after waitFor.
func (h *harness) wait(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.After(waitFor)
	for !cond() {
		select {
		case <-h.kick:
		case <-time.After(50 * time.Millisecond): // cond may not poke
		case <-deadline:
			h.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// sync returns once the watcher has read every event caused before it
// was called: inotify queues events in order, so once the loop has seen
// a marker file created in dir, it has seen everything before it. When
// polling, it waits for a scan that began after the call.
func (h *harness) sync(dir string) {
	h.t.Helper()
	if h.w.Mode() == "polling" {
		n := h.scans.Load()
		h.wait("two polling scans", func() bool { return h.scans.Load() >= n+2 })
		return
	}
	h.syncN++
	marker := filepath.Join(dir, fmt.Sprintf("sync-%d.marker", h.syncN))
	write(h.t, marker, "")
	h.wait("the marker's event", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.seen[marker]
	})
}

// settle collects the changes handed out until the watcher is idle. With
// sync first, that is every change due to what the test did.
func (h *harness) settle() []Change {
	h.t.Helper()
	var got []Change
	deadline := time.After(waitFor)
	for {
		if h.w.idle() {
			// Unbuffered Changes: anything the loop handed out has
			// been received here already.
			return got
		}
		select {
		case c := <-h.w.Changes():
			got = append(got, c)
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			h.t.Fatalf("watcher never idle; got %v", got)
		}
	}
}

// next waits for one change.
func (h *harness) next() Change {
	h.t.Helper()
	select {
	case c, ok := <-h.w.Changes():
		if !ok {
			h.t.Fatal("Changes closed")
		}
		return c
	case <-time.After(waitFor):
		h.t.Fatalf("no change within %v; log:\n%s", waitFor, h.log)
	}
	return Change{}
}

// quiet syncs and checks nothing more is reported.
func (h *harness) quiet(dir string) {
	h.t.Helper()
	h.sync(dir)
	if got := h.settle(); len(got) > 0 {
		h.t.Errorf("unexpected changes: %v", got)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func allPaths(cs []Change) []string {
	var ps []string
	for _, c := range cs {
		ps = append(ps, c.Paths...)
	}
	sort.Strings(ps)
	return slices.Compact(ps)
}

func TestEditYieldsOneChange(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	app := filepath.Join(root, "app.py")
	write(t, app, "x = 1\n")
	h := start(t, Options{Root: root})

	write(t, app, "x = 2\n")
	c := h.next()
	if !slices.Equal(c.Paths, []string{app}) || c.More != 0 || c.Overflow {
		t.Errorf("change = %+v, want just %s", c, app)
	}
	h.quiet(root)

	// Vim's save: probe 4913, back up by rename, write anew, chmod,
	// remove the backup. One change, naming only app.py.
	write(t, filepath.Join(root, "4913"), "")
	os.Remove(filepath.Join(root, "4913"))
	write(t, filepath.Join(root, ".app.py.swp"), "swap")
	os.Rename(app, app+"~")
	write(t, app, "x = 3\n")
	os.Chmod(app, 0o644)
	os.Remove(app + "~")
	h.sync(root)
	got := h.settle()
	if len(got) != 1 || !slices.Equal(got[0].Paths, []string{app}) {
		t.Errorf("vim save: %v, want one change of %s", got, app)
	}
	// touch counts, as with gunicorn's mtime poller.
	now := time.Now().Add(time.Second)
	os.Chtimes(app, now, now)
	if c := h.next(); !slices.Equal(c.Paths, []string{app}) {
		t.Errorf("touch: %+v", c)
	}
	if h.w.Mode() != "inotify" {
		t.Errorf("mode %s", h.w.Mode())
	}
}

func TestBurstYieldsOneChange(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	h := start(t, Options{Root: root})
	// A git checkout of 200 files, in two directories.
	for i := range 200 {
		write(t, filepath.Join(root, fmt.Sprintf("pkg%d", i%2), fmt.Sprintf("m%03d.py", i)), "x = 1\n")
	}
	h.sync(root)
	got := h.settle()
	if len(got) < 1 || len(got) > 2 {
		t.Fatalf("200 writes gave %d changes, want 1 or 2: %v", len(got), got)
	}
	listed, more := 0, 0
	for _, c := range got {
		listed += len(c.Paths)
		more += c.More
	}
	if listed+more < 200 || listed > 2*MaxPaths {
		t.Errorf("200 writes: %d paths listed and %d more", listed, more)
	}
}

func TestIgnoredFiles(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	// Skipped directories that exist at the start, and ones made later.
	for _, d := range []string{"__pycache__", ".git", "venv", ".venv", "node_modules"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	write(t, filepath.Join(root, "env1", "pyvenv.cfg"), "home = /usr/bin\n")
	h := start(t, Options{Root: root})

	for _, p := range []string{
		".app.py.swp", ".app.py.swx", "app.py~", ".#app.py", "#app.py#", "4913", "notes.txt", "app.pyc",
		"__pycache__/app.cpython-312.pyc", "__pycache__/x.py", ".git/hooks/x.py", "venv/lib/x.py",
		".venv/x.py", "node_modules/x.py", "env1/lib/x.py", "pkg/__pycache__/y.py", "pkg/.hidden/z.py",
	} {
		write(t, filepath.Join(root, p), "data")
	}
	write(t, filepath.Join(root, "env2", "pyvenv.cfg"), "")
	write(t, filepath.Join(root, "env2", "site.py"), "")
	h.quiet(root)
	// ...while a real edit in the same places is seen.
	write(t, filepath.Join(root, "pkg", "real.py"), "")
	if c := h.next(); !slices.Contains(c.Paths, filepath.Join(root, "pkg", "real.py")) {
		t.Errorf("real edit: %+v", c)
	}
}

func TestNewSubdirectoryIsWatched(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	h := start(t, Options{Root: root})

	// mkdir -p and a file at once: the file may land before the watch.
	deep := filepath.Join(root, "a", "b", "c")
	write(t, filepath.Join(deep, "x.py"), "")
	h.sync(root)
	if ps := allPaths(h.settle()); !slices.Contains(ps, filepath.Join(deep, "x.py")) {
		t.Errorf("new tree: %v", ps)
	}
	// Now the new directory is watched: a later edit is seen.
	write(t, filepath.Join(deep, "y.py"), "")
	if c := h.next(); !slices.Equal(c.Paths, []string{filepath.Join(deep, "y.py")}) {
		t.Errorf("edit in new dir: %+v", c)
	}
	h.quiet(root)

	// Removing it is a change; a directory moved in is watched.
	if err := os.RemoveAll(filepath.Join(root, "a")); err != nil {
		t.Fatal(err)
	}
	h.sync(root)
	if ps := allPaths(h.settle()); !slices.Contains(ps, filepath.Join(root, "a")) {
		t.Errorf("removal: %v", ps)
	}
	outside := t.TempDir()
	write(t, filepath.Join(outside, "pkg", "m.py"), "")
	if err := os.Rename(filepath.Join(outside, "pkg"), filepath.Join(root, "pkg")); err != nil {
		t.Fatal(err)
	}
	h.sync(root)
	if ps := allPaths(h.settle()); !slices.Contains(ps, filepath.Join(root, "pkg", "m.py")) {
		t.Errorf("moved in: %v", ps)
	}
	write(t, filepath.Join(root, "pkg", "m.py"), "x")
	if c := h.next(); !slices.Equal(c.Paths, []string{filepath.Join(root, "pkg", "m.py")}) {
		t.Errorf("edit in moved-in dir: %+v", c)
	}
}

func TestIncludeExclude(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "static", "css"), 0o755)
	h := start(t, Options{
		Root:    root,
		Include: []string{"*.html", "templates/**/*.txt"},
		Exclude: []string{"migrations", "*_test.py", "static/**"},
	})
	for _, p := range []string{
		"templates/a.html", "x/y.html", "templates/deep/a.txt", "a.txt",
		"migrations/0001.py", "app_test.py", "static/css/x.py", "static/y.html", "views.py",
	} {
		write(t, filepath.Join(root, p), "")
	}
	h.sync(root)
	var want []string
	for _, p := range []string{"templates/a.html", "x/y.html", "templates/deep/a.txt", "views.py"} {
		want = append(want, filepath.Join(root, p))
	}
	sort.Strings(want)
	if got := allPaths(h.settle()); !slices.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestSymlinkedRootReportsPathsAsGiven(t *testing.T) {
	t.Parallel()
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "current")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	h := start(t, Options{Root: link})
	write(t, filepath.Join(real, "app.py"), "")
	if c := h.next(); !slices.Equal(c.Paths, []string{filepath.Join(link, "app.py")}) {
		t.Errorf("change %+v, want it under %s", c, link)
	}
}

func TestMaxDirs(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for i := range 10 {
		os.MkdirAll(filepath.Join(root, fmt.Sprintf("d%d", i), "sub"), 0o755)
	}
	h := start(t, Options{Root: root, MaxDirs: 3})
	// Breadth-first: the root, d0 and d1 are watched; d9 is not.
	write(t, filepath.Join(root, "d9", "x.py"), "")
	write(t, filepath.Join(root, "d0", "sub", "x.py"), "")
	h.quiet(root)
	write(t, filepath.Join(root, "d1", "x.py"), "")
	if c := h.next(); !slices.Equal(c.Paths, []string{filepath.Join(root, "d1", "x.py")}) {
		t.Errorf("watched dir: %+v", c)
	}
	// A new directory past the bound is not watched either.
	write(t, filepath.Join(root, "new", "x.py"), "")
	h.quiet(root)
	if n := strings.Count(h.log.String(), "too many directories"); n != 1 {
		t.Errorf("bound reported %d times, want once:\n%s", n, h.log)
	}
}

func TestTrigger(t *testing.T) {
	t.Parallel()
	actions := map[string]func(t *testing.T, p string){
		"touch": func(t *testing.T, p string) {
			// A later mtime: the kernel's clock is coarse, and a touch
			// within the same tick as the write is not what is tested.
			now := time.Now().Add(time.Second)
			if err := os.Chtimes(p, now, now); err != nil {
				t.Fatal(err)
			}
		},
		"rename over": func(t *testing.T, p string) {
			write(t, p+".tmp", "new")
			if err := os.Rename(p+".tmp", p); err != nil {
				t.Fatal(err)
			}
		},
		"delete and recreate": func(t *testing.T, p string) {
			os.Remove(p)
			write(t, p, "")
		},
		"write": func(t *testing.T, p string) { write(t, p, "more") },
	}
	for name, act := range actions {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			trig := filepath.Join(dir, "tmp", "restart.txt")
			write(t, trig, "")
			h := start(t, Options{Triggers: []string{trig}})
			act(t, trig)
			if c := h.next(); !slices.Equal(c.Paths, []string{trig}) {
				t.Errorf("change %+v", c)
			}
			h.quiet(filepath.Dir(trig))
		})
	}
}

func TestTriggerEdgeCases(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	trig := filepath.Join(dir, "restart.txt")
	app := filepath.Join(dir, "blog.toml")
	write(t, trig, "")
	write(t, app, "")
	h := start(t, Options{Triggers: []string{trig, app}})

	// Deleting is tidying up, not a deploy.
	os.Remove(trig)
	h.quiet(dir)
	// Creating it is.
	write(t, trig, "")
	if c := h.next(); !slices.Equal(c.Paths, []string{trig}) {
		t.Errorf("create: %+v", c)
	}
	// Other files of the directory are not triggers.
	write(t, filepath.Join(dir, "other.txt"), "")
	h.quiet(dir)

	// 50 touches as fast as a loop goes: one change, two at worst.
	for i := range 50 {
		at := time.Now().Add(time.Duration(i+1) * time.Second)
		os.Chtimes(trig, at, at)
	}
	h.sync(dir)
	if got := h.settle(); len(got) < 1 || len(got) > 2 {
		t.Errorf("50 touches: %d changes, want 1 or 2: %v", len(got), got)
	}
	// An editor saving the app file by rename, and a touch of the
	// trigger, in one burst: one change naming both.
	write(t, app+".new", "x")
	os.Rename(app+".new", app)
	os.Chtimes(trig, time.Now(), time.Now())
	h.sync(dir)
	if got := h.settle(); len(got) != 1 || !slices.Equal(got[0].Paths, []string{app, trig}) {
		t.Errorf("two triggers: %v", got)
	}
}

func TestTriggerSymlinkNeverFollowed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := filepath.Join(t.TempDir(), "secret")
	write(t, secret, "")
	trig := filepath.Join(dir, "restart.txt")
	if err := os.Symlink(secret, trig); err != nil {
		t.Fatal(err)
	}
	h := start(t, Options{Triggers: []string{trig}})
	if !strings.Contains(h.log.String(), "not a regular file") {
		t.Errorf("symlinked trigger not reported:\n%s", h.log)
	}
	// The link's target changes, then the link is touched (lutimes): nothing.
	later := time.Now().Add(time.Hour)
	os.Chtimes(secret, later, later)
	ts := []unix.Timespec{unix.NsecToTimespec(later.UnixNano()), unix.NsecToTimespec(later.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, trig, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
	h.quiet(dir)
	// Replaced by a regular file: a trigger again.
	os.Remove(trig)
	write(t, trig, "")
	if c := h.next(); !slices.Equal(c.Paths, []string{trig}) {
		t.Errorf("regular again: %+v", c)
	}
}

func TestTriggerDirectoryAppearsAndMoves(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	// Capistrano: current -> releases/1, whose tmp does not exist yet.
	rel1 := filepath.Join(base, "releases", "1")
	rel2 := filepath.Join(base, "releases", "2")
	os.MkdirAll(rel1, 0o755)
	current := filepath.Join(base, "current")
	os.Symlink(rel1, current)
	trig := filepath.Join(current, "tmp", "restart.txt")
	h := start(t, Options{Triggers: []string{trig}, PollInterval: 50 * time.Millisecond})

	write(t, filepath.Join(rel1, "tmp", "restart.txt"), "")
	if c := h.next(); !slices.Equal(c.Paths, []string{trig}) {
		t.Errorf("appeared: %+v", c)
	}
	// Switch current to release 2 (rename over the link, as deploy
	// tools do), then touch release 2's trigger.
	write(t, filepath.Join(rel2, "tmp", "restart.txt"), "")
	os.Symlink(rel2, current+".new")
	os.Rename(current+".new", current)
	// The tick that moves the watch checks the trigger: another file.
	if c := h.next(); !slices.Equal(c.Paths, []string{trig}) {
		t.Errorf("switched: %+v", c)
	}
	later := time.Now().Add(time.Minute)
	os.Chtimes(filepath.Join(rel2, "tmp", "restart.txt"), later, later)
	if c := h.next(); !slices.Equal(c.Paths, []string{trig}) {
		t.Errorf("touch in new release: %+v", c)
	}
	// The old release is no longer watched.
	os.Chtimes(filepath.Join(rel1, "tmp", "restart.txt"), later, later)
	h.quiet(filepath.Join(rel2, "tmp"))
}

func TestSetTriggers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.toml"), filepath.Join(dir, "b.toml")
	write(t, a, "")
	write(t, b, "")
	h := start(t, Options{})
	if err := h.w.SetTriggers([]string{"relative.toml"}); err == nil {
		t.Error("relative trigger accepted")
	}
	if err := h.w.SetTriggers([]string{a}); err != nil {
		t.Fatal(err)
	}
	h.quiet(dir) // adding a trigger never fires it
	write(t, a, "1")
	if c := h.next(); !slices.Equal(c.Paths, []string{a}) {
		t.Errorf("a: %+v", c)
	}
	if err := h.w.SetTriggers([]string{b}); err != nil {
		t.Fatal(err)
	}
	write(t, a, "2")
	write(t, b, "2")
	h.sync(dir)
	if got := allPaths(h.settle()); !slices.Equal(got, []string{b}) {
		t.Errorf("after replacing a by b: %v", got)
	}
}

func TestPolling(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	app := filepath.Join(root, "app.py")
	trig := filepath.Join(root, "tmp", "restart.txt")
	write(t, app, "")
	write(t, trig, "")
	h := start(t, Options{Root: root, Triggers: []string{trig}, Poll: true, PollInterval: 20 * time.Millisecond})
	if h.w.Mode() != "polling" {
		t.Fatalf("mode %s", h.w.Mode())
	}
	h.quiet(root)

	write(t, app, "changed")
	if c := h.next(); !slices.Equal(c.Paths, []string{app}) {
		t.Errorf("edit: %+v", c)
	}
	later := time.Now().Add(time.Minute)
	os.Chtimes(trig, later, later)
	if c := h.next(); !slices.Equal(c.Paths, []string{trig}) {
		t.Errorf("touch: %+v", c)
	}
	write(t, filepath.Join(root, "new", "deep", "m.py"), "")
	if c := h.next(); !slices.Equal(c.Paths, []string{filepath.Join(root, "new", "deep", "m.py")}) {
		t.Errorf("new dir: %+v", c)
	}
	for _, p := range []string{".app.py.swp", "__pycache__/x.py", "notes.txt"} {
		write(t, filepath.Join(root, p), "")
	}
	h.quiet(root)
	os.Remove(app)
	if c := h.next(); !slices.Equal(c.Paths, []string{app}) {
		t.Errorf("remove: %+v", c)
	}
}

func TestFallbackWhenWatchLimitReached(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	trig := filepath.Join(t.TempDir(), "restart.txt")
	write(t, trig, "")
	h := start(t, Options{
		Root: root, Triggers: []string{trig}, PollInterval: 20 * time.Millisecond,
		hooks: &testHooks{add: func(dir string) error {
			if filepath.Base(dir) == "big" {
				return syscall.ENOSPC // as inotify_add_watch says at max_user_watches
			}
			return nil
		}},
	})
	os.Mkdir(filepath.Join(root, "big"), 0o755)
	// The switch itself is reported: what changed meanwhile is unknown.
	if c := h.next(); !c.Overflow {
		t.Errorf("switch: %+v", c)
	}
	if h.w.Mode() != "polling" {
		t.Fatalf("mode %s", h.w.Mode())
	}
	if n := strings.Count(h.log.String(), "falls back to polling"); n != 1 {
		t.Errorf("fallback said %d times:\n%s", n, h.log)
	}
	h.quiet(root)
	write(t, filepath.Join(root, "big", "x.py"), "")
	if c := h.next(); !slices.Equal(c.Paths, []string{filepath.Join(root, "big", "x.py")}) {
		t.Errorf("polled edit: %+v", c)
	}
	later := time.Now().Add(time.Minute)
	os.Chtimes(trig, later, later)
	if c := h.next(); !slices.Equal(c.Paths, []string{trig}) {
		t.Errorf("polled trigger: %+v", c)
	}
}

func TestSlowConsumerLosesNothing(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	h := start(t, Options{Root: root, Quiet: 20 * time.Millisecond})
	// Two bursts, each flushed, while nobody reads Changes.
	write(t, filepath.Join(root, "a.py"), "")
	h.sync(root)
	flushed := func() bool { return h.w.state() == loopState{ready: true} }
	h.wait("first burst flushed", flushed)
	write(t, filepath.Join(root, "b.py"), "")
	h.sync(root)
	h.wait("second burst flushed", flushed)
	// Both bursts wait as one change.
	got := h.settle()
	if len(got) != 1 || !slices.Equal(got[0].Paths, []string{filepath.Join(root, "a.py"), filepath.Join(root, "b.py")}) {
		t.Errorf("got %v", got)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "f")
	write(t, file, "")
	for name, o := range map[string]Options{
		"missing root":     {Root: filepath.Join(t.TempDir(), "nope")},
		"root is a file":   {Root: file},
		"relative trigger": {Triggers: []string{"tmp/restart.txt"}},
		"bad glob":         {Root: t.TempDir(), Include: []string{"[a"}},
	} {
		if w, err := New(context.Background(), o); err == nil {
			w.Close()
			t.Errorf("%s: no error", name)
		}
	}
}

// Not parallel: it counts the process's goroutines.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	for _, poll := range []bool{false, true} {
		root := t.TempDir()
		trig := filepath.Join(root, "restart.txt")
		write(t, trig, "")
		ctx, cancel := context.WithCancel(context.Background())
		w, err := New(ctx, Options{Root: root, Triggers: []string{trig}, Poll: poll, PollInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(root, "a.py"), "")
		select {
		case <-w.Changes():
		case <-time.After(waitFor):
			t.Fatal("no change")
		}
		write(t, filepath.Join(root, "b.py"), "") // pending at Close
		if poll {
			cancel() // the context ends it as Close does
			for range w.Changes() {
			}
		}
		w.Close()
		w.Close() // idempotent
		cancel()
		if _, ok := <-w.Changes(); ok {
			t.Error("Changes open after Close")
		}
		if err := w.SetTriggers(nil); err == nil {
			t.Error("SetTriggers after Close: no error")
		}
	}
	deadline := time.Now().Add(waitFor)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond) // polling a count, not synchronizing
	}
}

func TestQueueOverflowIsAChange(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events")
	if err != nil {
		t.Skip("no inotify queue limit to overflow here")
	}
	var limit int
	fmt.Sscan(string(raw), &limit)
	if limit <= 0 || limit > 200000 {
		t.Skipf("max_queued_events is %d: too many events to make", limit)
	}
	root := t.TempDir()
	a, b := filepath.Join(root, "a.py"), filepath.Join(root, "b.py")
	write(t, a, "")
	write(t, b, "")
	h := start(t, Options{Root: root})
	// Hold the loop (it blocks handing us its state) while the kernel
	// queue fills: alternate files, since inotify merges an event with
	// an identical one just before it.
	r := make(chan loopState)
	h.w.probe <- r
	for i := range 2*limit + 10000 {
		p := a
		if i%2 == 1 {
			p = b
		}
		at := time.Unix(int64(1e9+i), 0)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	// Its creation event is lost: the queue is full.
	lost := filepath.Join(root, "lost")
	os.Mkdir(lost, 0o755)
	<-r
	// The overflow is the queue's last event; until it is read, a
	// marker's event could be dropped too.
	h.wait("the overflow", func() bool { return strings.Contains(h.log.String(), "queue overflow") })
	h.sync(root)
	overflow := false
	for _, c := range h.settle() {
		overflow = overflow || c.Overflow
	}
	if !overflow {
		t.Errorf("no Overflow change; log:\n%s", h.log)
	}
	// The rescan after the overflow watches the directory all the same.
	write(t, filepath.Join(lost, "x.py"), "")
	if c := h.next(); !slices.Equal(c.Paths, []string{filepath.Join(lost, "x.py")}) {
		t.Errorf("edit in the lost directory: %+v", c)
	}
}
