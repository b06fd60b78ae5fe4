package master

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/supervisor"
	"github.com/pyhost/pyhost/watch"
)

// errSeen stops a Tail once the line it waits for came.
var errSeen = errors.New("seen")

// waitLogLine follows key's app log until a line containing want comes
// (lines written before are read too).
func waitLogLine(t *testing.T, m *Master, key, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := m.set.logOf(key).Tail(ctx, 1000, true, func(l string) error {
		if strings.Contains(l, want) {
			return errSeen
		}
		return nil
	})
	if !errors.Is(err, errSeen) {
		t.Fatalf("no line %q in %s's log: %v", want, key, err)
	}
}

// A touched trigger rolls its app, and says so in the app's log; an app
// its owner stopped stays stopped.
func TestTriggerRollsItsApp(t *testing.T) {
	blog := testApp(alice, "blog")
	blog.File = "/srv/blog/app.toml"
	blog.ReloadTrigger = "/srv/blog/touch-me"
	m, st := newTestMaster(t, NewExpress(blog))
	r := m.reloader
	r.triggers = wantedTriggers([]config.App{blog})
	if got := r.triggers["/srv/blog/touch-me"].keys; len(got) != 1 || got[0] != blog.Key() {
		t.Fatalf("triggers %+v", r.triggers)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.dispatch(ctx, watch.Change{Paths: []string{"/srv/blog/touch-me"}}, false)
	waitLogLine(t, m, blog.Key(), "reload done")
	if n := st.pids.Load(); n != 2 {
		t.Errorf("%d workers started, want a new one for the roll", n)
	}

	if err := m.Act(ctx, root, control.ActionStop, "blog", noLines); err != nil {
		t.Fatal(err)
	}
	// With a tree (serve --reload), any other path rolls every app.
	r.dispatch(ctx, watch.Change{Paths: []string{"/srv/blog/views.py"}, More: 2}, true)
	waitLogLine(t, m, blog.Key(), "skipped: it was stopped with pyctl stop")
	if s := state(t, m, blog.Key()); s != supervisor.AppStopped {
		t.Errorf("state %s, want stopped until pyctl start", s)
	}
	if got := dedupe([]string{"a", "b", "a"}); len(got) != 2 {
		t.Errorf("dedupe %v", got)
	}
}

// A disabled app (enabled = false) is loaded with its claims and not
// started; pyctl start starts it on its file's settings and says it
// stays disabled; a reload of its file keeps it stopped.
func TestDisabledApp(t *testing.T) {
	off := testApp(alice, "off")
	off.Disabled = true
	cat := systemCatalog(off)
	m, st := newTestMaster(t, cat)
	off = cat.initial.Apps[0]
	if s := state(t, m, off.Key()); s != supervisor.AppStopped || st.pids.Load() != 0 {
		t.Fatalf("state %s with %d workers, want stopped with none", s, st.pids.Load())
	}
	var out lines
	if err := m.Act(ctxBg, aliceC, control.ActionStart, "off", out.add); err != nil {
		t.Fatal(err)
	}
	if s := state(t, m, off.Key()); s != supervisor.AppRunning || !strings.Contains(out.String(), "stays disabled") {
		t.Errorf("after start: %s, said %q", s, out.String())
	}
	out = lines{}
	cat.next = config.Discovery{Apps: []config.App{off}}
	if err := m.Reload(ctxBg, aliceC, "off", out.add); err != nil {
		t.Fatal(err)
	}
	if s := state(t, m, off.Key()); s != supervisor.AppStopped || !strings.Contains(out.String(), "the app stays stopped") {
		t.Errorf("after a reload of its file: %s, said %q", s, out.String())
	}

	// A new file, disabled: loaded, not started.
	more := testApp(alice, "more")
	more.Disabled = true
	cat.next = config.Discovery{Apps: []config.App{more}}
	out = lines{}
	if err := m.Reload(ctxBg, aliceC, "more", out.add); err != nil || !strings.Contains(out.String(), "not started") {
		t.Errorf("a new disabled file: %v, said %q", err, out.String())
	}
}

// A new app whose import fails is loaded and retried; pyctl reload says
// why, with the traceback.
func TestNewAppThatCannotStart(t *testing.T) {
	cat := systemCatalog()
	m, _ := newTestMaster(t, cat)
	bad := testApp(alice, "bad")
	bad.Directory = "/srv/broken"
	cat.next = config.Discovery{Apps: []config.App{bad}}
	err := m.Reload(ctxBg, aliceC, "bad", noLines)
	var rerr *control.ReloadError
	if !errors.As(err, &rerr) || !strings.Contains(rerr.Reason, "no worker became ready") || !strings.Contains(rerr.Detail, "No module named 'broken'") {
		t.Errorf("%v", err)
	}
	if startedError("x", nil) != nil {
		t.Error("started")
	}
	if err := startedError("x", errors.New("timeout")); !errors.As(err, &rerr) || rerr.Detail != "" {
		t.Errorf("no traceback: %v", err)
	}
}

// userLimits is a catalog that limits each user's memory.
type userLimits struct{ *fakeCatalog }

func (userLimits) UserMaxMemory(user string) int64 { return int64(len(user)) }

func TestUserLimitsAreTheCatalogs(t *testing.T) {
	m := &Master{catalog: NewExpress(testApp(alice, "blog"))}
	if m.userMaxMemory() != nil {
		t.Error("serve limits no user")
	}
	m.catalog = userLimits{systemCatalog()}
	if f := m.userMaxMemory(); f == nil || f("alice") != 5 {
		t.Error("the catalog's limits")
	}
}
