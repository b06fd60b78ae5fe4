package main

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pyhost/pyhost/control"
)

func readSample(t *testing.T, name string, at time.Time) topSample {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s, err := parseTopSample(b, at)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Two scrapes 2 s apart (testdata/top-*.prom) make the table of pyctl
// top: alice's blog answered 200 requests, 10 of them 5xx; bob's shop
// 10, 2 of them beyond the last bucket; carol's app is new in the second
// scrape, so its rates are unknown.
func TestTopGolden(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	prev := readSample(t, "top-1.prom", t0)
	cur := readSample(t, "top-2.prom", t0.Add(2*time.Second))
	rows := topRows(prev, cur)
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3: %+v", len(rows), rows)
	}
	blog := rows[0]
	if blog.RequestsPerSec != 100 || blog.ErrorsPerSec != 5 || blog.Restarts != 2 || blog.Busy != 2 || blog.Threads != 8 {
		t.Errorf("alice/blog: %+v", blog)
	}
	golden(t, "top.golden", []byte(renderTop(rows, "alice")))
}

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	bs := []bucket{{0.1, 50}, {0.2, 100}, {inf, 100}}
	for _, c := range []struct {
		q     float64
		want  float64
		above bool
	}{
		{0.5, 0.1, false},   // exactly the first bound
		{0.25, 0.05, false}, // linear from 0
		{0.75, 0.15, false}, // linear within the second bucket
		{1, 0.2, false},
	} {
		got, above := quantile(c.q, bs)
		if math.Abs(got-c.want) > 1e-9 || above != c.above {
			t.Errorf("quantile(%v) = %v %v, want %v %v", c.q, got, above, c.want, c.above)
		}
	}
	// Past the last finite bound: that bound, marked.
	if got, above := quantile(0.99, []bucket{{0.1, 1}, {inf, 10}}); got != 0.1 || !above {
		t.Errorf("in +Inf: %v %v", got, above)
	}
	if got, _ := quantile(0.5, []bucket{{0.1, 0}, {inf, 0}}); !math.IsNaN(got) {
		t.Errorf("empty histogram: %v, want NaN", got)
	}
}

// A counter that went down was reset (the proxy restarted): the delta is
// what it counted since.
func TestTopCounterReset(t *testing.T) {
	t0 := time.Now()
	k := appKey{"alice", "blog"}
	prev := topSample{at: t0, apps: map[appKey]*appFigures{k: {requests: 500, buckets: []bucket{{0.1, 500}, {math.Inf(1), 500}}}}}
	cur := topSample{at: t0.Add(time.Second), apps: map[appKey]*appFigures{k: {requests: 20, buckets: []bucket{{0.1, 20}, {math.Inf(1), 20}}}}}
	r := topRows(prev, cur)[0]
	if r.RequestsPerSec != 20 || math.IsNaN(r.P50) {
		t.Errorf("after a reset: %+v", r)
	}
}

// metricsDaemon is fakeDaemon that answers pyctl metrics with the
// fixtures in turn (the last one again once they run out).
type metricsDaemon struct {
	fakeDaemon
	texts []string
	n     atomic.Int32
}

func (d *metricsDaemon) Metrics(context.Context, control.Caller, string) (string, error) {
	i := int(d.n.Add(1)) - 1
	return d.texts[min(i, len(d.texts)-1)], nil
}

func fixtureTexts(t *testing.T) []string {
	var out []string
	for _, name := range []string{"top-1.prom", "top-2.prom"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// pyctl top --once against a daemon: two readings, one plain table (no
// terminal control), rates over the real interval.
func TestRunTopOnce(t *testing.T) {
	sock := startDaemon(t, &metricsDaemon{texts: fixtureTexts(t)})
	var stdout, stderr bytes.Buffer
	if code := run([]string{"top", "--once", "--interval", "100ms", "--socket", sock}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	if strings.Contains(out, "\x1b") || !strings.HasPrefix(out, "APP ") || strings.Count(out, "\n") != 4 {
		t.Errorf("top --once printed:\n%q", out)
	}
}

// The live view draws --count frames, each cleared and whole; the first
// has no rates yet, the second the fixture's.
func TestTopLiveFrames(t *testing.T) {
	texts := fixtureTexts(t)
	i := 0
	fetch := func(context.Context) ([]byte, error) {
		i++
		return []byte(texts[min(i, len(texts))-1]), nil
	}
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	clock := t0
	now := func() time.Time { return clock }
	var out bytes.Buffer
	// now advances 2 s per reading, as the fixture wants.
	fetchTimed := func(ctx context.Context) ([]byte, error) {
		b, err := fetch(ctx)
		clock = t0.Add(time.Duration(i-1) * 2 * time.Second)
		return b, err
	}
	if err := topLive(context.Background(), &out, fetchTimed, topOptions{interval: minInterval, count: 2}, "alice", now); err != nil {
		t.Fatal(err)
	}
	frames := strings.Split(out.String(), ansiHome)
	if len(frames) != 3 || frames[0] != "" {
		t.Fatalf("%d frames:\n%q", len(frames)-1, out.String())
	}
	prev, _ := parseTopSample([]byte(texts[0]), t0)
	cur, _ := parseTopSample([]byte(texts[1]), t0.Add(2*time.Second))
	if want := renderTop(topRows(prev, cur), "alice"); !strings.HasSuffix(frames[2], "\n\n"+want) {
		t.Errorf("second frame:\n%s\nwant its table:\n%s", frames[2], want)
	}
	if !strings.Contains(frames[1], "\nblog ") || strings.Count(frames[1], " - ") < 8 {
		t.Errorf("first frame has rates:\n%s", frames[1])
	}
}

// A live view whose first reading fails (no daemon, metrics off) says
// why and ends with the error, as --once does; it drew a frame with the
// error every interval until q before. A later failure (the daemon
// restarting) is drawn and retried.
func TestTopLiveFirstReadingFails(t *testing.T) {
	off := errors.New("metrics are off: set [daemon] metrics_listen in pyhost.toml")
	var out bytes.Buffer
	err := topLive(context.Background(), &out, func(context.Context) ([]byte, error) { return nil, off }, topOptions{interval: minInterval, count: 3}, "alice", time.Now)
	if !errors.Is(err, off) {
		t.Fatalf("topLive = %v, want the reading's error", err)
	}
	if out.Len() != 0 {
		t.Errorf("frames drawn before the error:\n%q", out.String())
	}

	texts := fixtureTexts(t)
	n := 0
	fetch := func(context.Context) ([]byte, error) {
		n++
		if n == 2 {
			return nil, errors.New("the proxy is not running (it is being restarted); try again")
		}
		return []byte(texts[0]), nil
	}
	out.Reset()
	if err := topLive(context.Background(), &out, fetch, topOptions{interval: minInterval, count: 3}, "alice", time.Now); err != nil {
		t.Fatalf("a later failure ended the view: %v", err)
	}
	if !strings.Contains(out.String(), "cannot read the daemon's metrics: the proxy is not running") {
		t.Errorf("the later failure is not on its frame:\n%s", out.String())
	}
}
