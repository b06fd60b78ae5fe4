package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseCPUMax(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		in      string
		want    CPUMax
		v2, str string
		err     string
	}{
		{in: "50%", want: CPUMax{5 * ms, 10 * ms}, v2: "5000 10000", str: "50%"},
		{in: "20%", want: CPUMax{2 * ms, 10 * ms}, v2: "2000 10000", str: "20%"},
		{in: " 12.5 % ", want: CPUMax{1250 * time.Microsecond, 10 * ms}, v2: "1250 10000", str: "12.5%"},
		{in: "200%", want: CPUMax{20 * ms, 10 * ms}, v2: "20000 10000", str: "200%"},
		{in: "1%", want: CPUMax{ms, 100 * ms}, v2: "1000 100000", str: "1%"},
		{in: "0.125%", err: "below the kernel's smallest share"},
		// Below 10%, or with a share the short period cannot count in
		// whole microseconds: the kernel's 100 ms.
		{in: "5%", want: CPUMax{5 * ms, 100 * ms}, v2: "5000 100000", str: "5%"},
		{in: "10%", want: CPUMax{ms, 10 * ms}, v2: "1000 10000", str: "10%"},
		{in: "12.55%", want: CPUMax{1255 * time.Microsecond, 10 * ms}, v2: "1255 10000", str: "12.55%"},
		{in: "12.555%", want: CPUMax{12555 * time.Microsecond, 100 * ms}, v2: "12555 100000", str: "12.555%"},
		{in: "33.333%", want: CPUMax{33333 * time.Microsecond, 100 * ms}, v2: "33333 100000", str: "33.333%"},
		{in: "max", want: CPUMax{}, v2: "max 100000", str: "max"},
		{in: "12.3456%", err: "too many decimals"},
		{in: "0%", err: "below the kernel's smallest share"},
		{in: "0.5%", err: "below"},
		{in: "50", err: `use a percentage of one CPU, like "50%"`},
		{in: "", err: "is not a CPU share"},
		{in: "%", err: "is not a CPU share"},
		{in: "-5%", err: "is not a CPU share"},
		{in: "1e2%", err: "is not a CPU share"},
		{in: "1/2%", err: "is not a CPU share"},
		{in: "50 percent", err: "is not a CPU share"},
		{in: "100001%", err: "more than 1000 CPUs"},
	} {
		got, err := ParseCPUMax(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseCPUMax(%q) = %v, %v; want error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseCPUMax(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		if got.v2() != tc.v2 || got.String() != tc.str {
			t.Errorf("ParseCPUMax(%q): v2 %q, String %q; want %q, %q", tc.in, got.v2(), got.String(), tc.v2, tc.str)
		}
	}
}

func FuzzParseCPUMax(f *testing.F) {
	for _, s := range []string{"50%", "12.5%", "max", "0.001%", "100000%", "1e3%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCPUMax(s)
		if err != nil {
			return
		}
		back, err := ParseCPUMax(c.String())
		if err != nil || back != c {
			t.Fatalf("%q → %v → %q → %v, %v", s, c, c.String(), back, err)
		}
		if !c.IsZero() && (c.Quota < minQuota || (c.Period != defaultPeriod && c.Period != shortPeriod)) {
			t.Fatalf("%q → %v", s, c)
		}
	})
}

func TestWeights(t *testing.T) {
	for w, shares := range map[int]int64{0: 1024, 100: 1024, 1: 10, 50: 512, 200: 2048, 10000: 102400} {
		if got := SharesForWeight(w); got != shares {
			t.Errorf("SharesForWeight(%d) = %d, want %d", w, got, shares)
		}
	}
	for n, ok := range map[int64]bool{0: false, 1: true, 100: true, 10000: true, 10001: false, -1: false} {
		if err := CheckWeight(n); (err == nil) != ok {
			t.Errorf("CheckWeight(%d) = %v", n, err)
		}
	}
	for n, ok := range map[int64]bool{0: false, 1: true, 4194304: true, 4194305: false, -3: false} {
		if err := CheckTasksMax(n); (err == nil) != ok {
			t.Errorf("CheckTasksMax(%d) = %v", n, err)
		}
	}
}

