package supervisor

import (
	"maps"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/workerproc"
)

// Each replacement is counted by its reason, for pyctl status and the
// metrics; a worker the kernel's OOM killer killed is named as such,
// with the limit, and counted as oom, not crash.
func TestCoreRestartsByReason(t *testing.T) {
	d := running(t, 1)
	if got := d.c.status(nil).RestartsByReason; got == nil || len(got) != 0 {
		t.Fatalf("a fresh app's reasons: %v, want an empty map", got)
	}
	killed := &workerproc.ExitError{Signal: syscall.SIGKILL, External: true}
	effs := d.do(evExited{id: d.c.workers[0].id, err: killed, oom: "memory.max 64MiB reached"})
	const why = "killed by the kernel's OOM killer: memory.max 64MiB reached"
	if !slices.ContainsFunc(notes(effs), func(n string) bool { return strings.Contains(n, why) }) {
		t.Errorf("notes %q do not name the OOM kill", notes(effs))
	}
	if !strings.Contains(d.c.lastErr, why) {
		t.Errorf("last error %q", d.c.lastErr)
	}
	// Deaths in a row are restarted after a delay: let it pass.
	restart := func(effs []effect) {
		for _, tm := range effectsOf[effTimer](effs) {
			if _, ok := tm.ev.(evRestartDue); ok {
				d.after(tm.after)
				d.do(tm.ev)
			}
		}
		d.readyAll()
	}
	restart(effs)
	restart(d.exit(d.c.workers[0].id, &workerproc.ExitError{Code: 1}))
	d.do(evRecycle{d.c.workers[0].id, RecycleReason{RecycleRequests, "served 100"}, false})
	d.readyAll()
	d.drainAll()
	d.do(evRecycle{d.c.workers[0].id, RecycleReason{RecycleTimeout, "a request over request_timeout"}, false})
	d.readyAll()
	d.drainAll()
	d.c.cfg.MemoryLimit = 100 << 20
	d.do(evMemory{rss: map[string]int64{d.c.workers[0].id: 1 << 40}}) // over the hard ceiling
	want := map[string]int{control.RestartOOM: 1, control.RestartCrash: 1, control.RestartRequests: 1, control.RestartTimeout: 1, control.RestartMemory: 1}
	st := d.c.status(nil)
	if !maps.Equal(st.RestartsByReason, want) {
		t.Errorf("restarts by reason %v, want %v", st.RestartsByReason, want)
	}
	if st.Restarts != 2 {
		t.Errorf("restarts %d, want 2 (the crash and the OOM kill)", st.Restarts)
	}
	st.RestartsByReason[control.RestartCrash] = 99
	if d.c.byReason[control.RestartCrash] != 1 {
		t.Error("the status shares the core's map")
	}
}

func TestReasonOf(t *testing.T) {
	for k, want := range map[RecycleKind]string{
		RecycleMemory: control.RestartMemory, RecycleRequests: control.RestartRequests,
		RecycleTimeout: control.RestartTimeout, RecycleManual: control.RestartReload,
	} {
		if got := reasonOf(k); got != want {
			t.Errorf("reasonOf(%s) = %s, want %s", k, got, want)
		}
	}
}
