package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Issue 15 review: what a hostile client or tenant can do with the
// metrics, pyctl top, pyctl logs --access and pyctl version. Two users'
// apps in system mode, metrics and per-app access logs on:
//   - made-up methods and Host headers are no label values (the method is
//     one of eight, the host and path are in no label);
//   - the Grafana dashboard's user/app variables list an app that has not
//     served a request yet (they came from the requests counter, whose
//     series appears with an app's first request);
//   - ben's pyctl metrics, top --once and logs --access show nothing of
//     ann's app, his own app's access log reads empty before its first
//     request, and a failed reload-config's reason is root's;
//   - an app removed by reload-config takes its series with it;
//   - reload-config says a changed key only a restart applies is not
//     applied yet.
func TestMetricsAttack(t *testing.T) {
	t.Parallel()
	const (
		ann = "pyh-ma-ann"
		ben = "pyh-ma-ben"
	)
	users := fmt.Sprintf("[users.%s]\ndomains = [\"ma-ann.test\"]\n\n[users.%s]\ndomains = [\"ma-ben.test\"]\n", ann, ben)
	d := newSysd(t, users)
	metricsAddr := freePort(t)
	good := withDaemonKeys(d, users, fmt.Sprintf("metrics_listen = %q\naccess_log_per_app = true", metricsAddr))
	writeFile(t, d.admin, good)
	a, b := makeUser(t, ann), makeUser(t, ben)
	deployNamed(t, a, "blog", "ann-blog", `"ma-ann.test"`, "")
	deployNamed(t, b, "shop", "ben-shop", `"ma-ben.test"`, "")
	d.start()

	scrape := func() (samples, string) {
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
		return parseSamples(t, string(body)), string(body)
	}

	// Hostile requests on one keep-alive connection: made-up methods to
	// ann's app, made-up hosts nobody serves. Each carries the marker
	// "zqx" somewhere a careless instrument would make a label of.
	const hostile = 20
	conn, err := net.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	for i := 0; i < hostile; i++ {
		fmt.Fprintf(conn, "ZQX%d /zqx/%d HTTP/1.1\r\nHost: ma-ann.test\r\n\r\n", i, i)
		fmt.Fprintf(conn, "GET /zqx/%d HTTP/1.1\r\nHost: zqx%d.invalid\r\n\r\n", i, i)
		for range 2 {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("hostile request %d: %v", i, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	var ss samples
	var text string
	eventually(t, 10*time.Second, "the made-up methods counted and the master's figures of ben's app in", func() bool {
		ss, text = scrape()
		return ss.sum("pyhost_http_requests_total", "user", ann, "app", "blog", "method", "other") == hostile &&
			ss.sum("pyhost_workers", "user", ben, "app", "shop", "state", "ready") == 1
	})
	if strings.Contains(strings.ToLower(text), "zqx") {
		t.Errorf("a client's method, path or host is in the scrape:\n%s", grepLines(text, "zqx"))
	}
	labelsOK := map[string]bool{"user": true, "app": true, "method": true, "code": true, "state": true, "reason": true, "result": true, "name": true, "version": true, "goversion": true, "le": true}
	for _, s := range ss {
		if !strings.HasPrefix(s.name, "pyhost_") {
			continue
		}
		for l := range s.labels {
			if !labelsOK[l] {
				t.Errorf("%s has a label %q: unbounded values?", s.name, l)
			}
		}
	}

	// The dashboard's variables list ben's app, which served nothing.
	dash, err := os.ReadFile("../contrib/grafana/pyhost.json")
	if err != nil {
		t.Fatal(err)
	}
	vars := regexp.MustCompile(`label_values\((pyhost_[a-z_]+)`).FindAllStringSubmatch(string(dash), -1)
	if len(vars) == 0 {
		t.Fatal("the dashboard has no label_values variable")
	}
	for _, v := range vars {
		found := false
		for _, s := range ss {
			if s.name == v[1] && s.labels["user"] == ben && s.labels["app"] == "shop" {
				found = true
			}
		}
		if !found {
			t.Errorf("the dashboard's variable label_values(%s, ...) misses %s/shop, which served no request yet", v[1], ben)
		}
	}

	// ben sees nothing of ann's app.
	for _, args := range [][]string{{"metrics"}, {"top", "--once", "--interval", "100ms"}} {
		out, err := d.pyctl(ben, args...)
		if err != nil {
			t.Fatalf("pyctl %s as %s: %v\n%s", args[0], ben, err, out)
		}
		if !strings.Contains(out, "shop") {
			t.Errorf("pyctl %s as %s does not show his app:\n%s", args[0], ben, out)
		}
		if strings.Contains(out, ann) || strings.Contains(out, "blog") {
			t.Errorf("pyctl %s as %s shows ann's app:\n%s", args[0], ben, out)
		}
	}
	if out, err := d.pyctl(ben, "logs", "shop", "--access"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("pyctl logs shop --access as %s before any request: %v\n%q", ben, err, out)
	}
	for _, app := range []string{"blog", ann + "/blog"} {
		out, err := d.pyctl(ben, "logs", app, "--access")
		if err == nil || strings.Contains(out, "zqx") || strings.Contains(out, "ZQX") {
			t.Errorf("pyctl logs %s --access as %s: %v\n%s", app, ben, err, out)
		}
	}
	if out, err := d.pyctl(ann, "logs", "blog", "--access"); err != nil || !strings.Contains(out, `"ZQX3 /zqx/3 HTTP/1.1"`) {
		t.Errorf("pyctl logs blog --access as %s: %v\n%s", ann, err, out)
	}

	// A failed reload-config: its reason names files; root's only.
	writeFile(t, d.admin, good+"\n[daemon.zqx_broken\n")
	if out, err := d.pyctl("", "reload-config"); err == nil {
		t.Fatalf("reload-config of a broken file succeeded:\n%s", out)
	}
	for who, wantErr := range map[string]bool{ben: false, "": true} {
		out, err := d.pyctl(who, "version", "--json")
		if err != nil || !strings.Contains(out, `"ok": false`) && !strings.Contains(out, `"ok":false`) {
			t.Errorf("pyctl version --json as %q after a failed reload: %v\n%s", who, err, out)
		}
		if got := strings.Contains(out, "zqx_broken") || strings.Contains(out, `"error"`); got != wantErr {
			t.Errorf("pyctl version --json as %q: the reason shown %v, want %v:\n%s", who, got, wantErr, out)
		}
	}

	// ben's app removed: its series go with it.
	writeFile(t, d.admin, good)
	if err := os.Remove(filepath.Join(userApps(b), "shop.toml")); err != nil {
		t.Fatal(err)
	}
	if out, err := d.pyctl("", "reload-config"); err != nil {
		t.Fatalf("reload-config: %v\n%s", err, out)
	}
	eventually(t, 15*time.Second, "ben's series gone after his app was removed", func() bool {
		_, text := scrape()
		return !strings.Contains(text, `user="`+ben+`"`) && strings.Contains(text, `user="`+ann+`"`)
	})

	// A [daemon] key only a restart applies, changed: reload-config
	// says so (it said only that it went well).
	writeFile(t, d.admin, withDaemonKeys(d, users, fmt.Sprintf("metrics_listen = %q", metricsAddr)))
	out, err := d.pyctl("", "reload-config")
	if err != nil || !strings.Contains(out, "access_log_per_app") || !strings.Contains(out, "next start") {
		t.Errorf("reload-config turning access_log_per_app off: %v\n%s", err, out)
	}
}

// grepLines are the lines of text containing s (case-insensitively).
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(strings.ToLower(l), s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Two daemons, each with its own state_dir, given one pid_file: the
// second refuses to start with one line and leaves the first's file.
func TestPIDFileShared(t *testing.T) {
	t.Parallel()
	first, second := newSysd(t, ""), newSysd(t, "")
	pidFile := filepath.Join(first.base, "pyhostd.pid")
	for _, d := range []*sysd{first, second} {
		writeFile(t, d.admin, withDaemonKeys(d, "", "pid_file = "+strconv.Quote(pidFile)))
	}
	first.start()
	want := strconv.Itoa(first.cmd.Process.Pid) + "\n"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "pyhostd"), "run", "--config", second.admin).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "names pid "+strings.TrimSpace(want)) {
		t.Errorf("a second daemon with the same pid_file: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(pidFile); err != nil || string(b) != want {
		t.Errorf("the first daemon's pid file: %q, %v; want %q", b, err, want)
	}
}
