package proxy

import (
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pyhost/pyhost/metrics"
	"github.com/pyhost/pyhost/proxymsg"
)

// The proxy's side of the metrics (docs/metrics.md): what it counts of
// requests, per app, and the registry it serves on the metrics_listen
// socket. The figures only the master knows (workers, restarts, memory)
// arrive as proxymsg.Figures and are exported by metrics.Figures.
//
// The request path touches only an appMetrics resolved when the app's
// pool was made: a few atomic adds and two histogram observations, no
// label lookup, no lock. Everything else (queue length, threads) is read
// at scrape time.

// Histogram buckets: the classic ones, for Prometheus servers and
// dashboards without native histograms; the native ones are finer (a
// bucket per 10% of growth) and cost nothing more to keep.
var (
	durationBuckets  = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	queueWaitBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30}
)

const (
	nativeFactor     = 1.1
	nativeMaxBuckets = 160
)

// proxyMetrics is the proxy's registry and request-side instruments.
// A nil *proxyMetrics is metrics off: nothing is counted.
type proxyMetrics struct {
	reg       *prometheus.Registry
	figures   *metrics.Figures
	duration  *prometheus.HistogramVec
	queueWait *prometheus.HistogramVec
	// gathers holds a token per MetricsQuery being gathered: at most
	// maxQueryGathers at once, as the endpoint allows a few in flight.
	gathers chan struct{}
	// asked counts the MetricsQuery answers under way, waiting included.
	asked atomic.Int32
}

// maxQueryGathers bounds the pyctl metrics (and top) questions gathered
// at once, and queryWait how long one waits for its turn (the master
// gives up after as long). Each gathers every app's series: without a
// bound, a tenant running pyctl top in a loop a thousand times over made
// the proxy, every tenant's, hold a thousand copies of the registry.
// Past maxQueryAsked questions under way, one is answered busy at once:
// the waiting ones are goroutines the proxy holds for up to queryWait.
const (
	maxQueryGathers = 2
	maxQueryAsked   = 64
	queryWait       = 10 * time.Second
)

// appMetrics are one app's instruments, resolved once.
type appMetrics struct {
	user, app string
	// requests by method and status class (metrics.Methods, .Codes).
	requests                         [len(metrics.Methods)][len(metrics.Codes)]atomic.Uint64
	reqBytes, respBytes, staticBytes atomic.Uint64
	duration                         prometheus.Observer
	queueWait                        prometheus.Observer
}

// newProxyMetrics makes the registry: the request instruments, the
// pools' gauges (read from p at scrape time), the master's figures, the
// certificates' expiry, and the proxy process's own Go and process
// figures.
func newProxyMetrics(p *Proxy, version string, certs *Certs) *proxyMetrics {
	m := &proxyMetrics{reg: prometheus.NewRegistry(), gathers: make(chan struct{}, maxQueryGathers)}
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:                            metrics.HTTPRequestDuration,
		Help:                            "Time from a request's head to the end of its response, of requests routed to the app.",
		Buckets:                         durationBuckets,
		NativeHistogramBucketFactor:     nativeFactor,
		NativeHistogramMaxBucketNumber:  nativeMaxBuckets,
		NativeHistogramMinResetDuration: time.Hour,
	}, []string{"user", "app"})
	m.queueWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:                            metrics.QueueWait,
		Help:                            "Time a request waited for a free worker thread (0 when one was free).",
		Buckets:                         queueWaitBuckets,
		NativeHistogramBucketFactor:     nativeFactor,
		NativeHistogramMaxBucketNumber:  nativeMaxBuckets,
		NativeHistogramMinResetDuration: time.Hour,
	}, []string{"user", "app"})
	var certExpiry func() map[string]time.Time
	if certs != nil {
		certExpiry = certs.nameExpiry
	}
	m.figures = metrics.NewFigures(version, certExpiry)
	m.reg.MustRegister(m.duration, m.queueWait, m.figures, poolCollector{p},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// forApp resolves key's instruments; nil when metrics are off.
func (m *proxyMetrics) forApp(key string) *appMetrics {
	if m == nil {
		return nil
	}
	user, app := metrics.SplitKey(key)
	return &appMetrics{user: user, app: app,
		duration:  m.duration.WithLabelValues(user, app),
		queueWait: m.queueWait.WithLabelValues(user, app)}
}

// drop forgets a removed app's histograms.
func (m *proxyMetrics) drop(a *appMetrics) {
	if m == nil || a == nil {
		return
	}
	m.duration.DeleteLabelValues(a.user, a.app)
	m.queueWait.DeleteLabelValues(a.user, a.app)
}

// done counts one request routed to the app: rec holds its status and
// the bytes of its response body; start is when it arrived.
func (a *appMetrics) done(method string, rec *recorder, start time.Time) {
	status := rec.status
	if status == 0 {
		status = 499 // nothing was written: the client left first (as the access log says)
	}
	a.requests[metrics.MethodIndex(method)][metrics.CodeIndex(status)].Add(1)
	a.respBytes.Add(uint64(rec.bytes))
	a.duration.Observe(time.Since(start).Seconds())
}

// countedBody counts the bytes of a request body as they are read.
type countedBody struct {
	io.ReadCloser
	n *atomic.Uint64
}

func (b countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(uint64(n))
	return n, err
}

// handler serves /metrics: the Prometheus text format, or protobuf to a
// server that asks for it (native histograms need that).
func (m *proxyMetrics) handler(log hclog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog: log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
		// A slow scraper cannot pile up gatherings.
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "404 not found: pyhost's metrics are at /metrics", http.StatusNotFound)
	})
	return mux
}

