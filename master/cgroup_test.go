package master

import (
	"strings"
	"testing"
	"time"

	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/supervisor"
)

// Each daemon's tree is its own: named by its state directory, so that
// daemons sharing a cgroup never sweep each other's apps; a pure-v2
// systemd unit uses its delegated cgroup itself.
func TestTreeName(t *testing.T) {
	hybrid := cgroup.Host{Mode: cgroup.ModeHybrid, V2: &cgroup.V2Hierarchy{Self: "/"}}
	a, b := treeName(hybrid, "/run/pyhost/workers"), treeName(hybrid, "/run/pyhost-2/workers")
	if !strings.HasPrefix(a, "pyhost-") || len(a) != len("pyhost-")+8 || a == b {
		t.Errorf("names %q and %q: want pyhost-<8 hex digits>, one per state dir", a, b)
	}
	if again := treeName(hybrid, "/run/pyhost/workers/"); again != a {
		t.Errorf("the same state dir named %q, then %q", a, again)
	}
	unit := cgroup.Host{Mode: cgroup.ModeV2, V2: &cgroup.V2Hierarchy{Self: "/system.slice/pyhost.service"}}
	if n := treeName(unit, "/run/pyhost/workers"); n != "" {
		t.Errorf("in a v2 service unit: %q, want the unit's own cgroup", n)
	}
	scope := cgroup.Host{Mode: cgroup.ModeV2, V2: &cgroup.V2Hierarchy{Self: "/user.slice/user-1000.slice/session-3.scope"}}
	if n := treeName(scope, "/tmp/x"); !strings.HasPrefix(n, "pyhost-") {
		t.Errorf("in a session scope: %q, want a group of its own", n)
	}
}

func TestContainmentStatus(t *testing.T) {
	var as control.AppStatus
	containmentStatus(&as, supervisor.Status{})
	if as.RestartsByReason == nil || as.Cgroup != "" {
		t.Errorf("without a cgroup: %+v", as)
	}
	st := supervisor.Status{
		RestartsByReason: map[string]int{control.RestartOOM: 2},
		Cgroup:           "apps/alice/blog", MemoryMax: 512 << 20,
		CgroupStats: cgroup.Stats{MemoryCurrent: 100 << 20, CPUUsage: 1500 * time.Millisecond, Throttled: 250 * time.Millisecond, Tasks: 13, OOMKills: 2},
	}
	containmentStatus(&as, st)
	want := control.AppStatus{
		RestartsByReason: st.RestartsByReason, Cgroup: "apps/alice/blog",
		MemoryCurrentBytes: 100 << 20, MemoryMaxBytes: 512 << 20, CgroupCPUSeconds: 1.5, Tasks: 13, OOMKills: 2, ThrottledSeconds: 0.25,
	}
	if as.Cgroup != want.Cgroup || as.MemoryCurrentBytes != want.MemoryCurrentBytes || as.MemoryMaxBytes != want.MemoryMaxBytes ||
		as.CgroupCPUSeconds != want.CgroupCPUSeconds || as.Tasks != want.Tasks || as.OOMKills != want.OOMKills ||
		as.ThrottledSeconds != want.ThrottledSeconds || as.RestartsByReason[control.RestartOOM] != 2 {
		t.Errorf("got %+v\nwant %+v", as, want)
	}
	// A lower memory_max the kernel refused for now: the one in force,
	// and the lower one as pending.
	st.MemoryMax = 40 << 20
	st.CgroupStats.MemoryMax, st.CgroupStats.Have = 512<<20, cgroup.HaveMemoryMax
	containmentStatus(&as, st)
	if as.MemoryMaxBytes != 512<<20 || as.MemoryMaxPendingBytes != 40<<20 {
		t.Errorf("pending: memory_max_bytes %d, memory_max_pending_bytes %d", as.MemoryMaxBytes, as.MemoryMaxPendingBytes)
	}
}
