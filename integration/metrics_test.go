package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 15 (O3): the proxy serves /metrics at metrics_listen in system
// mode, with two apps of two users. What the test sends is counted
// exactly (requests by status class, the histogram's count, body
// bytes); a worker killed with SIGKILL is a crash restart and one over
// memory_limit a memory one; pyctl metrics shows a tenant only their
// app; every metric the Grafana dashboard and the alert rules query is
// in the scrape.
func TestMetrics(t *testing.T) {
	t.Parallel()
	const (
		ann = "pyh-mx-ann"
		ben = "pyh-mx-ben"
	)
	users := fmt.Sprintf("[users.%s]\ndomains = [\"ann.test\"]\n\n[users.%s]\ndomains = [\"ben.test\"]\n", ann, ben)
	d := newSysd(t, users)
	metricsAddr := freePort(t)
	// A [[tls]] pair, for the certificate's expiry.
	ca := newTestCA(t)
	tlsDir := filepath.Join(d.base, "tls")
	os.MkdirAll(tlsDir, 0o700)
	cert, key := ca.issue(t, tlsDir, "ann", "ann.test")
	d.writeTLSAdmin(freePort(t), [][2]string{{cert, key}}, "", users)
	conf, err := os.ReadFile(d.admin)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, d.admin, strings.Replace(string(conf), "[daemon]\n", fmt.Sprintf("[daemon]\nmetrics_listen = %q\n", metricsAddr), 1))
	a, b := makeUser(t, ann), makeUser(t, ben)
	// ann's app answers /status/NNN with that status and, on /grow,
	// holds 200 MiB more than its memory_limit allows.
	writeOwned(t, a, filepath.Join(a.home, "blog", "wsgi.py"), `import os
held = []
def application(environ, start_response):
    path = environ["PATH_INFO"]
    environ["wsgi.input"].read()
    status = "200 OK"
    if path.startswith("/status/"):
        status = path[len("/status/"):] + " Whatever"
    if path == "/grow":
        held.append(bytearray(200 << 20))
        for i in range(0, len(held[-1]), 4096):
            held[-1][i] = 1
    body = str(os.getpid()).encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`, 0o644)
	writeOwned(t, a, filepath.Join(userApps(a), "blog.toml"),
		"domains = [\"ann.test\"]\nscript = \"wsgi.py\"\ndirectory = \"~/blog\"\nprocesses = 1\nthreads = 2\nmemory_limit = \"100MiB\"\n", 0o644)
	deployNamed(t, b, "shop", "ben-shop", `"ben.test"`, "")
	d.env = append(d.env, "PYHOST_CHECK_INTERVAL=200ms")
	d.start()

	scrape := func() samples {
		t.Helper()
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			t.Fatalf("scrape: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("scrape: %d %s", resp.StatusCode, body)
		}
		return parseSamples(t, string(body))
	}
	before := scrape()

	// A bounded load, concurrently enough to queue on 2 threads.
	type sent struct {
		host, method, path, body string
		n                        int
		want                     int
	}
	load := []sent{
		{"ann.test", "GET", "/", "", 40, 200},
		{"ann.test", "GET", "/status/404", "", 6, 404},
		{"ann.test", "POST", "/status/503", "abcde", 4, 503},
		{"ann.test", "PUT", "/status/301", "xy", 3, 301},
		{"ben.test", "GET", "/", "", 25, 200},
		{"ben.test", "HEAD", "/", "", 5, 200},
	}
	errs := make(chan error, 100)
	for _, s := range load {
		go func() {
			client := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			for range s.n {
				req, _ := http.NewRequest(s.method, "http://"+d.addr+s.path, strings.NewReader(s.body))
				req.Host = s.host
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != s.want {
					errs <- fmt.Errorf("%s %s%s: %d, want %d", s.method, s.host, s.path, resp.StatusCode, s.want)
					return
				}
			}
			errs <- nil
		}()
	}
	during := scrape() // while the load runs: a scrape takes no lock a request needs
	for range load {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	after := scrape()
	annL := []string{"user", ann, "app", "blog"}
	benL := []string{"user", ben, "app", "shop"}
	delta := func(name string, labels ...string) float64 {
		return after.sum(name, labels...) - before.sum(name, labels...)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"pyhost_http_requests_total", append(annL, "method", "GET", "code", "2xx"), 40},
		{"pyhost_http_requests_total", append(annL, "method", "GET", "code", "4xx"), 6},
		{"pyhost_http_requests_total", append(annL, "method", "POST", "code", "5xx"), 4},
		{"pyhost_http_requests_total", append(annL, "method", "PUT", "code", "3xx"), 3},
		{"pyhost_http_requests_total", annL, 53},
		{"pyhost_http_requests_total", append(benL, "method", "GET", "code", "2xx"), 25},
		{"pyhost_http_requests_total", append(benL, "method", "HEAD", "code", "2xx"), 5},
		{"pyhost_http_requests_total", benL, 30},
		{"pyhost_http_request_duration_seconds_count", annL, 53},
		{"pyhost_http_request_duration_seconds_count", benL, 30},
		{"pyhost_queue_wait_seconds_count", annL, 53},
		{"pyhost_http_request_bytes_total", annL, 4*5 + 3*2},
	} {
		if got := delta(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v went up by %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, l := range [][]string{annL, benL} {
		b, d, a := before.sum("pyhost_http_requests_total", l...), during.sum("pyhost_http_requests_total", l...), after.sum("pyhost_http_requests_total", l...)
		if d < b || d > a {
			t.Errorf("%v: %v requests counted during the load, not between %v and %v", l, d, b, a)
		}
	}
	if got := after.sum("pyhost_http_request_duration_seconds_bucket", append(annL, "le", "+Inf")...); got != after.sum("pyhost_http_request_duration_seconds_count", annL...) {
		t.Errorf("ann's +Inf bucket %v is not the count", got)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"pyhost_threads_total", annL, 2},
		{"pyhost_build_info", nil, 1},
	} {
		if got := after.sum(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The master's figures come with each change of an app, and every 2 s.
	eventually(t, 10*time.Second, "the apps running, in the master's figures", func() bool {
		s := scrape()
		return s.sum("pyhost_app_state", append(annL, "state", "running")...) == 1 &&
			s.sum("pyhost_app_state", append(benL, "state", "running")...) == 1 &&
			s.sum("pyhost_workers", append(annL, "state", "ready")...) == 1 &&
			s.sum("pyhost_app_rss_bytes", annL...) > 0 &&
			s.has("pyhost_start_time_seconds") && s.sum("pyhost_config_reloads_total") == 0
	})

	// A kill -9 of ben's worker is a crash.
	pid := workerPID(t, d, ben, "shop")
	syscall.Kill(pid, syscall.SIGKILL)
	eventually(t, 20*time.Second, "ben's crash restart in the metrics", func() bool {
		s := scrape()
		return s.sum("pyhost_worker_restarts_total", append(benL, "reason", "crash")...) == 1 &&
			s.sum("pyhost_workers", append(benL, "state", "ready")...) == 1
	})
	// ann's worker over memory_limit is recycled for memory.
	req, _ := http.NewRequest("GET", "http://"+d.addr+"/grow", nil)
	req.Host = "ann.test"
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	eventually(t, 30*time.Second, "ann's memory recycle in the metrics", func() bool {
		return scrape().sum("pyhost_worker_restarts_total", append(annL, "reason", "memory")...) == 1
	})

	// pyctl metrics: a tenant sees their app only; root everything.
	out, err := d.pyctl(ben, "metrics")
	if err != nil || !strings.Contains(out, `app="shop"`) || strings.Contains(out, ann) || strings.Contains(out, "go_goroutines") {
		t.Errorf("pyctl metrics as %s: %v\n%s", ben, err, out)
	}
	if out, err := d.pyctl(ben, "metrics", "blog"); err == nil {
		t.Errorf("pyctl metrics blog as %s: ann's app shown:\n%s", ben, out)
	}
	if out, err := d.pyctl("", "metrics"); err != nil || !strings.Contains(out, `user="`+ann+`"`) || !strings.Contains(out, `user="`+ben+`"`) {
		t.Errorf("pyctl metrics as root: %v\n%.2000s", err, out)
	}

	if exp := after.sum("pyhost_tls_certificate_expiry_timestamp_seconds", "name", "ann.test"); exp < float64(time.Now().Unix()) || exp > float64(time.Now().Add(25*time.Hour).Unix()) {
		t.Errorf("ann.test's certificate expires at %v, want within a day", exp)
	}

	// A reload-config is counted.
	if out, err := d.pyctl("", "reload-config"); err != nil {
		t.Fatalf("pyctl reload-config: %v\n%s", err, out)
	}
	eventually(t, 10*time.Second, "the reload in the metrics", func() bool {
		return scrape().sum("pyhost_config_reloads_total", "result", "success") == 1
	})

	// Every metric the dashboard and the alerts query is in a scrape.
	have := scrape()
	for _, name := range contribMetricNames(t) {
		if !have.has(name) {
			t.Errorf("%s, queried by contrib/, is not in a scrape", name)
		}
	}
}

// samples are the lines of a Prometheus text scrape.
type samples []sample

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

func parseSamples(t *testing.T, text string) samples {
	t.Helper()
	var out samples
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("scrape line %q", line)
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("scrape line %q: %v", line, err)
		}
		s := sample{name: m[1], labels: map[string]string{}, value: v}
		for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
			s.labels[p[1]] = p[2]
		}
		out = append(out, s)
	}
	return out
}

