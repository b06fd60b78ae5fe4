package integration

import (
	"bufio"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestStopStartRestartAndLogs(t *testing.T) {
	t.Parallel()
	app := strings.Replace(basicApp, `    body = b"hello world"`, `    if path == "/errors-for-follow":
        environ["wsgi.errors"].write("follow me\n")
    body = b"hello world"`, 1)
	dir := writeApp(t, map[string]string{"wsgi.py": validated(app)})
	s := startServe(t, dir, "--processes", "2", "wsgi.py")
	if c, _ := get(t, s.URL+"/"); c != 200 {
		t.Fatalf("before: %d", c)
	}
	old := s.workerPIDs()

	if out, err := pyctl(t, s, "restart"); err != nil {
		t.Fatalf("pyctl restart: %v\n%s", err, out)
	}
	now := s.workerPIDs()
	if len(now) != 2 || now[0] == old[0] || now[1] == old[1] {
		t.Fatalf("workers %v after restart, were %v", now, old)
	}

	if out, err := pyctl(t, s, "stop"); err != nil {
		t.Fatalf("pyctl stop: %v\n%s", err, out)
	}
	if st := s.status(); st[0].State != "stopped" || len(st[0].Workers) != 0 || countWorkers(s) != 0 {
		t.Fatalf("after stop: %+v, %d worker processes", st, countWorkers(s))
	}
	resp, err := http.Get(s.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("stopped app answered %d, want 503", resp.StatusCode)
	}

	if out, err := pyctl(t, s, "start"); err != nil {
		t.Fatalf("pyctl start: %v\n%s", err, out)
	}
	if c, body := get(t, s.URL+"/"); c != 200 || body != "hello world" {
		t.Fatalf("after start: %d %q", c, body)
	}

	// The app's log has the workers' lines and the supervisor's events.
	get(t, s.URL+"/slow")
	out, err := pyctl(t, s, "logs", "-n", "200")
	if err != nil {
		t.Fatalf("pyctl logs: %v\n%s", err, out)
	}
	for _, re := range []string{
		`(?m)^\S+Z \[pid \d+\] slow request started$`,
		`(?m)^\S+Z \[pyhost\] stopped by its owner$`,
		`(?m)^\S+Z \[pyhost\] worker \d+ ready$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("logs lack %s:\n%s", re, out)
		}
	}
	if n := strings.Count(strings.TrimSpace(mustRun(t, s, "logs", "-n", "3")), "\n") + 1; n != 3 {
		t.Errorf("logs -n 3 printed %d lines", n)
	}

	// -f follows new lines until interrupted. The first (old) line shows
	// that pyctl is following; only then is the new line produced.
	cmd := exec.Command(filepath.Join(binDir, "pyctl"), "--socket", s.Control, "logs", "-f", "-n", "1")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case <-lines:
	case <-time.After(10 * time.Second):
		t.Fatal("pyctl logs -f printed nothing")
	}
	go func() {
		if resp, err := http.Get(s.URL + "/errors-for-follow"); err == nil {
			resp.Body.Close()
		}
	}()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("pyctl logs -f ended")
			}
			if strings.Contains(l, "follow me") {
				return
			}
		case <-deadline:
			t.Fatal("pyctl logs -f did not show the new line")
		}
	}
}

func mustRun(t *testing.T, s *server, args ...string) string {
	t.Helper()
	out, err := pyctl(t, s, args...)
	if err != nil {
		t.Fatalf("pyctl %v: %v\n%s", args, err, out)
	}
	return out
}
