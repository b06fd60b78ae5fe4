package config

import (
	"github.com/pyhost/pyhost/cgroup"
)

// The containment keys (issue 14, C2): what the kernel enforces on an
// app's cgroup as a whole (all its workers, its fork server and all they
// fork). They are parsed here and checked with cgroup's own helpers, so
// that a value the config accepts is one cgroup.Apply can write. Unlike
// memory_limit, which recycles one worker gracefully, these are hard:
// above memory_max the kernel's OOM killer kills a process of the app.
var (
	// memory_max and memory_high: 0 lifts a limit set in [defaults].
	// Below 16 MiB a Python worker cannot start at all.
	memoryMaxRange = sizeRange{lo: 16 * MiB, hi: TiB, zero: "no limit"}
	// cpu_weight and io_weight take what cgroup v2 takes; CheckWeight
	// says so again, in the kernel's terms, should this drift.
	weightRange = intRange{lo: 1, hi: 10000}
	// tasks_max: 0 lifts a limit set in [defaults].
	tasksMaxRange = intRange{lo: 0, hi: 4 << 20, zero: "no limit"}
)

// limits applies the containment keys of r (at p) over l.
func (c *checker) limits(r *rawTunables, p keyPath, l cgroup.Limits) cgroup.Limits {
	if n, ok := c.size(r.MemoryMax, p.key("memory_max"), memoryMaxRange); ok {
		l.MemoryMax = n
	}
	if n, ok := c.size(r.MemoryHigh, p.key("memory_high"), memoryMaxRange); ok {
		l.MemoryHigh = n
	}
	if n, ok := c.integer(r.CPUWeight, p.key("cpu_weight"), weightRange); ok {
		if err := cgroup.CheckWeight(n); err != nil {
			c.add(p.key("cpu_weight").String(), "%v", err)
		} else {
			l.CPUWeight = int(n)
		}
	}
	if n, ok := c.integer(r.IOWeight, p.key("io_weight"), weightRange); ok {
		if err := cgroup.CheckWeight(n); err != nil {
			c.add(p.key("io_weight").String(), "%v", err)
		} else {
			l.IOWeight = int(n)
		}
	}
	if s, ok := c.str(r.CPUMax, p.key("cpu_max"), `a percentage of one CPU in quotes, like "50%" (or "max")`); ok {
		if m, err := cgroup.ParseCPUMax(s); err != nil {
			c.add(p.key("cpu_max").String(), "%v", err)
		} else {
			l.CPUMax = m
		}
	}
	if n, ok := c.integer(r.TasksMax, p.key("tasks_max"), tasksMaxRange); ok {
		if n == 0 {
			l.TasksMax = 0
		} else if err := cgroup.CheckTasksMax(n); err != nil {
			c.add(p.key("tasks_max").String(), "%v", err)
		} else {
			l.TasksMax = n
		}
	}
	return l
}

// TasksFloor is the fewest tasks (pids.max) an app of processes workers
// of threads threads each runs with: per worker its request threads, its
// main thread and the thread reading the proxy's connections, and the
// fork server. An app below it cannot start all its workers.
func TasksFloor(processes, threads int) int64 {
	return int64(processes)*int64(threads+2) + 1
}

// checkTasks refuses a tasks_max the app's own processes and threads
// would not fit in: the kernel would fail the workers' thread starts, a
// crash loop that says less than this.
func (b *appBuilder) checkTasks(app App) {
	if n := app.Limits.TasksMax; n > 0 && n < TasksFloor(app.Processes, app.Threads) {
		b.add("tasks_max", "%d is fewer tasks than the app needs to run: processes %d x (threads %d + 2) + 1 for the fork server = %d; leave room above that for what the app starts itself",
			n, app.Processes, app.Threads, TasksFloor(app.Processes, app.Threads))
	}
}