// sum adds the values of name's samples whose labels include the pairs.
func (ss samples) sum(name string, pairs ...string) float64 {
	total := 0.0
next:
	for _, s := range ss {
		if s.name != name {
			continue
		}
		for i := 0; i+1 < len(pairs); i += 2 {
			if s.labels[pairs[i]] != pairs[i+1] {
				continue next
			}
		}
		total += s.value
	}
	return total
}

// has reports a sample of name, or of the histogram name.
func (ss samples) has(name string) bool {
	for _, s := range ss {
		if s.name == name {
			return true
		}
	}
	return false
}

// workerPID is the pid of user's app's one ready worker, as root's
// pyctl status --json says.
func workerPID(t *testing.T, d *sysd, user, app string) int {
	t.Helper()
	out, err := d.pyctl("", "status", "--json")
	if err != nil {
		t.Fatalf("pyctl status --json: %v\n%s", err, out)
	}
	var st []appStatus
	var users []struct {
		User string `json:"user"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("pyctl status --json: %v\n%s", err, out)
	}
	json.Unmarshal([]byte(out), &users)
	for i, s := range st {
		if s.Name == app && users[i].User == user {
			for _, w := range s.Workers {
				if w.State == "ready" {
					return w.PID
				}
			}
		}
	}
	t.Fatalf("no ready worker of %s/%s in\n%s", user, app, out)
	return 0
}

// contribMetricNames are the pyhost_* metrics contrib/'s dashboard and
// alert rules query, as their names appear in a scrape (a histogram's
// _bucket series are its own).
func contribMetricNames(t *testing.T) []string {
	t.Helper()
	seen := map[string]bool{}
	word := regexp.MustCompile(`pyhost_[a-z_]+`)
	for _, f := range []string{"../contrib/grafana/pyhost.json", "../contrib/prometheus/alerts.yml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range word.FindAllString(string(b), -1) {
			seen[n] = true
		}
	}
	if len(seen) < 10 {
		t.Fatalf("contrib/ queries only %d metrics: %v", len(seen), seen)
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
