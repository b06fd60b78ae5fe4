package cgroup

import (
	"sync/atomic"
	"testing"
)

// SettleUser writes the user's totals when they change, and only then;
// a removed max_memory is lifted.
func TestSettleUser(t *testing.T) {
	f := newFakeFS(t)
	f.mountV2("cg/unified")
	f.mountV1("cg/memory", "memory")
	tr, err := open(f.kernel(), f.host(ModeHybrid, "/"), TreeOptions{Name: "pyhost-test"})
	if err != nil {
		t.Fatal(err)
	}
	app, err := tr.App("alice", "blog")
	if err != nil {
		t.Fatal(err)
	}
	f.took()
	if err := app.SettleUser(); err != nil {
		t.Fatal(err)
	}
	sameWrites(t, "without SetUserLimits", f.took(), nil)
	var max atomic.Int64
	max.Store(512 << 20)
	tr.SetUserLimits(func(user string) Limits {
		if user != "alice" {
			t.Errorf("asked for %q's limits", user)
		}
		return Limits{MemoryMax: max.Load()}
	})
	const p = "cg/memory/pyhost-test/apps/alice/"
	for _, step := range []struct {
		name  string
		max   int64
		wrote []string
	}{
		{"first", 512 << 20, []string{p + "memory.limit_in_bytes=536870912", p + "memory.soft_limit_in_bytes=-1"}},
		{"unchanged", 512 << 20, nil},
		{"lowered", 256 << 20, []string{p + "memory.limit_in_bytes=268435456", p + "memory.soft_limit_in_bytes=-1"}},
		{"removed", 0, []string{p + "memory.limit_in_bytes=-1", p + "memory.soft_limit_in_bytes=-1"}},
	} {
		max.Store(step.max)
		if err := app.SettleUser(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		// The user's other groups write nothing of their own.
		worker, _ := app.Worker("w1")
		if err := worker.SettleUser(); err != nil {
			t.Fatal(err)
		}
		got := f.took()
		var limits []string
		for _, w := range got {
			if len(w) > len(p) && w[:len(p)] == p && w[len(p):len(p)+6] == "memory" {
				limits = append(limits, w)
			}
		}
		sameWrites(t, step.name, limits, step.wrote)
	}
}