// answer is the text of a MetricsQuery.
func (m *proxyMetrics) answer(q proxymsg.MetricsQuery) proxymsg.MetricsAnswer {
	a := proxymsg.MetricsAnswer{ID: q.ID}
	if m == nil {
		a.Error = "metrics are off: set [daemon] metrics_listen in pyhost.toml"
		return a
	}
	const busy = "the proxy is busy answering other pyctl metrics questions; try again"
	defer m.asked.Add(-1)
	if m.asked.Add(1) > maxQueryAsked {
		a.Error = busy
		return a
	}
	t := time.NewTimer(queryWait)
	defer t.Stop()
	select {
	case m.gathers <- struct{}{}:
		defer func() { <-m.gathers }()
	case <-t.C:
		a.Error = busy
		return a
	}
	fams, err := m.reg.Gather()
	if err != nil {
		a.Error = err.Error()
		return a
	}
	if a.Text, err = metrics.Text(fams, q.All, q.Apps); err != nil {
		a.Error = err.Error()
	}
	return a
}

// poolCollector exports the counters of appMetrics and the pools' state
// now: queue length and threads.
type poolCollector struct{ p *Proxy }

var (
	poolLabels       = []string{"user", "app"}
	descRequests     = prometheus.NewDesc(metrics.HTTPRequests, "Requests routed to the app, by method and status class (a client that left before the answer counts as 4xx, 499).", []string{"user", "app", "method", "code"}, nil)
	descReqBytes     = prometheus.NewDesc(metrics.RequestBytes, "Bytes of request bodies read from clients for the app.", poolLabels, nil)
	descRespBytes    = prometheus.NewDesc(metrics.ResponseBytes, "Bytes of response bodies sent to clients for the app, static files included.", poolLabels, nil)
	descStaticBytes  = prometheus.NewDesc(metrics.StaticBytes, "Bytes of response bodies the proxy served from the app's [[static]] directories.", poolLabels, nil)
	descQueueLength  = prometheus.NewDesc(metrics.QueueLength, "Requests waiting for a free worker thread now.", poolLabels, nil)
	descThreadsBusy  = prometheus.NewDesc(metrics.ThreadsBusy, "Worker threads holding a request now.", poolLabels, nil)
	descThreadsTotal = prometheus.NewDesc(metrics.ThreadsTotal, "Worker threads that take requests now (of workers not draining).", poolLabels, nil)
)

// Describe implements prometheus.Collector.
func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descReqBytes, descRespBytes, descStaticBytes, descQueueLength, descThreadsBusy, descThreadsTotal} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	c.p.poolsMu.Lock()
	pools := make([]*appPool, 0, len(c.p.pools))
	for _, pool := range c.p.pools {
		pools = append(pools, pool)
	}
	c.p.poolsMu.Unlock()
	for _, pool := range pools {
		a := pool.metrics
		if a == nil {
			continue
		}
		for i := range a.requests {
			for j := range a.requests[i] {
				// Only what happened: 40 series of zeros per app would
				// be most of a scrape.
				if n := a.requests[i][j].Load(); n > 0 {
					ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(n), a.user, a.app, metrics.Methods[i], metrics.Codes[j])
				}
			}
		}
		ch <- prometheus.MustNewConstMetric(descReqBytes, prometheus.CounterValue, float64(a.reqBytes.Load()), a.user, a.app)
		ch <- prometheus.MustNewConstMetric(descRespBytes, prometheus.CounterValue, float64(a.respBytes.Load()), a.user, a.app)
		ch <- prometheus.MustNewConstMetric(descStaticBytes, prometheus.CounterValue, float64(a.staticBytes.Load()), a.user, a.app)
		queued, busy, total := pool.load()
		ch <- prometheus.MustNewConstMetric(descQueueLength, prometheus.GaugeValue, float64(queued), a.user, a.app)
		ch <- prometheus.MustNewConstMetric(descThreadsBusy, prometheus.GaugeValue, float64(busy), a.user, a.app)
		ch <- prometheus.MustNewConstMetric(descThreadsTotal, prometheus.GaugeValue, float64(total), a.user, a.app)
	}
}

// load is the pool's queue length, busy threads and threads that take
// requests, now.
func (p *appPool) load() (queued, busy, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.workers {
		busy += w.inflight
		if w.routable() {
			total += w.threads
		}
	}
	return len(p.waiters), busy, total
}

// nameExpiry is when the certificate serving each name expires: every
// DNS name and address of the [[tls]] pairs ("*.example.com" for a
// wildcard). Automatic (ACME) certificates are not in it.
func (c *Certs) nameExpiry() map[string]time.Time {
	s := c.set.Load()
	if s == nil {
		return nil
	}
	out := make(map[string]time.Time, len(s.exact)+len(s.wildcard))
	for n, cert := range s.exact {
		if cert.Leaf != nil {
			out[n] = cert.Leaf.NotAfter
		}
	}
	for base, cert := range s.wildcard {
		if cert.Leaf != nil {
			out["*."+base] = cert.Leaf.NotAfter
		}
	}
	return out
}
