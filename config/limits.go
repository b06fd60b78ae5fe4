package config

import (
	"fmt"
	"strings"

	"github.com/pyhost/pyhost/cgroup"
)

// The containment keys (issue 14, C2): what the kernel enforces on an
// app's cgroup as a whole (all its workers, its fork server and all they
// fork). They are parsed here and checked with cgroup's own helpers, so
// that a value the config accepts is one cgroup.Apply can write (their
// rows are in tunables.go). Unlike memory_limit, which recycles one
// worker gracefully, these are hard: above memory_max the kernel's OOM
// killer kills a process of the app.
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

// weightKind reads cpu_weight and io_weight.
func weightKind() kind[int] {
	return kind[int]{parse: func(c *checker, v value, p keyPath) (int, bool) {
		n, ok := c.integer(v, p, weightRange)
		if !ok {
			return 0, false
		}
		if err := cgroup.CheckWeight(n); err != nil {
			c.add(p.String(), "%v", err)
			return 0, false
		}
		return int(n), true
	}}
}

// cpuMaxKind reads cpu_max, a percentage of one CPU.
func cpuMaxKind() kind[cgroup.CPUMax] {
	return kind[cgroup.CPUMax]{parse: func(c *checker, v value, p keyPath) (cgroup.CPUMax, bool) {
		s, ok := c.str(v, p, `a percentage of one CPU in quotes, like "50%" (or "max")`)
		if !ok {
			return cgroup.CPUMax{}, false
		}
		m, err := cgroup.ParseCPUMax(s)
		if err != nil {
			c.add(p.String(), "%v", err)
			return cgroup.CPUMax{}, false
		}
		return m, true
	}}
}

// tasksMaxKind reads tasks_max; 0 lifts a limit.
func tasksMaxKind() kind[int64] {
	return kind[int64]{parse: func(c *checker, v value, p keyPath) (int64, bool) {
		n, ok := c.integer(v, p, tasksMaxRange)
		if !ok {
			return 0, false
		}
		if n != 0 {
			if err := cgroup.CheckTasksMax(n); err != nil {
				c.add(p.String(), "%v", err)
				return 0, false
			}
		}
		return n, true
	}}
}

// TasksFloor is the fewest tasks (pids.max) an app of processes workers
// of threads threads each runs with: per worker its request threads, its
// main thread and the thread reading the proxy's connections, and the
// fork server. An app below it cannot start all its workers.
func TasksFloor(processes, threads int) int64 {
	return int64(processes)*int64(threads+2) + 1
}

// tasksProblem says why app's tasks_max is too few for its own
// processes and threads ("" when it fits): the kernel would fail the
// workers' thread starts, a crash loop that says less than this. what
// names the app ("the app", "an app of the defaults").
func tasksProblem(app App, what string) string {
	n, floor := app.Limits.TasksMax, TasksFloor(app.Processes, app.Threads)
	if n <= 0 || n >= floor {
		return ""
	}
	return fmt.Sprintf("%d is fewer tasks than %s needs to run: processes %d x (threads %d + 2) + 1 for the fork server = %d; leave room above that for what the app starts itself",
		n, what, app.Processes, app.Threads, floor)
}

// checkTasks refuses a tasks_max the app's own processes and threads
// would not fit in. inFile says whether the file set tasks_max: if not,
// it is the admin's [defaults], and the message says so (the file has
// no such key to look for).
func (b *appBuilder) checkTasks(app App, inFile bool) {
	problem := tasksProblem(app, "the app")
	if problem == "" {
		return
	}
	if !inFile {
		problem = strings.Replace(problem, " is fewer", " (the admin's [defaults]) is fewer", 1) +
			"; set tasks_max in this file, or lower processes or threads"
	}
	b.add("tasks_max", "%s", problem)
}