func TestParseFiles(t *testing.T) {
	got := parseKeyed([]byte("low 0\nhigh 12\noom_kill 3\nbroken\nsome x\n\n"))
	want := map[string]int64{"low": 0, "high": 12, "oom_kill": 3}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseKeyed = %v", got)
	}
	for in, want := range map[string]int64{"max\n": unlimited, "123\n": 123, "9223372036854771712\n": unlimited, "-1": -1, "0": 0} {
		if got, err := parseValue([]byte(in)); err != nil || got != want {
			t.Errorf("parseValue(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseValue([]byte("12k")); err == nil {
		t.Error("parseValue(12k) succeeded")
	}
	if got, err := parsePIDs([]byte("1\n22\n333\n")); err != nil || !reflect.DeepEqual(got, []int{1, 22, 333}) {
		t.Errorf("parsePIDs = %v, %v", got, err)
	}
	if got, err := parsePIDs(nil); err != nil || got != nil {
		t.Errorf("parsePIDs(empty) = %v, %v", got, err)
	}
	if _, err := parsePIDs([]byte("1\nx\n")); err == nil {
		t.Error("parsePIDs took a non-pid")
	}
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/t\011ab\134`: "/t\tab\\", `/short\04`: `/short\04`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseProcCgroup(t *testing.T) {
	got := parseProcCgroup([]byte(`9:name=systemd:/
4:memory:/process_api/7bfe
2:cpu,cpuacct:/x/
1:pids:/gone (deleted)
0::/system.slice/pyhost.service
`))
	want := map[string]string{"name=systemd": "/", "memory": "/process_api/7bfe", "cpu,cpuacct": "/x", "": "/system.slice/pyhost.service"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestUnder(t *testing.T) {
	for _, tc := range []struct {
		root, point, cg, want string
		ok                    bool
	}{
		{"/", "/sys/fs/cgroup", "/", "/sys/fs/cgroup", true},
		{"/", "/sys/fs/cgroup", "/a/b", "/sys/fs/cgroup/a/b", true},
		{"/docker/abc", "/sys/fs/cgroup", "/docker/abc", "/sys/fs/cgroup", true},
		{"/docker/abc", "/sys/fs/cgroup", "/docker/abc/sub", "/sys/fs/cgroup/sub", true},
		{"/docker/abc", "/sys/fs/cgroup", "/docker/abcd", "", false},
		{"/docker/abc", "/sys/fs/cgroup", "/other", "", false},
	} {
		got, ok := under(mountEntry{root: tc.root, point: tc.point}, tc.cg)
		if got != tc.want || ok != tc.ok {
			t.Errorf("under(%s at %s, %s) = %q, %v", tc.root, tc.point, tc.cg, got, ok)
		}
	}
}

// detectFixture writes a /proc/self/cgroup and a mountinfo whose mount
// points are below a temporary root, makes the cgroup.controllers files
// given, and runs detect.
func detectFixture(t *testing.T, cgroup, mountinfo string, controllers map[string]string) (Host, string) {
	t.Helper()
	root := t.TempDir()
	mountinfo = strings.ReplaceAll(mountinfo, " /sys/", " "+root+"/sys/")
	for dir, c := range controllers {
		p := filepath.Join(root, dir, "cgroup.controllers")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cf, mf := filepath.Join(root, "cgroup"), filepath.Join(root, "mountinfo")
	if err := os.WriteFile(cf, []byte(cgroup), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mf, []byte(mountinfo), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := detect(realKernel, cf, mf)
	if err != nil {
		t.Fatal(err)
	}
	return h, root
}

// This project's machines, as /proc shows them.
const (
	hybridCgroup = `9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/7bfe
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
`
	hybridMountinfo = `22 1 0:20 / /sys rw,nosuid - sysfs sysfs rw
30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
33 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
35 30 0:32 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
36 30 0:33 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
37 30 0:34 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
)

func TestDetectHybrid(t *testing.T) {
	h, root := detectFixture(t, hybridCgroup, hybridMountinfo, map[string]string{"sys/fs/cgroup/unified": "hugetlb"})
	cg := root + "/sys/fs/cgroup"
	if h.Mode != ModeHybrid {
		t.Fatalf("mode %v", h.Mode)
	}
	want := &V2Hierarchy{Mount: cg + "/unified", Self: "/", Dir: cg + "/unified", Controllers: []string{"hugetlb"}, root: "/"}
	if !reflect.DeepEqual(h.V2, want) {
		t.Errorf("V2 = %+v", h.V2)
	}
	wantV1 := []V1Hierarchy{
		{Controllers: []string{"cpu"}, Mount: cg + "/cpu", Self: "/", Dir: cg + "/cpu", root: "/"},
		{Controllers: []string{"memory"}, Mount: cg + "/memory", Self: "/process_api/7bfe", Dir: cg + "/memory/process_api/7bfe", root: "/"},
		{Controllers: []string{"pids"}, Mount: cg + "/pids", Self: "/", Dir: cg + "/pids", root: "/"},
	}
	if !reflect.DeepEqual(h.V1, wantV1) {
		t.Errorf("V1 = %+v\nwant %+v", h.V1, wantV1)
	}
	s := strings.ReplaceAll(h.String(), root, "")
	if want := "cgroups: hybrid; v2 at /sys/fs/cgroup/unified for membership and kill (controllers hugetlb), v1 for cpu memory pids; own cgroup /; not enforceable: io_weight"; !strings.HasPrefix(s, want) {
		t.Errorf("String:\n%s\nwant prefix\n%s", s, want)
	}
}

func TestDetectV2(t *testing.T) {
	h, root := detectFixture(t, "0::/system.slice/pyhost.service\n",
		"30 22 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
		map[string]string{"sys/fs/cgroup/system.slice/pyhost.service": "cpu io memory pids"})
	if h.Mode != ModeV2 || len(h.V1) != 0 {
		t.Fatalf("got %+v", h)
	}
	if h.V2.Dir != root+"/sys/fs/cgroup/system.slice/pyhost.service" || !reflect.DeepEqual(h.V2.Controllers, []string{"cpu", "io", "memory", "pids"}) {
		t.Errorf("V2 = %+v", h.V2)
	}
	s := strings.ReplaceAll(h.String(), root, "")
	want := "cgroups: v2 at /sys/fs/cgroup, controllers cpu io memory pids; own cgroup /system.slice/pyhost.service"
	if !strings.HasPrefix(s, want) || strings.Contains(s, "not enforceable") {
		t.Errorf("String:\n%s\nwant prefix\n%s", s, want)
	}
}

// v1 only, cpu and cpuacct co-mounted, the daemon in a bind-mounted
// subtree (a container's view).
func TestDetectV1(t *testing.T) {
	h, root := detectFixture(t, "5:freezer:/\n4:pids:/\n3:memory:/docker/abc/svc\n2:cpu,cpuacct:/\n1:name=systemd:/\n",
		`31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 30 0:31 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
38 30 0:35 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
39 30 0:36 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
`, nil)
	if h.Mode != ModeV1 || h.V2 != nil {
		t.Fatalf("got %+v", h)
	}
	var got []string
	for _, v := range h.V1 {
		got = append(got, strings.Join(v.Controllers, ",")+"@"+strings.TrimPrefix(v.Dir, root))
	}
	want := []string{"cpu,cpuacct@/sys/fs/cgroup/cpu,cpuacct", "freezer@/sys/fs/cgroup/freezer", "memory@/sys/fs/cgroup/memory/svc", "pids@/sys/fs/cgroup/pids"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("V1 = %v, want %v", got, want)
	}
	if s := h.String(); !strings.Contains(s, "v1 only") || !strings.Contains(s, "no cgroup.kill") || !strings.Contains(s, "io_weight") {
		t.Errorf("String: %s", s)
	}
}

func TestHostCheck(t *testing.T) {
	h, _ := detectFixture(t, hybridCgroup, hybridMountinfo, map[string]string{"sys/fs/cgroup/unified": "hugetlb"})
	h.Writable = true
	if err := h.Check(Limits{MemoryMax: 1 << 30, CPUWeight: 10, TasksMax: 5}); err != nil {
		t.Errorf("hybrid: %v", err)
	}
	err := h.Check(Limits{MemoryMax: 1 << 30, IOWeight: 10})
	var ue *UnsupportedError
	if !errors.As(err, &ue) || ue.Key != "io_weight" || !strings.Contains(err.Error(), "v1 blkio is not used") || strings.Contains(err.Error(), "memory_max") {
		t.Errorf("hybrid io_weight: %v", err)
	}
	if err := (Host{}).Check(Limits{CPUMax: CPUMax{Quota: time.Millisecond}}); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "cpu_max is not enforced: no cpu controller") {
		t.Errorf("no cgroups: %v", err)
	}
	h.Writable = false
	if err := h.Check(Limits{TasksMax: 9}); err == nil || !strings.Contains(err.Error(), "tasks_max is not enforced: the daemon's own cgroup is not writable") {
		t.Errorf("not writable: %v", err)
	}
	if err := h.Check(Limits{}); err != nil {
		t.Errorf("no limits asked, not writable: %v", err)
	}
}

func TestDetectNone(t *testing.T) {
	h, _ := detectFixture(t, "0::/\n", "22 1 0:20 / /sys rw - sysfs sysfs rw\n", nil)
	if h.Mode != ModeNone || h.V2 != nil || h.V1 != nil {
		t.Errorf("got %+v", h)
	}
	if s := h.String(); !strings.Contains(s, "process groups") || !strings.Contains(s, "polling") {
		t.Errorf("String: %s", s)
	}
	h, err := detect(realKernel, filepath.Join(t.TempDir(), "absent"), "/proc/self/mountinfo")
	if err != nil || h.Mode != ModeNone {
		t.Errorf("no /proc/self/cgroup: %+v, %v", h, err)
	}
}

func FuzzDetectParsers(f *testing.F) {
	f.Add([]byte(hybridCgroup), []byte(hybridMountinfo))
	f.Fuzz(func(t *testing.T, cg, mi []byte) {
		parseProcCgroup(cg)
		for _, m := range parseMountinfo(mi) {
			under(m, "/a/b")
		}
	})
}
