package main

// The pure half of `pyctl top`: two scrapes of the daemon's metrics
// (Prometheus text, as `pyctl metrics` prints it) become one row per app,
// with rates and latency quantiles from what changed between them, and
// the rows become a table. The live loop is in toploop.go.

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The series top reads; their names and labels are the daemon's
// contract (docs/metrics.md).
const (
	mRequests = "pyhost_http_requests_total"           // counter {user,app,method,code}
	mDuration = "pyhost_http_request_duration_seconds" // histogram {user,app}
	mQueue    = "pyhost_queue_length"                  // gauge {user,app}
	mBusy     = "pyhost_threads_busy"                  // gauge {user,app}
	mThreads  = "pyhost_threads_total"                 // gauge {user,app}
	mRSS      = "pyhost_app_rss_bytes"                 // gauge {user,app}
	mRestarts = "pyhost_worker_restarts_total"         // counter {user,app,reason}
	code5xx   = "5xx"                                  // the code label of a 5xx answer
	labelUser = "user"
	labelApp  = "app"
)

// appKey names one app in the metrics.
type appKey struct{ user, app string }

// appFigures are one app's series in one scrape: counters as they stand,
// gauges as they are.
type appFigures struct {
	requests, errors5xx float64
	buckets             []bucket // cumulative, by upper bound, +Inf last
	queue, busy         float64
	threads, rss        float64
	restarts            float64
}

// bucket is one classic histogram bucket: how many observations were at
// most upper.
type bucket struct {
	upper float64
	count float64
}

// topSample is one scrape: every app's figures and when it was taken.
type topSample struct {
	at   time.Time
	apps map[appKey]*appFigures
}

// parseTopSample reads one scrape in the Prometheus text format.
func parseTopSample(text []byte, at time.Time) (topSample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return topSample{}, fmt.Errorf("read the daemon's metrics: %w", err)
	}
	s := topSample{at: at, apps: map[appKey]*appFigures{}}
	each := func(name string, fn func(f *appFigures, m *dto.Metric)) {
		fam := fams[name]
		if fam == nil {
			return
		}
		for _, m := range fam.GetMetric() {
			k := appKey{labelValue(m, labelUser), labelValue(m, labelApp)}
			if k.app == "" {
				continue
			}
			f := s.apps[k]
			if f == nil {
				f = &appFigures{}
				s.apps[k] = f
			}
			fn(f, m)
		}
	}
	each(mRequests, func(f *appFigures, m *dto.Metric) {
		v := m.GetCounter().GetValue()
		f.requests += v
		if labelValue(m, "code") == code5xx {
			f.errors5xx += v
		}
	})
	each(mDuration, func(f *appFigures, m *dto.Metric) {
		h := m.GetHistogram()
		f.buckets = f.buckets[:0]
		for _, b := range h.GetBucket() {
			if !math.IsInf(b.GetUpperBound(), 1) {
				f.buckets = append(f.buckets, bucket{b.GetUpperBound(), float64(b.GetCumulativeCount())})
			}
		}
		// The +Inf bucket is the sample count, whether or not the text
		// had its line.
		f.buckets = append(f.buckets, bucket{math.Inf(1), float64(h.GetSampleCount())})
		sort.Slice(f.buckets, func(i, j int) bool { return f.buckets[i].upper < f.buckets[j].upper })
	})
	gauge := func(dst func(*appFigures) *float64) func(*appFigures, *dto.Metric) {
		return func(f *appFigures, m *dto.Metric) { *dst(f) += m.GetGauge().GetValue() }
	}
	each(mQueue, gauge(func(f *appFigures) *float64 { return &f.queue }))
	each(mBusy, gauge(func(f *appFigures) *float64 { return &f.busy }))
	each(mThreads, gauge(func(f *appFigures) *float64 { return &f.threads }))
	each(mRSS, gauge(func(f *appFigures) *float64 { return &f.rss }))
	each(mRestarts, func(f *appFigures, m *dto.Metric) { f.restarts += m.GetCounter().GetValue() })
	return s, nil
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// topRow is one app's line of `pyctl top`. Rates are per second over the
// time between the two samples; a NaN rate or quantile is unknown (the
// app was not in the first sample, or had no request in between).
type topRow struct {
	User, App      string
	RequestsPerSec float64
	ErrorsPerSec   float64 // 5xx answers
	P50, P99       float64 // seconds
	Busy, Threads  int
	Queue          int
	RSSBytes       uint64
	Restarts       int // since the daemon started
	// P50Above and P99Above: the quantile is past the last finite
	// bucket bound, which P50 or P99 then is.
	P50Above, P99Above bool
}

