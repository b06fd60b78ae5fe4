package master

import (
	"errors"
	"strings"
	"testing"

	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/supervisor"
)

// pyctl start of an app that runs is a no-op that says so: it neither
// rolls it nor re-applies its file (issue 13 review: start on a running
// app whose file says enabled = false rolled it). restart of a disabled
// app that pyctl start started replaces its workers as for any app, and
// leaves it running (it stopped it: roll takes enabled = false as a
// file's word).
func TestStartOfARunningAppIsANoOp(t *testing.T) {
	blog, off := testApp(alice, "blog"), testApp(alice, "off")
	off.Disabled, off.File = true, "/home/alice/.config/pyhost/apps/off.toml"
	cat := systemCatalog(blog, off)
	m, st := newTestMaster(t, cat)
	act := func(a control.Action, name string) string {
		t.Helper()
		var out lines
		if err := m.Act(ctxBg, aliceC, a, name, out.add); err != nil {
			t.Fatalf("pyctl %s %s: %v (%s)", a, name, err, out.String())
		}
		return out.String()
	}

	// The disabled app: stopped, started on its file, then started again.
	if s := state(t, m, off.Key()); s != supervisor.AppStopped {
		t.Fatalf("the disabled app is %s, want stopped", s)
	}
	act(control.ActionStart, "off")
	if s := state(t, m, off.Key()); s != supervisor.AppRunning {
		t.Fatalf("after pyctl start: %s, want running", s)
	}
	for _, name := range []string{"off", "blog"} {
		pids := st.pids.Load()
		var out lines
		// pyctl learns that nothing was done from the error, not the words.
		if err := m.Act(ctxBg, aliceC, control.ActionStart, name, out.add); !errors.Is(err, control.ErrNothingToDo) || !strings.Contains(out.String(), "already running; nothing to do") {
			t.Errorf("pyctl start %s while it runs: %v, said %q; want control.ErrNothingToDo, \"already running; nothing to do\"", name, err, out.String())
		}
		if n := st.pids.Load() - pids; n != 0 {
			t.Errorf("pyctl start %s while it runs started %d workers, want none", name, n)
		}
	}

	// restart replaces the started disabled app's worker; it runs on.
	pids := st.pids.Load()
	act(control.ActionRestart, "off")
	if s := state(t, m, off.Key()); s != supervisor.AppRunning || st.pids.Load() == pids {
		t.Errorf("after pyctl restart of the started disabled app: %s, %d workers started; want running on a new one", s, st.pids.Load()-pids)
	}
	if !m.set.get(off.Key()).Config().Disabled {
		t.Error("the restart forgot enabled = false: the next daemon restart would start it")
	}

	// Stopped again, start starts it (on its file) as before.
	act(control.ActionStop, "off")
	if out := act(control.ActionStart, "off"); !strings.Contains(out, "it stays disabled") || state(t, m, off.Key()) != supervisor.AppRunning {
		t.Errorf("pyctl start of the stopped disabled app said %q and left it %s", out, state(t, m, off.Key()))
	}
}
