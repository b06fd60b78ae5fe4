package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pyhost/pyhost/cgroup"
)

func TestParseAppFileContainmentKeys(t *testing.T) {
	cases := []struct {
		src  string
		want cgroup.Limits
	}{
		{``, cgroup.Limits{}},
		{`memory_max = "512MiB"`, cgroup.Limits{MemoryMax: 512 << 20}},
		{`memory_max = 0`, cgroup.Limits{}},
		{`memory_high = "400MiB"`, cgroup.Limits{MemoryHigh: 400 << 20}},
		{`cpu_weight = 50`, cgroup.Limits{CPUWeight: 50}},
		{`io_weight = 10000`, cgroup.Limits{IOWeight: 10000}},
		{`cpu_max = "50%"`, cgroup.Limits{CPUMax: cgroup.CPUMax{Quota: 5 * time.Millisecond, Period: 10 * time.Millisecond}}},
		{`cpu_max = "max"`, cgroup.Limits{}},
		{`tasks_max = 64`, cgroup.Limits{TasksMax: 64}},
		{`tasks_max = 0`, cgroup.Limits{}},
	}
	for _, c := range cases {
		app, _, err := ParseAppFile(appPath, []byte(c.src+baseSrc), alice, Defaults{})
		if err != nil {
			t.Errorf("%s: %v", c.src, err)
			continue
		}
		if app.Limits != c.want {
			t.Errorf("%s: limits %+v, want %+v", c.src, app.Limits, c.want)
		}
	}
}

func TestParseAppFileContainmentKeysInvalid(t *testing.T) {
	cases := []struct{ src, key, msg string }{
		{`memory_max = "1MiB"`, "memory_max", `must be 0 (no limit) or a size from 16MiB to 1TiB, like "512MiB", got "1MiB"`},
		{`memory_max = "lots"`, "memory_max", `…is not a size`},
		{`memory_high = -1`, "memory_high", `…got -1`},
		{`cpu_weight = 0`, "cpu_weight", `must be an integer from 1 to 10000, got 0`},
		{`io_weight = 10001`, "io_weight", `must be an integer from 1 to 10000, got 10001`},
		{`cpu_max = 50`, "cpu_max", `must be a percentage of one CPU in quotes, like "50%" (or "max"), got 50`},
		{`cpu_max = "half"`, "cpu_max", `"half" is not a CPU share; use a percentage of one CPU, like "50%" (or "max")`},
		{`cpu_max = "0.5%"`, "cpu_max", `…below the kernel's smallest share`},
		{`tasks_max = -1`, "tasks_max", `must be an integer from 0 (no limit) to 4194304, got -1`},
		{`tasks_max = "64"`, "tasks_max", `…got "64"`},
	}
	for _, c := range cases {
		src := baseSrc[1:] + c.src
		_, _, err := ParseAppFile(appPath, []byte(src), alice, Defaults{})
		var es Errors
		if !errors.As(err, &es) || len(es) != 1 {
			t.Errorf("%s: error %v, want one", c.src, err)
			continue
		}
		e := es[0]
		msgOK := e.Msg == c.msg || strings.HasPrefix(c.msg, "…") && strings.Contains(e.Msg, c.msg[len("…"):])
		if e.Key != c.key || !msgOK || e.Line != 2 || e.File != appPath {
			t.Errorf("%s:\n got %s:%d: [%s] %s\nwant line 2 [%s] %s", c.src, e.File, e.Line, e.Key, e.Msg, c.key, c.msg)
		}
	}
}

// [defaults] gives every app its limits; an app file overrides each key,
// and 0 lifts one.
func TestContainmentDefaults(t *testing.T) {
	admin, err := ParseAdmin(DefaultAdminFile, []byte("[defaults]\nmemory_max = \"1GiB\"\ntasks_max = 100\ncpu_max = \"50%\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := cgroup.Limits{MemoryMax: 1 << 30, TasksMax: 100, CPUMax: cgroup.CPUMax{Quota: 5 * time.Millisecond, Period: 10 * time.Millisecond}}
	if admin.Defaults.Limits != want {
		t.Fatalf("defaults %+v, want %+v", admin.Defaults.Limits, want)
	}
	app, _, err := ParseAppFile(appPath, []byte("memory_max = \"256MiB\"\ntasks_max = 0"+baseSrc), alice, admin.Defaults)
	if err != nil {
		t.Fatal(err)
	}
	want.MemoryMax, want.TasksMax = 256<<20, 0
	if app.Limits != want {
		t.Errorf("app %+v, want %+v", app.Limits, want)
	}
	_, err = ParseAdmin(DefaultAdminFile, []byte("[defaults]\ncpu_max = \"5\"\n"))
	if err == nil || !strings.Contains(err.Error(), "defaults.cpu_max") {
		t.Errorf("bad cpu_max in [defaults]: %v", err)
	}
}

// A tasks_max the app's own workers do not fit in is refused at the key.
func TestTasksMaxFloor(t *testing.T) {
	if got := TasksFloor(2, 4); got != 13 {
		t.Errorf("TasksFloor(2, 4) = %d, want 13 (measured: 2 workers of 4 threads and the fork server)", got)
	}
	src := "processes = 2\nthreads = 4\ntasks_max = 12" + baseSrc
	_, _, err := ParseAppFile(appPath, []byte(src), alice, Defaults{})
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || es[0].Key != "tasks_max" || es[0].Line != 3 || !strings.Contains(es[0].Msg, "= 13") {
		t.Errorf("tasks_max 12 for 2 x 4: %v", err)
	}
	if _, _, err := ParseAppFile(appPath, []byte("processes = 2\nthreads = 4\ntasks_max = 13"+baseSrc), alice, Defaults{}); err != nil {
		t.Errorf("tasks_max 13 for 2 x 4: %v", err)
	}
}
