package cgroup

import (
	"testing"
	"time"
)

func TestLooser(t *testing.T) {
	pct := func(p int) CPUMax {
		return CPUMax{Quota: time.Duration(p) * time.Millisecond, Period: 100 * time.Millisecond}
	}
	for _, c := range []struct {
		name     string
		old, new Limits
		want     Limits
	}{
		{"lowered", Limits{MemoryMax: 200, MemoryHigh: 150, TasksMax: 50, CPUMax: pct(50)}, Limits{MemoryMax: 40, MemoryHigh: 30, TasksMax: 20, CPUMax: pct(20)}, Limits{MemoryMax: 200, MemoryHigh: 150, TasksMax: 50, CPUMax: pct(50)}},
		{"raised", Limits{MemoryMax: 40, TasksMax: 20, CPUMax: pct(20)}, Limits{MemoryMax: 200, TasksMax: 50, CPUMax: pct(50)}, Limits{MemoryMax: 200, TasksMax: 50, CPUMax: pct(50)}},
		{"set", Limits{}, Limits{MemoryMax: 40, TasksMax: 20, CPUMax: pct(20)}, Limits{}},
		{"removed", Limits{MemoryMax: 40, TasksMax: 20, CPUMax: pct(20)}, Limits{}, Limits{}},
		{"weights are the new", Limits{CPUWeight: 500, IOWeight: 300}, Limits{CPUWeight: 50}, Limits{CPUWeight: 50}},
	} {
		if got := c.old.Looser(c.new); got != c.want {
			t.Errorf("%s: %+v.Looser(%+v) = %+v, want %+v", c.name, c.old, c.new, got, c.want)
		}
	}
}
