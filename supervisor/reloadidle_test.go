package supervisor

import (
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// pyctl restart (a roll) of an idle app, which has no workers, says so:
// it said "draining the old ones", then "old workers stopped", of
// workers it did not have.
func TestReloadOfAnIdleAppDrainsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(2)
		cfg.IdleTimeout = time.Minute
		h := start(t, cfg, nil)
		if st, n := h.state(), h.st.count(); st != AppIdle || n != 0 {
			t.Fatalf("%s with %d workers, want idle with none", st, n)
		}
		var progress []string
		done := h.reload(cfg, &progress)
		h.readyAll()
		h.readyAll()
		if err, ok := result(done); !ok || err != nil {
			t.Fatalf("reload: %v (answered %v)", err, ok)
		}
		all := strings.Join(progress, "\n")
		if strings.Contains(all, "draining the old") || strings.Contains(all, "old workers stopped") {
			t.Errorf("reload of an idle app said:\n%s\nwant no old workers drained or stopped", all)
		}
		if !slices.Contains(progress, "all 2 new workers are ready; there were no old ones to drain") {
			t.Errorf("reload of an idle app said:\n%s\nwant that there were no old workers", all)
		}
	})
}
