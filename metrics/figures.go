package metrics

import (
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pyhost/pyhost/proxymsg"
)

// Figures exports what the master pushes down (proxymsg.Figures) and the
// daemon's own figures: build info and certificate expiry. The proxy
// keeps the newest push; a scrape reads it, so a scrape costs the master
// nothing.
type Figures struct {
	cur     atomic.Pointer[proxymsg.Figures]
	version string
	// certs, when set, returns each certificate name's expiry.
	certs func() map[string]time.Time
}

// NewFigures returns the collector; version is the daemon's, certs (may
// be nil) what pyhost_tls_certificate_expiry_timestamp_seconds shows.
func NewFigures(version string, certs func() map[string]time.Time) *Figures {
	if version == "" {
		version = "dev"
	}
	return &Figures{version: version, certs: certs}
}

// Set replaces the figures with f.
func (c *Figures) Set(f proxymsg.Figures) { c.cur.Store(&f) }

var (
	appLabels = []string{"user", "app"}

	descBuild    = prometheus.NewDesc(BuildInfo, "Always 1; the labels say which pyhost runs.", []string{"version", "goversion"}, nil)
	descStart    = prometheus.NewDesc(StartTime, "When the daemon started, in seconds since the epoch.", nil, nil)
	descReloads  = prometheus.NewDesc(ConfigReloads, "reload-config (or SIGHUP) runs since the daemon started, by result (success, failure).", []string{"result"}, nil)
	descCert     = prometheus.NewDesc(CertExpiry, "When the certificate serving a name expires, in seconds since the epoch.", []string{"name"}, nil)
	descWorkers  = prometheus.NewDesc(Workers, "Worker processes of the app by state.", []string{"user", "app", "state"}, nil)
	descRestarts = prometheus.NewDesc(WorkerRestarts, "Workers replaced since the daemon started, by reason (crash, oom, memory, requests, timeout, reload).", []string{"user", "app", "reason"}, nil)
	descAppState = prometheus.NewDesc(AppState, "1 for the app's current state, 0 for the others.", []string{"user", "app", "state"}, nil)
	descRSS      = prometheus.NewDesc(AppRSS, "Resident memory of the app's workers, summed.", appLabels, nil)
	descCPU      = prometheus.NewDesc(AppCPU, "CPU time of the app: its cgroup's when it has one, else its workers' (the replaced ones' carried on).", appLabels, nil)
	descOOM      = prometheus.NewDesc(AppOOMKills, "Processes of the app the kernel's OOM killer killed since the daemon started (0 without a cgroup).", appLabels, nil)
	descMem      = prometheus.NewDesc(AppMemory, "Memory of the app's cgroup, page cache included (0 without a cgroup).", appLabels, nil)
	descMemMax   = prometheus.NewDesc(AppMemoryMax, "The app's memory_max; 0 is none.", appLabels, nil)
	descTasks    = prometheus.NewDesc(AppTasks, "Processes and threads in the app's cgroup (0 without a cgroup).", appLabels, nil)
	figuresDescs = []*prometheus.Desc{descBuild, descStart, descReloads, descCert, descWorkers, descRestarts, descAppState, descRSS, descCPU, descOOM, descMem, descMemMax, descTasks}
)

// Describe implements prometheus.Collector.
func (c *Figures) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range figuresDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Figures) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descBuild, prometheus.GaugeValue, 1, c.version, runtime.Version())
	if c.certs != nil {
		for name, t := range c.certs() {
			ch <- prometheus.MustNewConstMetric(descCert, prometheus.GaugeValue, float64(t.Unix()), name)
		}
	}
	f := c.cur.Load()
	if f == nil {
		return // no push yet: nothing the master knows
	}
	if !f.StartTime.IsZero() {
		ch <- prometheus.MustNewConstMetric(descStart, prometheus.GaugeValue, float64(f.StartTime.UnixNano())/1e9)
	}
	ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(f.Reloads), "success")
	ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(f.ReloadFailures), "failure")
	for _, a := range f.Apps {
		for _, s := range WorkerStates {
			ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(a.Workers[s]), a.User, a.App, s)
		}
		for _, r := range RestartReasons {
			ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(a.Restarts[r]), a.User, a.App, r)
		}
		for _, s := range AppStates {
			v := 0.0
			if s == a.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descAppState, prometheus.GaugeValue, v, a.User, a.App, s)
		}
		ch <- prometheus.MustNewConstMetric(descRSS, prometheus.GaugeValue, float64(a.RSSBytes), a.User, a.App)
		ch <- prometheus.MustNewConstMetric(descCPU, prometheus.CounterValue, a.CPUSeconds, a.User, a.App)
		ch <- prometheus.MustNewConstMetric(descOOM, prometheus.CounterValue, float64(a.OOMKills), a.User, a.App)
		ch <- prometheus.MustNewConstMetric(descMem, prometheus.GaugeValue, float64(a.MemoryCurrentBytes), a.User, a.App)
		ch <- prometheus.MustNewConstMetric(descMemMax, prometheus.GaugeValue, float64(a.MemoryMaxBytes), a.User, a.App)
		ch <- prometheus.MustNewConstMetric(descTasks, prometheus.GaugeValue, float64(a.Tasks), a.User, a.App)
	}
}
