package cgroup

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func sameWrites(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s wrote:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

var fullLimits = Limits{
	MemoryMax: 512 << 20, MemoryHigh: 400 << 20, CPUWeight: 50,
	CPUMax: CPUMax{Quota: 50 * time.Millisecond, Period: 100 * time.Millisecond}, TasksMax: 64, IOWeight: 200,
}

// Pure v2 under systemd: the base is the delegated unit, so the daemon
// moves into base/daemon before the controllers go to base's children;
// then every level down to the user's group hands them on.
func TestTreeV2Delegated(t *testing.T) {
	f := newFakeFS(t)
	f.mountV2("cg", "cpu", "io", "memory", "pids", "hugetlb")
	f.groupV2("system.slice/pyhost.service", "cpu", "io", "memory", "pids")
	tr, err := open(f.kernel(), f.host(ModeV2, "/system.slice/pyhost.service"), TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc := "cg/system.slice/pyhost.service"
	sameWrites(t, "Open", f.took(), []string{
		svc + "/daemon/cgroup.procs=" + strconv.Itoa(os.Getpid()),
		svc + "/cgroup.subtree_control=+cpu",
		svc + "/cgroup.subtree_control=+io",
		svc + "/cgroup.subtree_control=+memory",
		svc + "/cgroup.subtree_control=+pids",
		svc + "/apps/cgroup.subtree_control=+cpu",
		svc + "/apps/cgroup.subtree_control=+io",
		svc + "/apps/cgroup.subtree_control=+memory",
		svc + "/apps/cgroup.subtree_control=+pids",
	})
	if tr.Base() != f.path(svc) || !tr.v2.own {
		t.Errorf("base %s own %v", tr.Base(), tr.v2.own)
	}
	if s := tr.String(); !strings.HasSuffix(s, "(v2); enforced: memory_max memory_high cpu_weight cpu_max tasks_max io_weight") {
		t.Errorf("String: %s", s)
	}
	if err := tr.Check(fullLimits); err != nil {
		t.Errorf("Check: %v", err)
	}

	app, err := tr.App("alice", "blog")
	if err != nil {
		t.Fatal(err)
	}
	sameWrites(t, "App", f.took(), []string{
		svc + "/apps/alice/cgroup.subtree_control=+cpu",
		svc + "/apps/alice/cgroup.subtree_control=+io",
		svc + "/apps/alice/cgroup.subtree_control=+memory",
		svc + "/apps/alice/cgroup.subtree_control=+pids",
	})
	if app.Path() != "apps/alice/blog" || app.Dir() != f.path(svc+"/apps/alice/blog") {
		t.Errorf("app at %s, %s", app.Path(), app.Dir())
	}
	if got := f.read(svc + "/apps/alice/blog/cgroup.subtree_control"); got != "" {
		t.Errorf("the app's own subtree_control is %q: it must stay empty so the app group may hold processes", got)
	}

	if err := app.Apply(fullLimits); err != nil {
		t.Fatal(err)
	}
	b := svc + "/apps/alice/blog/"
	sameWrites(t, "Apply", f.took(), []string{
		b + "memory.max=536870912", b + "memory.high=419430400", b + "cpu.weight=50",
		b + "cpu.max=50000 100000", b + "pids.max=64", b + "io.weight=default 200",
	})
	// Zero lifts every limit again.
	if err := app.Apply(Limits{}); err != nil {
		t.Fatal(err)
	}
	sameWrites(t, "Apply(zero)", f.took(), []string{
		b + "memory.max=max", b + "memory.high=max", b + "cpu.weight=100",
		b + "cpu.max=max 100000", b + "pids.max=max", b + "io.weight=default 100",
	})

	// The user's totals go on the user's group.
	user, err := tr.User("alice")
	if err != nil {
		t.Fatal(err)
	}
	f.took()
	if err := user.Apply(Limits{MemoryMax: 2 << 30}); err != nil {
		t.Fatal(err)
	}
	if got := f.read(svc + "/apps/alice/memory.max"); got != "2147483648" {
		t.Errorf("user memory.max %q", got)
	}

	// Worker leaves: membership only.
	w, err := app.Worker("w1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(w.Dir(), "cgroup.kill")); err != nil {
		t.Errorf("worker leaf: %v", err)
	}
	if _, err := os.Stat(filepath.Join(w.Dir(), "memory.max")); err == nil {
		t.Error("worker leaf has memory.max: the app handed controllers down")
	}
	if err := w.Apply(fullLimits); err == nil {
		t.Error("Apply on a worker's leaf succeeded")
	}
	if _, err := w.Worker("x"); err == nil {
		t.Error("a leaf below a leaf")
	}
	if _, err := w.WatchOOM(context.Background()); !errors.Is(err, ErrUnsupported) {
		t.Errorf("WatchOOM on a leaf: %v", err)
	}
	f.took()
	if err := w.Attach(4242); err != nil {
		t.Fatal(err)
	}
	sameWrites(t, "Attach", f.took(), []string{b + "w1/cgroup.procs=4242"})
}

// A daemon in the root cgroup (no systemd) builds under "pyhost", and
// switches the controllers on at the root where they are not yet.
func TestTreeV2Root(t *testing.T) {
	f := newFakeFS(t)
	f.mountV2("cg", "cpu", "memory", "pids")
	tr, err := open(f.kernel(), f.host(ModeV2, "/"), TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameWrites(t, "Open", f.took(), []string{
		"cg/cgroup.subtree_control=+cpu", "cg/cgroup.subtree_control=+memory", "cg/cgroup.subtree_control=+pids",
		"cg/pyhost/cgroup.subtree_control=+cpu", "cg/pyhost/cgroup.subtree_control=+memory", "cg/pyhost/cgroup.subtree_control=+pids",
		"cg/pyhost/apps/cgroup.subtree_control=+cpu", "cg/pyhost/apps/cgroup.subtree_control=+memory", "cg/pyhost/apps/cgroup.subtree_control=+pids",
	})
	if tr.v2.own {
		t.Error("the root taken as the daemon's own base")
	}
	// Opening again (a restart) finds it all in place.
	if _, err := open(f.kernel(), f.host(ModeV2, "/"), TreeOptions{}); err != nil {
		t.Fatal(err)
	}
	sameWrites(t, "second Open", f.took(), nil)

	// io is not offered here: a limit asking for it is refused by name,
	// and the others are still written.
	app, err := tr.App("bob", "shop")
	if err != nil {
		t.Fatal(err)
	}
	err = app.Apply(Limits{IOWeight: 300, TasksMax: 10})
	var ue *UnsupportedError
	if !errors.As(err, &ue) || ue.Key != "io_weight" || !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "io controller") {
		t.Errorf("Apply: %v", err)
	}
	if got := f.read("cg/pyhost/apps/bob/shop/pids.max"); got != "10" {
		t.Errorf("pids.max %q", got)
	}
	if err := tr.Check(Limits{IOWeight: 300, MemoryMax: 1 << 30}); err == nil || !strings.Contains(err.Error(), "io_weight is not enforced") || strings.Contains(err.Error(), "memory_max") {
		t.Errorf("Check: %v", err)
	}
	if err := app.Apply(Limits{}); err != nil {
		t.Errorf("Apply(zero) with io missing: %v", err)
	}
}

// A controller the kernel refuses to switch on (here: a parent that
// holds processes) is not enforced, and the error says why.
func TestTreeV2Refused(t *testing.T) {
	f := newFakeFS(t)
	f.mountV2("cg", "cpu", "memory", "pids")
	f.groupV2("user.slice/session-1.scope", "cpu", "memory", "pids")
	f.refuse["cg/user.slice/session-1.scope/cgroup.subtree_control"] = &fs.PathError{Op: "write", Path: "x", Err: unix.EBUSY}
	tr, err := open(f.kernel(), f.host(ModeV2, "/user.slice/session-1.scope"), TreeOptions{Name: "pyhost-x"})
	if err != nil {
		t.Fatal(err)
	}
	err = tr.Check(Limits{MemoryMax: 1 << 30})
	if err == nil || !strings.Contains(err.Error(), "cannot be switched on") || !strings.Contains(err.Error(), "holds processes") {
		t.Errorf("Check: %v", err)
	}
	app, err := tr.App("carol", "wiki")
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Apply(Limits{CPUWeight: 10}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Apply: %v", err)
	}
	if s := tr.String(); !strings.Contains(s, "not enforced: memory_max, memory_high, cpu_weight, cpu_max, tasks_max, io_weight") {
		t.Errorf("String: %s", s)
	}
}

// Hybrid: membership in cgroup2, limits in the v1 hierarchies, a group
// of the same path in each.
func TestTreeHybrid(t *testing.T) {
	f := newFakeFS(t)
	f.mountV2("cg/unified")
	f.mountV1("cg/cpu", "cpu")
	f.mountV1("cg/memory", "memory")
	f.mountV1("cg/pids", "pids")
	tr, err := open(f.kernel(), f.host(ModeHybrid, "/"), TreeOptions{Name: "pyhost-test"})
	if err != nil {
		t.Fatal(err)
	}
	sameWrites(t, "Open", f.took(), nil)
	app, err := tr.App("alice", "blog")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"unified", "cpu", "memory", "pids"} {
		if _, err := os.Stat(f.path("cg/" + d + "/pyhost-test/apps/alice/blog")); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	err = app.Apply(fullLimits)
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "io_weight") || strings.Contains(err.Error(), "memory_max") {
		t.Errorf("Apply: %v", err)
	}
	p := "/pyhost-test/apps/alice/blog/"
	sameWrites(t, "Apply", f.took(), []string{
		"cg/memory" + p + "memory.limit_in_bytes=536870912",
		"cg/memory" + p + "memory.soft_limit_in_bytes=419430400",
		"cg/cpu" + p + "cpu.shares=512",
		"cg/cpu" + p + "cpu.cfs_period_us=100000",
		"cg/cpu" + p + "cpu.cfs_quota_us=50000",
		"cg/pids" + p + "pids.max=64",
	})
	if err := app.Apply(Limits{}); err != nil {
		t.Fatal(err)
	}
	sameWrites(t, "Apply(zero)", f.took(), []string{
		"cg/memory" + p + "memory.limit_in_bytes=-1",
		"cg/memory" + p + "memory.soft_limit_in_bytes=-1",
		"cg/cpu" + p + "cpu.shares=1024",
		"cg/cpu" + p + "cpu.cfs_period_us=100000",
		"cg/cpu" + p + "cpu.cfs_quota_us=-1",
		"cg/pids" + p + "pids.max=max",
	})
	if err := app.Attach(77); err != nil {
		t.Fatal(err)
	}
	sameWrites(t, "Attach", f.took(), []string{
		"cg/unified" + p + "cgroup.procs=77", "cg/cpu" + p + "cgroup.procs=77", "cg/memory" + p + "cgroup.procs=77", "cg/pids" + p + "cgroup.procs=77",
	})
	// A worker's leaf is in cgroup2; its children go to the app's v1
	// groups.
	w, err := app.Worker("w7")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Attach(78); err != nil {
		t.Fatal(err)
	}
	sameWrites(t, "worker Attach", f.took(), []string{
		"cg/unified" + p + "w7/cgroup.procs=78", "cg/cpu" + p + "cgroup.procs=78", "cg/memory" + p + "cgroup.procs=78", "cg/pids" + p + "cgroup.procs=78",
	})
	if _, err := os.Stat(f.path("cg/memory" + p + "w7")); err == nil {
		t.Error("a worker leaf in a v1 hierarchy")
	}
}

// Hybrid under systemd: the unit is the base, but v2 has no controllers
// to hand down, so the daemon stays where it is.
func TestTreeHybridDelegated(t *testing.T) {
	f := newFakeFS(t)
	f.mountV2("cg/unified")
	f.groupV2("system.slice/pyhost.service")
	f.mountV1("cg/memory", "memory")
	tr, err := open(f.kernel(), f.host(ModeHybrid, "/system.slice/pyhost.service"), TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameWrites(t, "Open", f.took(), nil)
	if _, err := os.Stat(f.path("cg/unified/system.slice/pyhost.service/daemon")); err == nil {
		t.Error("a daemon leaf with nothing to hand down")
	}
	if tr.Base() != f.path("cg/unified/system.slice/pyhost.service") {
		t.Errorf("base %s", tr.Base())
	}
}

// Where the daemon's cgroup is the root in one hierarchy and not in
// another (this project's machines: memory is /process_api/…), each
// hierarchy follows its own rule: "pyhost" below the root, the own
// cgroup elsewhere; the daemon does not move in a hierarchy whose base is
// not its own, and Remove takes the bases it made only.
func TestTreeMixedOwn(t *testing.T) {
	f := newFakeFS(t)
	f.mountV2("cg/unified", "pids")
	f.mountV1("cg/memory", "memory")
	f.populateV1(f.path("cg/memory/session/7bfe"), []string{"memory"})
	h := f.host(ModeHybrid, "/")
	h.V1[0].Self, h.V1[0].Dir = "/session/7bfe", f.path("cg/memory/session/7bfe")
	tr, err := open(f.kernel(), h, TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tr.v2.base != f.path("cg/unified/pyhost") || tr.v2.own || tr.v1[0].base != f.path("cg/memory/session/7bfe") || !tr.v1[0].own {
		t.Errorf("bases: v2 %s (own %v), memory %s (own %v)", tr.v2.base, tr.v2.own, tr.v1[0].base, tr.v1[0].own)
	}
	for _, w := range f.took() {
		if strings.Contains(w, "cgroup.procs") {
			t.Errorf("the daemon moved: %s", w)
		}
	}
	if _, err := tr.App("a", "b"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tr.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"cg/unified/pyhost/apps/a/b", "cg/unified/pyhost/apps/a", "cg/unified/pyhost/apps",
		"cg/memory/session/7bfe/apps/a/b", "cg/memory/session/7bfe/apps/a", "cg/memory/session/7bfe/apps", "cg/unified/pyhost"}
	if !reflect.DeepEqual(f.rmdirs, want) {
		t.Errorf("rmdirs:\n  %s\nwant\n  %s", strings.Join(f.rmdirs, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestReleaseAtLeast(t *testing.T) {
	for rel, want := range map[string]bool{"6.18.44-fc-v1272": true, "5.7.0": true, "5.10.0-28-amd64": true, "5.4.0-150-generic": false, "4.19.0": false, "6": false, "": false} {
		if got := releaseAtLeast(rel, 5, 7); got != want {
			t.Errorf("releaseAtLeast(%q, 5, 7) = %v", rel, got)
		}
	}
}

// v1 only: no worker leaves; killing goes through the freezer.
func TestTreeV1(t *testing.T) {
	f := newFakeFS(t)
	f.mountV1("cg/cpu,cpuacct", "cpu", "cpuacct")
	f.mountV1("cg/freezer", "freezer")
	f.mountV1("cg/memory", "memory")
	tr, err := open(f.kernel(), f.host(ModeV1, "/"), TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	app, err := tr.App("alice", "blog")
	if err != nil {
		t.Fatal(err)
	}
	if app.Dir() != f.path("cg/cpu,cpuacct/pyhost/apps/alice/blog") {
		t.Errorf("Dir %s", app.Dir())
	}
	if app.members() != f.path("cg/freezer/pyhost/apps/alice/blog") {
		t.Errorf("members %s", app.members())
	}
	if _, err := app.Worker("w1"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Worker: %v", err)
	}
	if _, err := app.OpenFD(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("OpenFD: %v", err)
	}
	if err := tr.Check(Limits{TasksMax: 5}); err == nil || !strings.Contains(err.Error(), "no v1 pids hierarchy") {
		t.Errorf("Check: %v", err)
	}
	// Stats: cpuacct for CPU, the memory subtree summed for OOM kills.
	f.file(f.path("cg/cpu,cpuacct/pyhost/apps/alice/blog/cpuacct.usage"), "1500000000\n")
	f.file(f.path("cg/cpu,cpuacct/pyhost/apps/alice/blog/cpu.stat"), "nr_periods 10\nnr_throttled 4\nthrottled_time 250000000\n")
	f.file(f.path("cg/memory/pyhost/apps/alice/blog/memory.usage_in_bytes"), "1048576\n")
	f.file(f.path("cg/memory/pyhost/apps/alice/blog/memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
	f.file(f.path("cg/memory/pyhost/apps/alice/blog/sub/memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
	st, err := app.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{MemoryCurrent: 1 << 20, CPUUsage: 1500 * time.Millisecond, Throttled: 250 * time.Millisecond, OOMKills: 3,
		Have: HaveMemory | HaveMemoryPeak | HaveCPU | HaveThrottled | HaveOOMKills | HaveMemoryMax} // no limit: MemoryMax 0
	if st != want {
		t.Errorf("Stats = %+v\nwant %+v", st, want)
	}
}

func TestStatsV2(t *testing.T) {
	f := newFakeFS(t)
	f.mountV2("cg", "cpu", "memory", "pids")
	tr, err := open(f.kernel(), f.host(ModeV2, "/"), TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	app, err := tr.App("alice", "blog")
	if err != nil {
		t.Fatal(err)
	}
	d := "cg/pyhost/apps/alice/blog/"
	f.file(f.path(d+"memory.current"), "73400320\n")
	f.file(f.path(d+"memory.peak"), "104857600\n")
	f.file(f.path(d+"memory.events"), "low 0\nhigh 3\nmax 9\noom 2\noom_kill 2\noom_group_kill 0\n")
	f.file(f.path(d+"cpu.stat"), "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 5\nnr_throttled 2\nthrottled_usec 120000\n")
	f.file(f.path(d+"pids.current"), "9\n")
	st, err := app.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{MemoryCurrent: 70 << 20, MemoryPeak: 100 << 20, CPUUsage: 2500 * time.Millisecond, Throttled: 120 * time.Millisecond, Tasks: 9, OOMKills: 2,
		Have: HaveMemory | HaveMemoryPeak | HaveCPU | HaveThrottled | HaveTasks | HaveOOMKills | HaveMemoryMax} // memory.max "max": 0
	if st != want {
		t.Errorf("Stats = %+v\nwant %+v", st, want)
	}
	// A kernel before 5.19 has no memory.peak: the figure is missing,
	// not zero.
	os.Remove(f.path(d + "memory.peak"))
	if st, err := app.Stats(); err != nil || st.Have&HaveMemoryPeak != 0 || st.MemoryPeak != 0 {
		t.Errorf("without memory.peak: %+v, %v", st, err)
	}
	f.file(f.path(d+"pids.current"), "many\n")
	if _, err := app.Stats(); err == nil {
		t.Error("Stats parsed a broken pids.current")
	}
	if err := os.RemoveAll(app.Dir()); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Stats(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stats of a removed group: %v", err)
	}
}

// recv waits for one event, or fails after d.
func recv(t *testing.T, ch <-chan OOMEvent, d time.Duration) (OOMEvent, bool) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		return ev, ok
	case <-time.After(d):
		t.Fatal("no event")
		return OOMEvent{}, false
	}
}

func TestWatchOOMV2(t *testing.T) {
	f := newFakeFS(t)
	f.mountV2("cg", "memory")
	tr, err := open(f.kernel(), f.host(ModeV2, "/"), TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	app, err := tr.App("alice", "blog")
	if err != nil {
		t.Fatal(err)
	}
	events := f.path("cg/pyhost/apps/alice/blog/memory.events")
	f.file(events, "max 4\noom 1\noom_kill 1\n") // before the watch: not reported
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := app.WatchOOM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	set := func(s string) {
		if err := writeFile(events, s); err != nil {
			t.Fatal(err)
		}
	}
	set("max 5\noom 1\noom_kill 1\n") // a change, but no new kill
	set("max 6\noom 2\noom_kill 2\n")
	if ev, ok := recv(t, ch, 5*time.Second); !ok || ev != (OOMEvent{Kills: 1, Total: 2}) {
		t.Errorf("event %+v, %v", ev, ok)
	}
	// Two kills while nobody reads add up.
	set("max 7\noom 3\noom_kill 3\n")
	set("max 8\noom 4\noom_kill 4\n")
	// The watcher may have read the first before the second came (one
	// event each), or both at once (one event of two kills).
	switch ev, ok := recv(t, ch, 5*time.Second); {
	case ok && ev == (OOMEvent{Kills: 1, Total: 3}):
		if ev, ok := recv(t, ch, 5*time.Second); !ok || ev != (OOMEvent{Kills: 1, Total: 4}) {
			t.Errorf("second event %+v, %v", ev, ok)
		}
	case !ok || ev != (OOMEvent{Kills: 2, Total: 4}):
		t.Errorf("event %+v, %v", ev, ok)
	}
	// The group goes: the channel closes.
	if err := os.Remove(events); err != nil {
		t.Fatal(err)
	}
	if ev, ok := recv(t, ch, 5*time.Second); ok {
		t.Errorf("event %+v after removal", ev)
	}

	// Ending the context closes it too.
	f.file(events, "oom_kill 0\n")
	ctx2, cancel2 := context.WithCancel(context.Background())
	ch2, err := app.WatchOOM(ctx2)
	if err != nil {
		t.Fatal(err)
	}
	cancel2()
	if _, ok := recv(t, ch2, 5*time.Second); ok {
		t.Error("event after cancel")
	}
}

func TestWatchOOMV1(t *testing.T) {
	f := newFakeFS(t)
	f.mountV1("cg/memory", "memory")
	tr, err := open(f.kernel(), f.host(ModeV1, "/"), TreeOptions{PollInterval: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	app, err := tr.App("alice", "blog")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := app.WatchOOM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// v1 counts a kill in the victim's own group: a subgroup's counts.
	f.file(f.path("cg/memory/pyhost/apps/alice/blog/sub/memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
	if ev, ok := recv(t, ch, 5*time.Second); !ok || ev != (OOMEvent{Kills: 2, Total: 2}) {
		t.Errorf("event %+v, %v", ev, ok)
	}
	if err := os.RemoveAll(f.path("cg/memory/pyhost/apps/alice/blog")); err != nil {
		t.Fatal(err)
	}
	if _, ok := recv(t, ch, 5*time.Second); ok {
		t.Error("event after removal")
	}
}

// Remove takes subgroups first, retries EBUSY while the kernel reaps,
// and gives up when the context ends; Tree.Remove leaves a base that is
// the daemon's own cgroup.
func TestRemove(t *testing.T) {
	f := newFakeFS(t)
	f.mountV2("cg/unified")
	f.mountV1("cg/memory", "memory")
	tr, err := open(f.kernel(), f.host(ModeHybrid, "/"), TreeOptions{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	app, err := tr.App("alice", "blog")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Worker("w1"); err != nil {
		t.Fatal(err)
	}
	f.busy[f.path("cg/unified/t/apps/alice/blog")] = 3
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := app.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"cg/unified/t/apps/alice/blog/w1", "cg/unified/t/apps/alice/blog", "cg/memory/t/apps/alice/blog"}
	if !reflect.DeepEqual(f.rmdirs, want) {
		t.Errorf("rmdirs %v, want %v", f.rmdirs, want)
	}
	if err := app.Remove(ctx); err != nil {
		t.Errorf("Remove of a removed group: %v", err)
	}

	if _, err := tr.App("bob", "shop"); err != nil {
		t.Fatal(err)
	}
	f.busy[f.path("cg/unified/t/apps/bob/shop")] = 1 << 30
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if err := tr.Remove(short); !isErrno(err, unix.EBUSY) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Remove of a busy group: %v", err)
	}
	f.busy[f.path("cg/unified/t/apps/bob/shop")] = 0
	f.rmdirs = nil
	if err := tr.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"cg/unified/t", "cg/memory/t"} {
		if _, err := os.Stat(f.path(d)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v", d, err)
		}
	}

	// The daemon's own cgroup as base: its groups go, it stays.
	g := newFakeFS(t)
	g.mountV2("cg", "memory")
	g.groupV2("svc", "memory")
	own, err := open(g.kernel(), g.host(ModeV2, "/svc"), TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := own.App("a", "b"); err != nil {
		t.Fatal(err)
	}
	if err := own.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g.rmdirs, []string{"cg/svc/apps/a/b", "cg/svc/apps/a", "cg/svc/apps"}) {
		t.Errorf("rmdirs %v", g.rmdirs)
	}
}

// While one app's group waits for its processes to be reaped, other
// apps' groups are made: Remove does not hold the tree through its
// retries.
func TestRemoveDoesNotHoldTheTree(t *testing.T) {
	f := newFakeFS(t)
	f.mountV2("cg", "memory")
	tr, err := open(f.kernel(), f.host(ModeV2, "/"), TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	slow, err := tr.App("alice", "slow")
	if err != nil {
		t.Fatal(err)
	}
	f.busy[slow.Dir()] = 1 << 30
	f.busyAt = make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	removed := make(chan error, 1)
	go func() { removed <- slow.Remove(ctx) }()
	<-f.busyAt // Remove is retrying
	if _, err := tr.App("bob", "shop"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-removed:
		t.Fatalf("Remove ended before it was cancelled: %v", err)
	default:
	}
	cancel()
	if err := <-removed; !errors.Is(err, context.Canceled) {
		t.Errorf("Remove: %v", err)
	}
}

func TestNames(t *testing.T) {
	f := newFakeFS(t)
	f.mountV2("cg", "memory")
	tr, err := open(f.kernel(), f.host(ModeV2, "/"), TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", ".", "..", "a/b", "x\x00", "new\nline", strings.Repeat("n", 256)} {
		if _, err := tr.App("alice", bad); err == nil {
			t.Errorf("App(alice, %q) succeeded", bad)
		}
		if _, err := tr.User(bad); err == nil {
			t.Errorf("User(%q) succeeded", bad)
		}
	}
	// A name that is a control file's is no group.
	if _, err := tr.App("alice", "memory.max"); err == nil {
		t.Error("App named after a control file succeeded")
	}
	if _, err := open(f.kernel(), f.host(ModeV2, "/"), TreeOptions{Parent: "relative"}); err == nil {
		t.Error("a relative parent accepted")
	}
	if _, err := open(f.kernel(), Host{}, TreeOptions{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Open on ModeNone: %v", err)
	}
}
