package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pyhost/pyhost/metrics"
	"github.com/pyhost/pyhost/proxymsg"
)

// metricsProxy routes blog.test to alice/blog (an echo worker, and
// /static/ from a directory holding a 16-byte site.css) and shop.test to
// bob/shop, which is stopped (503), with metrics on.
func metricsProxy(t *testing.T) *Proxy {
	t.Helper()
	w := newEchoWorker(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "site.css"), []byte("body{color:red}\n"), 0o644)
	p := New(hclog.NewNullLogger(), nil)
	p.metrics = newProxyMetrics(p, "1.2.3", nil)
	p.SetLimits(Limits{SpoolDir: t.TempDir()})
	p.Update(proxymsg.Table{Serial: 1, Apps: []proxymsg.App{
		{Key: "alice/blog", Domains: []string{"blog.test"}, Prefix: "/", State: proxymsg.AppRunning,
			Workers: []proxymsg.Worker{{ID: "w1", PID: 42, Socket: w.path, Threads: 4}},
			Static:  []proxymsg.StaticMount{{URL: "/static/", Dir: dir, Owner: uint32(os.Geteuid())}}},
		{Key: "bob/shop", Domains: []string{"shop.test"}, Prefix: "/", State: proxymsg.AppStopped},
	}})
	return p
}

