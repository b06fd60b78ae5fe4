package master

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/proxymsg"
)

// The figures of an app are its status's: workers by state, restarts by
// reason, RSS summed; CPU the cgroup's when it has one (a counter), else
// the live workers'.
func TestAppFigures(t *testing.T) {
	as := control.AppStatus{Name: "blog", User: "alice", State: control.AppRunning,
		Workers: []control.WorkerStatus{
			{State: control.WorkerReady, RSSBytes: 100, CPUSeconds: 1},
			{State: control.WorkerReady, RSSBytes: 50, CPUSeconds: 2},
			{State: control.WorkerDraining, RSSBytes: 10, CPUSeconds: 4},
		},
		RestartsByReason: map[string]int{control.RestartCrash: 2},
		OOMKills:         1, MemoryCurrentBytes: 300, MemoryMaxBytes: 1000, Tasks: 9,
	}
	f := appFigures(as)
	if f.User != "alice" || f.App != "blog" || f.State != "running" || f.Workers["ready"] != 2 || f.Workers["draining"] != 1 ||
		f.Restarts["crash"] != 2 || f.RSSBytes != 160 || f.CPUSeconds != 7 || f.OOMKills != 1 || f.MemoryCurrentBytes != 300 || f.MemoryMaxBytes != 1000 || f.Tasks != 9 {
		t.Errorf("figures without a cgroup: %+v", f)
	}
	as.Cgroup, as.CgroupCPUSeconds = "apps/alice/blog", 42
	if f := appFigures(as); f.CPUSeconds != 42 {
		t.Errorf("with a cgroup, CPU %v, want the group's 42", f.CPUSeconds)
	}
}

// metricsMaster is a master whose proxy is the other end of a channel.
func metricsMaster(t *testing.T) (*Master, *proxymsg.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	m := &Master{cfg: Config{Listeners: Listeners{MetricsListen: "127.0.0.1:9181"}}, log: hclog.NewNullLogger()}
	m.proxyCh = proxymsg.NewConn(a)
	return m, proxymsg.NewConn(b)
}

// pyctl metrics as root: the master asks the proxy for everything and
// passes its answer on; the answers of questions nobody waits for any
// more are dropped.
func TestMetricsAsksTheProxy(t *testing.T) {
	m, proxy := metricsMaster(t)
	go func() {
		for {
			msg, err := proxy.Receive()
			if err != nil {
				return
			}
			q := msg.MetricsQuery
			if q == nil {
				continue
			}
			m.onMetricsAnswer(proxymsg.MetricsAnswer{ID: q.ID + 1000, Text: "stale"}) // nobody asked
			text := "all"
			if !q.All {
				text = "some"
			}
			m.onMetricsAnswer(proxymsg.MetricsAnswer{ID: q.ID, Text: text})
		}
	}()
	for range 2 {
		text, err := m.Metrics(context.Background(), control.Caller{UID: 0}, "")
		if err != nil || text != "all" {
			t.Fatalf("root's metrics: %q %v", text, err)
		}
	}
	m.metrics.mu.Lock()
	waiting := len(m.metrics.waiting)
	m.metrics.mu.Unlock()
	if waiting != 0 {
		t.Errorf("%d questions still waiting", waiting)
	}
}

// A proxy that does not answer makes pyctl metrics fail after
// metricsTimeout, not hang; metrics off and no proxy are errors at once.
func TestMetricsNoAnswer(t *testing.T) {
	defer func(d time.Duration) { metricsTimeout = d }(metricsTimeout)
	metricsTimeout = 50 * time.Millisecond
	m, proxy := metricsMaster(t)
	go func() {
		for {
			if _, err := proxy.Receive(); err != nil {
				return
			}
		}
	}()
	_, err := m.Metrics(context.Background(), control.Caller{UID: 0}, "")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("no answer: %v", err)
	}
	m.proxyCh = nil
	if _, err := m.Metrics(context.Background(), control.Caller{UID: 0}, ""); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("no proxy: %v", err)
	}
	m.cfg.MetricsListen = ""
	if _, err := m.Metrics(context.Background(), control.Caller{UID: 0}, ""); err == nil || !strings.Contains(err.Error(), "metrics_listen") {
		t.Errorf("metrics off: %v", err)
	}
}

// metrics_listen is bound with the other listeners and marked as the
// metrics one in what a proxy starts with; a listen address moved to
// metrics_listen is the same socket, of the other kind.
func TestMetricsListener(t *testing.T) {
	m := &Master{cfg: Config{Listeners: Listeners{MetricsListen: "localhost:0"}}, log: hclog.NewNullLogger()}
	defer m.lns.closeAll()
	added, _, err := m.setListen([]string{"127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(added) != 2 || added[1] != "http://localhost:0/metrics" {
		t.Errorf("added %q", added)
	}
	var gotAddrs []string
	var gotMetrics []bool
	detach, err := m.lns.startProxy(nil, func(files []*os.File, addrs []string, _, metrics []bool) error {
		gotAddrs, gotMetrics = addrs, metrics
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	detach()
	if len(gotAddrs) != 2 || len(gotMetrics) != 2 || gotMetrics[0] || !gotMetrics[1] {
		t.Errorf("a proxy starts with %q, metrics %v", gotAddrs, gotMetrics)
	}
}

// Without a cgroup an app's CPU counter is its live workers' sum, which
// drops when one is replaced; the exported counter carries the drop and
// never goes down (rate() took a drop for a reset and counted the other
// workers' whole CPU time again).
func TestSteadyCPU(t *testing.T) {
	var c cpuCarry
	// Two workers: 3+4, 5+6; the first (5 s) replaced: 0.5+6.5; then
	// 1+7.
	var got []float64
	for _, live := range []float64{7, 11, 7, 8} {
		got = append(got, steadyCPU(&c, live))
	}
	want := []float64{7, 11, 11, 12}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("counter %v, want %v", got, want)
		}
	}
}
