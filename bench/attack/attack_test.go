package main

import (
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// serve runs srv on a loopback port until the test ends.
func serve(t *testing.T, srv *http.Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

var chunk = make([]byte, 64<<10)

func testHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, "too slow", http.StatusRequestTimeout)
				return
			}
			w.Write([]byte(strconv.FormatInt(n, 10)))
		case "/stream":
			for i := 0; i < 1024 && r.Context().Err() == nil; i++ {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		default:
			w.Write([]byte("Hello!"))
		}
	})
}

func testConfig(addr, scenario string, conns int) attackConfig {
	return attackConfig{
		Target: addr, Stack: "test", Scenario: scenario, Conns: conns, Sources: 3,
		Baseline: 100 * time.Millisecond, Hold: time.Second, Trickle: 20 * time.Millisecond,
		ProbeInterval: 20 * time.Millisecond, ProbeTimeout: 5 * time.Second, ProbePath: "/hello",
		AfterProbes: 100 * time.Millisecond, DownloadPath: "/stream", BodySize: 8192, UploadSize: 1 << 20,
		RcvBuf: 4096, DialConcurrency: 4, DialTimeout: 5 * time.Second, Sample: 50 * time.Millisecond,
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *horde) cutCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, hc := range h.conns {
		hc.mu.Lock()
		if hc.cutAt > 0 {
			n++
		}
		hc.mu.Unlock()
	}
	return n
}

func TestHordeSlowlorisHeldByAServerWithoutTimeouts(t *testing.T) {
	addr := serve(t, &http.Server{Handler: testHandler()})
	h := newHorde(testConfig(addr, "slowloris", 6), time.Now().Add(time.Minute))
	h.open()
	s := h.finish()
	if s.Opened != 6 || s.Cut != 0 || s.StillOpen != 6 || len(s.DialErrors) != 0 {
		t.Errorf("summary %+v, want 6 opened, none cut", s)
	}
}

func TestHordeSlowlorisCutByHeaderTimeout(t *testing.T) {
	addr := serve(t, &http.Server{Handler: testHandler(), ReadHeaderTimeout: 100 * time.Millisecond})
	h := newHorde(testConfig(addr, "slowloris", 6), time.Now().Add(time.Minute))
	h.open()
	eventually(t, 10*time.Second, "the server cuts all 6", func() bool { return h.cutCount() == 6 })
	s := h.finish()
	if s.Opened != 6 || s.Cut != 6 || s.StillOpen != 0 || s.CutP50S <= 0 || s.CutMaxS < s.CutP50S {
		t.Errorf("summary %+v, want 6 opened and cut", s)
	}
}

func TestHordeSlowBodyAnswered(t *testing.T) {
	addr := serve(t, &http.Server{Handler: testHandler(), ReadTimeout: 100 * time.Millisecond})
	h := newHorde(testConfig(addr, "slowbody", 4), time.Now().Add(time.Minute))
	h.open()
	eventually(t, 10*time.Second, "the server cuts all 4", func() bool { return h.cutCount() == 4 })
	s := h.finish()
	if s.Cut != 4 || s.Statuses["408"] != 4 {
		t.Errorf("summary %+v, want 4 cut after a 408", s)
	}
}

func TestHordeNoread(t *testing.T) {
	held := serve(t, &http.Server{Handler: testHandler()})
	h := newHorde(testConfig(held, "noread", 3), time.Now().Add(time.Minute))
	h.open()
	if s := h.finish(); s.Opened != 3 || s.StillOpen != 3 {
		t.Errorf("a server that waits: %+v, want 3 still open", s)
	}

	// A server whose writes time out gives up; its FIN waits behind the
	// data the client never read, which finish reads.
	var gaveUp atomic.Int32
	cutting := serve(t, &http.Server{WriteTimeout: 100 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for {
				if _, err := w.Write(chunk); err != nil {
					gaveUp.Add(1)
					return
				}
			}
		})})
	h = newHorde(testConfig(cutting, "noread", 3), time.Now().Add(time.Minute))
	h.open()
	eventually(t, 10*time.Second, "the server gives up on all 3", func() bool { return gaveUp.Load() == 3 })
	if s := h.finish(); s.Cut != 3 || s.StillOpen != 0 {
		t.Errorf("a server with a write timeout: %+v, want 3 cut", s)
	}
}

func TestHordeDialErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	h := newHorde(testConfig(addr, "slowloris", 3), time.Now().Add(time.Minute))
	h.open()
	if s := h.finish(); s.Opened != 0 || s.DialErrors["refused"] != 3 {
		t.Errorf("a closed port: %+v, want 3 refused", s)
	}
}

// A whole run, scaled down: the result has every part the report needs.
func TestAttackRun(t *testing.T) {
	addr := serve(t, &http.Server{Handler: testHandler(), ReadHeaderTimeout: 200 * time.Millisecond})
	c := testConfig(addr, "slowloris", 20)
	g, err := parseGroup("self=" + strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	c.Groups = []procGroup{g}
	res := attack(c, io.Discard)
	if res.Hostile.Opened != 20 || res.Hostile.Wanted != 20 {
		t.Errorf("hostile %+v, want 20 opened", res.Hostile)
	}
	for _, kind := range []string{"keepalive", "fresh"} {
		for _, ph := range []string{"baseline", "attack", "after"} {
			p, ok := res.Normal[kind+" "+ph]
			if !ok || p.Requests == 0 || p.Failed != 0 || p.Latency.N != p.Requests {
				t.Errorf("normal client %s %s: %+v, want requests, all answered", kind, ph, p)
			}
		}
	}
	m := res.Memory["self"]
	if m.BeforeKB <= 0 || m.PeakKB < m.BeforeKB || m.PeakKB < m.AfterKB || m.FDsPeak < m.FDsBefore {
		t.Errorf("memory %+v", m)
	}
	if len(res.Timeline) == 0 || !(res.AttackAtS > 0 && res.HoldEndS > res.AttackAtS && res.SettledAtS >= res.HoldEndS) {
		t.Errorf("times: attack %.2f, hold end %.2f, settled %.2f, %d timeline points",
			res.AttackAtS, res.HoldEndS, res.SettledAtS, len(res.Timeline))
	}
	out := renderReport(nil, []attackResult{res})
	if !strings.Contains(out, "| slowloris | test | 20 / 20 |") {
		t.Errorf("report has no row for the run:\n%s", out)
	}
}

func TestAttackConfigCheck(t *testing.T) {
	ok := testConfig("127.0.0.1:8080", "slowloris", 10)
	if err := ok.check(); err != nil {
		t.Fatalf("a good config refused: %v", err)
	}
	for name, mod := range map[string]func(*attackConfig){
		"not loopback":   func(c *attackConfig) { c.Target = "192.0.2.1:80" },
		"scenario":       func(c *attackConfig) { c.Scenario = "flood" },
		"too many conns": func(c *attackConfig) { c.Conns = 20001 },
		"no conns":       func(c *attackConfig) { c.Conns = 0 },
		"sources":        func(c *attackConfig) { c.Sources = 251 },
		"hold":           func(c *attackConfig) { c.Hold = time.Hour },
		"settle":         func(c *attackConfig) { c.Settle = time.Hour },
		"path":           func(c *attackConfig) { c.ProbePath = "hello" },
	} {
		c := ok
		mod(&c)
		if err := c.check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestReportGolden(t *testing.T) {
	settings := map[string]string{
		"conns": "2000", "sources": "10", "hold": "30s", "trickle": "5s", "settle": "1m0s",
		"baseline": "3s", "probe_interval": "20ms", "probe_timeout": "5s", "probe_path": "/hello",
		"download_path": "/stream?mib=64", "body_size": "8192", "upload_size": "1048576", "rcvbuf": "4096",
	}
	lat := func(p50, p99, max float64, n int) Latencies {
		return Latencies{N: n, P50ms: p50, P90ms: p99, P99ms: p99, MaxMs: max}
	}
	results := []attackResult{
		{
			Stack: "nginx-uwsgi", Scenario: "slowloris", Settings: settings,
			Hostile: hostileSummary{Wanted: 2000, Opened: 2000, StillOpen: 2000, Statuses: map[string]int{}},
			Normal: map[string]probePhase{
				"keepalive baseline": {Requests: 150, Latency: lat(1, 3, 4, 150)},
				"keepalive attack":   {Requests: 1500, Latency: lat(1.1, 6, 12, 1500)},
				"keepalive after":    {Requests: 100, Latency: lat(1, 2, 3, 100)},
				"fresh baseline":     {Requests: 150, Latency: lat(1, 3, 4, 150)},
				"fresh attack":       {Requests: 1500, Latency: lat(1.2, 7, 15, 1500)},
				"fresh after":        {Requests: 100, Latency: lat(1, 2, 3, 100)},
			},
			Memory: map[string]memSummary{
				"proxy":  {BeforeKB: 24000, PeakKB: 30000, AfterKB: 25000, FDsBefore: 34, FDsPeak: 2040, FDsAfter: 33},
				"python": {BeforeKB: 42000, PeakKB: 42000, AfterKB: 42000},
				"stack":  {BeforeKB: 66000, PeakKB: 72000, AfterKB: 67000},
			},
		},
		{
			Stack: "pyhost", Scenario: "slowloris", Settings: settings,
			Hostile: hostileSummary{Wanted: 2000, Opened: 1900, Cut: 1900, CutP50S: 10.2, CutMaxS: 10.9,
				DialErrors: map[string]int{"timeout": 100}, Statuses: map[string]int{"408": 12}},
			Normal: map[string]probePhase{
				"keepalive baseline": {Requests: 150, Latency: lat(1, 3, 4, 150)},
				"keepalive attack":   {Requests: 1400, Failed: 3, Errors: map[string]int{"timeout": 3}, Latency: lat(1.5, 80, 5000, 1397)},
				"keepalive after":    {Requests: 100, Latency: lat(1, 2, 3, 100)},
				"fresh baseline":     {Requests: 150, Latency: lat(1, 3, 4, 150)},
				"fresh attack":       {Requests: 1400, Latency: lat(1.5, 40, 90, 1400)},
				"fresh after":        {Requests: 100, Latency: lat(1, 2, 3, 100)},
			},
			Memory: map[string]memSummary{
				"proxy":  {BeforeKB: 11000, PeakKB: 90000, AfterKB: 60000, FDsBefore: 15, FDsPeak: 1915, FDsAfter: 14, NewProcs: 1},
				"python": {BeforeKB: 44000, PeakKB: 44000, AfterKB: 44000, NewProcs: 2},
				"stack":  {BeforeKB: 66000, PeakKB: 150000, AfterKB: 110000},
			},
		},
	}
	meta := &benchMeta{Date: "2026-01-02 03:04 UTC", CPUs: 2, CPUModel: "Test CPU", MemGiB: 4, Kernel: "Linux 6",
		OS: "Debian 12", Command: "bench/attack.sh", Versions: map[string]string{"a": "pyhostd x", "b": "nginx y"}}
	got := renderReport(meta, results)
	path := filepath.Join("testdata", "report.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s missing: run go test ./bench/attack -run TestReportGolden -update", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("report differs from %s (rerun with -update and review the diff):\n%s", path, got)
	}
}

// A slow body stops at its announced length: the request is then whole,
// and the server answers it.
func TestHordeSlowBodyEndsAtItsLength(t *testing.T) {
	addr := serve(t, &http.Server{Handler: testHandler()})
	c := testConfig(addr, "slowbody", 2)
	c.BodySize = 5
	c.Trickle = 10 * time.Millisecond
	h := newHorde(c, time.Now().Add(time.Minute))
	h.open()
	eventually(t, 10*time.Second, "both answered", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		n := 0
		for _, hc := range h.conns {
			hc.mu.Lock()
			if hc.status == "200" {
				n++
			}
			hc.mu.Unlock()
		}
		return n == 2
	})
	if s := h.finish(); s.Statuses["200"] != 2 || s.Cut != 0 {
		t.Errorf("summary %+v, want 2 answered 200, none cut", s)
	}
}