func send(t *testing.T, p *Proxy, method, host, target, body string) int {
	t.Helper()
	var r *http.Request
	if body != "" {
		r = httptest.NewRequest(method, target, strings.NewReader(body))
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	r.Host = host
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	return w.Code
}

// series finds the metric of family name whose labels include want.
func series(t *testing.T, fams []*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.Metric {
			have := map[string]string{}
			for _, l := range m.Label {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

func counter(t *testing.T, fams []*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	m := series(t, fams, name, want)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -2
}

// Every request routed to an app is counted once, by method and status
// class, its duration observed once; bodies in and out, static bytes and
// the queue wait of those that reached the pool are counted.
func TestMetricsCountRequests(t *testing.T) {
	p := metricsProxy(t)
	for range 3 {
		if c := send(t, p, "GET", "blog.test", "/", ""); c != 200 {
			t.Fatalf("GET /: %d", c)
		}
	}
	for range 2 {
		if c := send(t, p, "POST", "blog.test", "/form", "hello"); c != 200 {
			t.Fatalf("POST: %d", c)
		}
	}
	if c := send(t, p, "BREW", "blog.test", "/pot", ""); c != 200 {
		t.Fatalf("BREW: %d", c)
	}
	if c := send(t, p, "GET", "blog.test", "/static/site.css", ""); c != 200 {
		t.Fatalf("static: %d", c)
	}
	if c := send(t, p, "GET", "blog.test", "/static/none.css", ""); c != 404 {
		t.Fatalf("static 404: %d", c)
	}
	for range 2 {
		if c := send(t, p, "DELETE", "shop.test", "/", ""); c != 503 {
			t.Fatalf("stopped app: %d", c)
		}
	}
	send(t, p, "GET", "nobody.test", "/", "") // no app: not counted

	fams, err := p.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	blog := []string{"user", "alice", "app", "blog"}
	shop := []string{"user", "bob", "app", "shop"}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{metrics.HTTPRequests, append(blog, "method", "GET", "code", "2xx"), 4},
		{metrics.HTTPRequests, append(blog, "method", "POST", "code", "2xx"), 2},
		{metrics.HTTPRequests, append(blog, "method", "other", "code", "2xx"), 1},
		{metrics.HTTPRequests, append(blog, "method", "GET", "code", "4xx"), 1},
		{metrics.HTTPRequests, append(shop, "method", "DELETE", "code", "5xx"), 2},
		{metrics.HTTPRequests, append(blog, "method", "HEAD", "code", "2xx"), -1}, // nothing happened: no series
		{metrics.HTTPRequestDuration, blog, 8},
		{metrics.HTTPRequestDuration, shop, 2},
		{metrics.QueueWait, blog, 6}, // the static files never wait for a worker
		{metrics.RequestBytes, blog, 10},
		{metrics.StaticBytes, blog, 16 + float64(len(notFound))},
		{metrics.ThreadsTotal, blog, 4},
		{metrics.ThreadsBusy, blog, 0},
		{metrics.QueueLength, blog, 0},
		{metrics.ThreadsTotal, shop, 0},
		{metrics.BuildInfo, []string{"version", "1.2.3"}, 1},
	} {
		if got := counter(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := counter(t, fams, metrics.ResponseBytes, blog...); got <= counter(t, fams, metrics.StaticBytes, blog...) {
		t.Errorf("response bytes %v: not more than the static ones", got)
	}
}

// The master's figures come out as they were pushed, every state and
// reason present; a tenant's text holds only their apps' series and the
// public ones.
func TestMetricsFiguresAndTenantText(t *testing.T) {
	p := metricsProxy(t)
	send(t, p, "GET", "blog.test", "/", "")
	send(t, p, "GET", "shop.test", "/", "")
	p.metrics.figures.Set(proxymsg.Figures{StartTime: time.Unix(1700000000, 0), Reloads: 3, ReloadFailures: 1, Apps: []proxymsg.AppFigures{
		{User: "alice", App: "blog", State: "running", Workers: map[string]int{"ready": 2, "starting": 1},
			Restarts: map[string]int{"crash": 1, "memory": 2}, RSSBytes: 1 << 20, CPUSeconds: 1.5, OOMKills: 1},
		{User: "bob", App: "shop", State: "failing"},
	}})
	fams, err := p.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	blog := []string{"user", "alice", "app", "blog"}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{metrics.Workers, append(blog, "state", "ready"), 2},
		{metrics.Workers, append(blog, "state", "draining"), 0},
		{metrics.WorkerRestarts, append(blog, "reason", "crash"), 1},
		{metrics.WorkerRestarts, append(blog, "reason", "memory"), 2},
		{metrics.WorkerRestarts, append(blog, "reason", "oom"), 0},
		{metrics.AppRSS, blog, 1 << 20},
		{metrics.AppCPU, blog, 1.5},
		{metrics.AppOOMKills, blog, 1},
		{metrics.AppState, append(blog, "state", "running"), 1},
		{metrics.AppState, []string{"user", "bob", "state", "failing"}, 1},
		{metrics.ConfigReloads, []string{"result", "success"}, 3},
		{metrics.ConfigReloads, []string{"result", "failure"}, 1},
		{metrics.StartTime, nil, 1700000000},
	} {
		if got := counter(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	a := p.metrics.answer(proxymsg.MetricsQuery{ID: 7, Apps: []string{"bob/shop"}})
	if a.ID != 7 || a.Error != "" {
		t.Fatalf("answer: %+v", a)
	}
	for _, want := range []string{`pyhost_http_requests_total{app="shop",code="5xx",method="GET",user="bob"} 1`, "pyhost_build_info{", `pyhost_workers{app="shop",state="ready",user="bob"} 0`} {
		if !strings.Contains(a.Text, want) {
			t.Errorf("bob's text lacks %q:\n%s", want, a.Text)
		}
	}
	for _, not := range []string{"alice", "pyhost_config_reloads_total", "go_goroutines", "process_"} {
		if strings.Contains(a.Text, not) {
			t.Errorf("bob's text shows %q:\n%s", not, a.Text)
		}
	}
	all := p.metrics.answer(proxymsg.MetricsQuery{ID: 8, All: true})
	for _, want := range []string{`user="alice"`, `user="bob"`, "pyhost_config_reloads_total", "go_goroutines"} {
		if !strings.Contains(all.Text, want) {
			t.Errorf("root's text lacks %q", want)
		}
	}
	if off := (*proxyMetrics)(nil).answer(proxymsg.MetricsQuery{ID: 9}); off.ID != 9 || !strings.Contains(off.Error, "metrics_listen") {
		t.Errorf("metrics off: %+v", off)
	}
}

// A removed app's series go with it.
func TestMetricsAppRemoved(t *testing.T) {
	p := metricsProxy(t)
	send(t, p, "GET", "shop.test", "/", "")
	p.Update(proxymsg.Table{Serial: 2})
	fams, err := p.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{metrics.HTTPRequests, metrics.HTTPRequestDuration, metrics.ThreadsTotal} {
		if got := counter(t, fams, name, "user", "bob"); got != -1 {
			t.Errorf("%s of a removed app: %v", name, got)
		}
	}
}

// The instruments of one request: what the request path adds when
// metrics are on (go test -run '^$' -bench Metrics -benchmem ./proxy/),
// serially, as the proxy's one P (DefaultProxyProcs on 2 CPUs) runs them.
func BenchmarkMetricsRequest(b *testing.B) {
	p := New(hclog.NewNullLogger(), nil)
	p.metrics = newProxyMetrics(p, "", nil)
	am := p.metrics.forApp("alice/blog")
	rec := &recorder{status: 200, bytes: 1234}
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		am.queueWait.Observe(0)
		am.done("GET", rec, start)
	}
}

// ServeHTTP of a request the app answers at once (stopped: 503, no
// worker), with metrics off and on: the difference is the whole cost,
// the recorder included.
func BenchmarkMetricsServeHTTP(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			p := New(hclog.NewNullLogger(), nil)
			if on {
				p.metrics = newProxyMetrics(p, "", nil)
			}
			p.Update(proxymsg.Table{Serial: 1, Apps: []proxymsg.App{{Key: "bob/shop", Prefix: "/", State: proxymsg.AppStopped}}})
			r := httptest.NewRequest("GET", "/", nil)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w := nullWriter{h: http.Header{}}
				p.ServeHTTP(&w, r)
			}
		})
	}
}

type nullWriter struct{ h http.Header }

func (w *nullWriter) Header() http.Header         { return w.h }
func (w *nullWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nullWriter) WriteHeader(int)             {}

// A listener marked as the metrics one serves the metrics handler, not
// the apps, from the start and after a listener set; a socket that
// changes kind is served anew as its new kind.
func TestMetricsListener(t *testing.T) {
	apps := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") })
	metricsH := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "metrics") })
	s := newTestSet(t, apps)
	s.newMetricsServer = func() *http.Server { return &http.Server{Handler: metricsH} }
	addrA, dupA, lnA := testListener(t)
	addrM, dupM, lnM := testListener(t)
	s.add(lnA, addrA, false)
	s.addKind(lnM, addrM, lnKind{metrics: true})
	body := func(addr string) string {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatalf("GET %s: %v", addr, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if a, m := body(addrA), body(addrM); a != "app" || m != "metrics" {
		t.Fatalf("at start: apps listener %q, metrics listener %q", a, m)
	}
	// The same sockets, the kinds swapped.
	if err := s.apply(proxymsg.ListenerSet{Serial: 1, Addrs: []string{addrA, addrM}, Metrics: []bool{true, false}, Files: []*os.File{dupA(), dupM()}}); err != nil {
		t.Fatal(err)
	}
	lnA.Close()
	lnM.Close()
	if a, m := body(addrA), body(addrM); a != "metrics" || m != "app" {
		t.Errorf("swapped: %s %q, %s %q", addrA, a, addrM, m)
	}
}

// gateCollector blocks each Collect until release is closed, counting
// the Collects under way.
type gateCollector struct {
	inside, most atomic.Int32
	release      chan struct{}
}

func (g *gateCollector) Describe(chan<- *prometheus.Desc) {}

func (g *gateCollector) Collect(chan<- prometheus.Metric) {
	n := g.inside.Add(1)
	for {
		m := g.most.Load()
		if n <= m || g.most.CompareAndSwap(m, n) {
			break
		}
	}
	<-g.release
	g.inside.Add(-1)
}

// pyctl metrics questions are gathered at most maxQueryGathers at once:
// each gathers every app's series, and a tenant asking a thousand times
// at once made the proxy (every tenant's) hold a thousand gatherings.
func TestMetricsQueriesBounded(t *testing.T) {
	p := metricsProxy(t)
	g := &gateCollector{release: make(chan struct{})}
	p.metrics.reg.MustRegister(g)
	const asks = 12
	answers := make(chan proxymsg.MetricsAnswer, asks)
	for i := range asks {
		go func() { answers <- p.metrics.answer(proxymsg.MetricsQuery{ID: uint64(i), All: true}) }()
	}
	// Let them pile up: a bound of maxQueryGathers is reached at once;
	// without one all of them get in within this second.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && g.most.Load() <= maxQueryGathers {
		runtime.Gosched()
	}
	if got := g.most.Load(); got > maxQueryGathers {
		t.Errorf("%d gatherings at once, want at most %d", got, maxQueryGathers)
	}
	// Past maxQueryAsked under way, a question is answered busy at once.
	for p.metrics.asked.Load() < asks {
		runtime.Gosched() // the rest reach the queue
	}
	over := make(chan proxymsg.MetricsAnswer, maxQueryAsked)
	for range maxQueryAsked - asks + 1 {
		go func() { over <- p.metrics.answer(proxymsg.MetricsQuery{ID: 999, All: true}) }()
	}
	if a := <-over; !strings.Contains(a.Error, "busy") {
		t.Errorf("a question past %d under way: %q, want busy", maxQueryAsked, a.Error)
	}
	close(g.release)
	for range asks {
		if a := <-answers; a.Error != "" || !strings.Contains(a.Text, metrics.BuildInfo) {
			t.Errorf("answer %d: %q, text %d bytes", a.ID, a.Error, len(a.Text))
		}
	}
	for range maxQueryAsked - asks {
		<-over
	}
}
