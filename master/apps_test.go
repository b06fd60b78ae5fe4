package master

import (
	"strings"
	"testing"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/supervisor"
)

// An app's settings have one owner, its supervisor: what reload-config
// compares a file with, what the claims are decided on and what pyctl
// start starts a disabled app on are the settings in force, through a
// roll that changes nothing, one that commits, one that aborts, and a
// disabled app's edited file.
func TestSettingsHaveOneOwner(t *testing.T) {
	blog, off := testApp(alice, "blog"), testApp(alice, "off")
	off.Disabled = true
	cat := systemCatalog(blog, off)
	m, st := newTestMaster(t, cat)
	blog, off = cat.initial.Apps[0], cat.initial.Apps[1]
	reloadConfig := func(want string) string {
		t.Helper()
		var out lines
		err := m.ReloadConfig(ctxBg, root, out.add)
		if !strings.Contains(out.String(), want) {
			t.Fatalf("reload-config said %q (%v), want %q", out.String(), err, want)
		}
		return out.String()
	}
	inForce := func(key string) config.App {
		t.Helper()
		cfg := m.set.config(key)
		if s, err := m.set.get(key).Status(ctxBg); err != nil || (!cfg.Disabled && !s.Config.Equal(cfg)) {
			t.Fatalf("%s: the settings in force are not its serving generation's: %v", key, err)
		}
		return cfg
	}

	// The files as they were: nothing rolls, nothing starts.
	cat.next = config.Discovery{Apps: []config.App{blog, off}}
	reloadConfig("0 started, 0 rolled, 0 stopped, 2 unchanged")
	if n := st.pids.Load(); n != 1 {
		t.Errorf("%d workers started, want blog's one only", n)
	}

	// blog's file changed: it rolls, and its new settings are in force.
	changed := blog
	changed.Threads = 4
	cat.next = config.Discovery{Apps: []config.App{changed, off}}
	reloadConfig("0 started, 1 rolled, 0 stopped, 1 unchanged")
	if got := inForce(blog.Key()); got.Threads != 4 {
		t.Errorf("blog's threads %d after the roll, want 4", got.Threads)
	}
	reloadConfig("0 started, 0 rolled, 0 stopped, 2 unchanged")

	// A roll that aborts (the new code's import fails) leaves the old
	// settings in force, so the next reload-config tries again.
	broken := changed
	broken.Directory, broken.Domains = "/srv/broken", []string{"broken.test"}
	cat.next = config.Discovery{Apps: []config.App{broken, off}}
	reloadConfig("0 started, 0 rolled, 0 stopped, 1 unchanged; 0 app files refused, 1 failed")
	if got := inForce(blog.Key()); got.Directory != blog.Directory || !got.Equal(changed) {
		t.Errorf("after an aborted roll: %+v, want the settings before it", got)
	}
	if s := state(t, m, blog.Key()); s != supervisor.AppRunning {
		t.Errorf("blog %s after an aborted roll, want running", s)
	}
	if holds(m, "broken.test", blog.Key()) {
		t.Errorf("the aborted roll's domain is held: %v", m.set.claims())
	}
	reloadConfig("1 failed")

	// The disabled app's file edited: taken, not started; pyctl start
	// starts it on the edit.
	edited := off
	edited.Threads, edited.Domains = 3, []string{"off2.test"}
	cat.next = config.Discovery{Apps: []config.App{changed, edited}}
	pids := st.pids.Load()
	reloadConfig("0 started, 1 rolled, 0 stopped, 1 unchanged")
	if got := inForce(off.Key()); got.Threads != 3 || !got.Disabled {
		t.Errorf("the disabled app's settings %+v, want its edited file's", got)
	}
	if s := state(t, m, off.Key()); s != supervisor.AppStopped || st.pids.Load() != pids {
		t.Errorf("the disabled app %s, %d workers started, want stopped, none", s, st.pids.Load()-pids)
	}
	if !holds(m, "off2.test", off.Key()) {
		t.Errorf("the edited file's domain is not held: %v", m.set.claims())
	}
	reloadConfig("0 started, 0 rolled, 0 stopped, 2 unchanged")
	if err := m.Act(ctxBg, aliceC, control.ActionStart, "off", noLines); err != nil {
		t.Fatal(err)
	}
	st0, err := m.set.get(off.Key()).Status(ctxBg)
	route := m.set.get(off.Key()).Route()
	if err != nil || st0.State != supervisor.AppRunning || st0.Config.Threads != 3 || len(route.Domains) != 1 || route.Domains[0] != "off2.test" {
		t.Errorf("after pyctl start: %s on %d threads (%v), routed on %v", st0.State, st0.Config.Threads, err, route.Domains)
	}
	if got := inForce(off.Key()); got.Threads != 3 {
		t.Errorf("after pyctl start: threads %d in force, want 3", got.Threads)
	}
	reloadConfig("0 started, 0 rolled, 0 stopped, 2 unchanged")

	// A restart reads the files again and nothing else: what it starts
	// from is the file, disabled, stopped, its edit in force.
	cat2 := systemCatalog(changed, edited)
	m2, st2 := newTestMaster(t, cat2)
	if got := m2.set.config(off.Key()); got.Threads != 3 || state(t, m2, off.Key()) != supervisor.AppStopped || st2.pids.Load() != 1 {
		t.Errorf("after a restart: %+v, %s, %d workers", got, state(t, m2, off.Key()), st2.pids.Load())
	}
}

// holds reports whether key holds domain in m's claims ledger.
func holds(m *Master, domain, key string) bool {
	for k, c := range m.set.claims() {
		if strings.HasPrefix(k, domain+" ") && c == key {
			return true
		}
	}
	return false
}