// topRows compares two samples of the same daemon, prev taken before cur.
// Rows are sorted by user, then app.
func topRows(prev, cur topSample) []topRow {
	dt := cur.at.Sub(prev.at).Seconds()
	rows := make([]topRow, 0, len(cur.apps))
	for k, c := range cur.apps {
		r := topRow{User: k.user, App: k.app, Busy: int(c.busy), Threads: int(c.threads), Queue: int(c.queue),
			RSSBytes: uint64(c.rss), Restarts: int(c.restarts),
			RequestsPerSec: math.NaN(), ErrorsPerSec: math.NaN(), P50: math.NaN(), P99: math.NaN()}
		if p, ok := prev.apps[k]; ok && dt > 0 {
			r.RequestsPerSec = counterDelta(p.requests, c.requests) / dt
			r.ErrorsPerSec = counterDelta(p.errors5xx, c.errors5xx) / dt
			d := bucketDelta(p.buckets, c.buckets)
			r.P50, r.P50Above = quantile(0.5, d)
			r.P99, r.P99Above = quantile(0.99, d)
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].User != rows[j].User {
			return rows[i].User < rows[j].User
		}
		return rows[i].App < rows[j].App
	})
	return rows
}

// counterDelta is how much a counter grew; one that went down was reset
// (the proxy restarted) and counts from zero, as Prometheus's rate() has it.
func counterDelta(prev, cur float64) float64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// bucketDelta is the histogram of the observations between two samples.
// Bounds that are not in both (the daemon changed its buckets) make the
// delta unknown: nil.
func bucketDelta(prev, cur []bucket) []bucket {
	if len(prev) != len(cur) {
		if len(prev) == 0 {
			return cur
		}
		return nil
	}
	out := make([]bucket, len(cur))
	reset := false
	for i := range cur {
		if cur[i].upper != prev[i].upper {
			return nil
		}
		if cur[i].count < prev[i].count {
			reset = true
		}
		out[i] = bucket{cur[i].upper, cur[i].count - prev[i].count}
	}
	if reset {
		return cur
	}
	return out
}

// quantile estimates the q-quantile of a classic histogram as
// Prometheus's histogram_quantile does: linear within the bucket it falls
// in, the lowest bucket starting at 0. One that falls in the +Inf bucket
// is the highest finite bound, and above is true. NaN when the histogram
// is empty.
func quantile(q float64, bs []bucket) (v float64, above bool) {
	if len(bs) == 0 {
		return math.NaN(), false
	}
	total := bs[len(bs)-1].count
	if total <= 0 {
		return math.NaN(), false
	}
	rank := q * total
	i := sort.Search(len(bs), func(i int) bool { return bs[i].count >= rank })
	if i == len(bs)-1 && math.IsInf(bs[i].upper, 1) {
		if len(bs) < 2 {
			return math.NaN(), false
		}
		return bs[len(bs)-2].upper, true
	}
	lower, below := 0.0, 0.0
	if i > 0 {
		lower, below = bs[i-1].upper, bs[i-1].count
	}
	in := bs[i].count - below
	if in <= 0 {
		return bs[i].upper, false
	}
	return lower + (bs[i].upper-lower)*(rank-below)/in, false
}

// renderTop formats rows as the table of `pyctl top`; me's apps are named
// without their user, as in pyctl status.
func renderTop(rows []topRow, me string) string {
	if len(rows) == 0 {
		return "no apps\n"
	}
	table := [][]string{{"APP", "REQ/S", "P50", "P99", "5XX/S", "BUSY", "QUEUE", "RSS", "RESTARTS"}}
	for _, r := range rows {
		name := r.App
		if r.User != me {
			name = r.User + "/" + r.App
		}
		table = append(table, []string{
			name, rate(r.RequestsPerSec), quantileCell(r.P50, r.P50Above), quantileCell(r.P99, r.P99Above), rate(r.ErrorsPerSec),
			fmt.Sprintf("%d/%d", r.Busy, r.Threads), strconv.Itoa(r.Queue), humanBytes(r.RSSBytes), strconv.Itoa(r.Restarts),
		})
	}
	return strings.Join(align(table), "\n") + "\n"
}

// rate renders a per-second figure: "-" unknown, one decimal below 100.
func rate(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// quantileCell is a latency quantile, ">" marking one past the last
// bucket bound.
func quantileCell(s float64, above bool) string {
	if above {
		return ">" + latency(s)
	}
	return latency(s)
}

// latency renders seconds as 850us, 12ms, 1.5s; "-" unknown.
func latency(s float64) string {
	switch {
	case math.IsNaN(s):
		return "-"
	case s < 0.001:
		return fmt.Sprintf("%.0fus", s*1e6)
	case s < 1:
		return fmt.Sprintf("%.0fms", s*1e3)
	}
	return fmt.Sprintf("%.1fs", s)
}
