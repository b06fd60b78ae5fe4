package main

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 200; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    int
		want time.Duration
	}{
		{50, 100 * time.Millisecond},
		{90, 180 * time.Millisecond},
		{99, 198 * time.Millisecond},
		{100, 200 * time.Millisecond},
		{0, time.Millisecond},
	} {
		if got := percentile(ds, tc.p); got != tc.want {
			t.Errorf("percentile(1..200 ms, %d) = %s, want %s", tc.p, got, tc.want)
		}
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("percentile of one value = %s, want it", got)
	}
}

func TestSummarize(t *testing.T) {
	if got := summarize(nil); got != (Latencies{}) {
		t.Errorf("summarize(nil) = %+v, want the zero value", got)
	}
	got := summarize([]time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond})
	want := Latencies{N: 3, P50ms: 2, P90ms: 3, P99ms: 3, MaxMs: 3}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
}

func TestLoopbackHostPort(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"127.0.0.1:8080", true},
		{"127.1.2.3:80", true},
		{"[::1]:80", true},
		{"localhost:80", false}, // a name could resolve anywhere
		{"10.0.0.1:80", false},
		{"0.0.0.0:80", false},
		{"127.0.0.1", false},
		{"127.0.0.1:0", false},
	} {
		if err := loopbackHostPort(tc.in); (err == nil) != tc.ok {
			t.Errorf("loopbackHostPort(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestStatusCode(t *testing.T) {
	for in, want := range map[string]string{
		"HTTP/1.1 408 Request Timeout\r\n": "408",
		"HTTP/1.0 400":                     "400",
		"HTTP/1.1 40":                      "",
		"HTTP/1.1 abc":                     "",
		"hello":                            "",
		"":                                 "",
	} {
		if got := statusCode([]byte(in)); got != want {
			t.Errorf("statusCode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCountList(t *testing.T) {
	got := countList(map[string]int{"timeout": 2, "reset": 5, "closed": 2})
	if want := "reset 5, closed 2, timeout 2"; got != want {
		t.Errorf("countList = %q, want %q", got, want)
	}
}

func TestParseGroup(t *testing.T) {
	g, err := parseGroup("proxy=12,34~ __proxy( |$)")
	if err != nil {
		t.Fatal(err)
	}
	if g.Name != "proxy" || !slices.Equal(g.Roots, []int{12, 34}) || g.Match == nil ||
		!g.Match.MatchString("pyhostd __proxy --listeners 1") || g.Match.MatchString("pyhostd __proxyish") {
		t.Errorf("parseGroup = %+v", g)
	}
	g, err = parseGroup("stack=99")
	if err != nil || g.Match != nil || !slices.Equal(g.Roots, []int{99}) {
		t.Errorf("parseGroup(stack=99) = %+v, %v", g, err)
	}
	for _, bad := range []string{"", "=12", "x", "x=", "x=1", "x=abc", "x=12~(", "x=12,,13"} {
		if _, err := parseGroup(bad); err == nil {
			t.Errorf("parseGroup(%q) accepted", bad)
		}
	}
}

// The groups follow process trees in /proc: a child started by this test
// is in the tree of the test's pid, and a command-line regex picks it out.
func TestProcGroupMembers(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	tbl := readProcTable()
	me, child := os.Getpid(), cmd.Process.Pid
	all := tbl.members(procGroup{Name: "all", Roots: []int{me}})
	if !slices.Contains(all, me) || !slices.Contains(all, child) {
		t.Errorf("tree of %d = %v, want it and its child %d", me, all, child)
	}
	g, err := parseGroup("sleeper=" + strconv.Itoa(me) + "~^sleep 60$")
	if err != nil {
		t.Fatal(err)
	}
	if got := tbl.members(g); !slices.Equal(got, []int{child}) {
		t.Errorf("members matching 'sleep 60' = %v, want [%d]", got, child)
	}
	u := usageOf([]int{me})
	if u.RSSKB <= 0 || u.FDs <= 0 || u.Procs != 1 {
		t.Errorf("usageOf(self) = %+v, want some memory and descriptors", u)
	}
	if got := tbl.members(procGroup{Roots: []int{1 << 30}}); len(got) != 0 {
		t.Errorf("members of a pid that does not exist = %v", got)
	}
}
