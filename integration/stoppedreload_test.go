package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// errorLine is a line the daemon logged at ERROR level (hclog's format).
var errorLine = regexp.MustCompile(`(?m)^.*\[ERROR\].*$`)

// TestStoppedReloadStartsOnFreshCode is issue 9 item 10: pyctl reload of
// a stopped app is a normal action. It starts the app on the code now on
// disk (docs/cli.md) and logs no ERROR line on the way.
func TestStoppedReloadStartsOnFreshCode(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(versionApp), "version.txt": "v1"})
	s := startServe(t, dir, "--processes", "2", "wsgi.py")
	if _, body := get(t, s.URL+"/"); body != "v1" {
		t.Fatalf("serving %q, want v1", body)
	}
	mustRun(t, s, "stop")
	if st := s.status(); st[0].State != "stopped" || countWorkers(s) != 0 {
		t.Fatalf("after stop: %+v, %d worker processes", st, countWorkers(s))
	}
	os.WriteFile(filepath.Join(dir, "version.txt"), []byte("v2"), 0o644)

	out := mustRun(t, s, "reload")
	if c, body := get(t, s.URL+"/"); c != 200 || body != "v2" {
		t.Fatalf("after reload of the stopped app: %d %q, want 200 v2; pyctl said:\n%s", c, body, out)
	}
	if st := s.status(); st[0].State != "running" || len(st[0].Workers) != 2 {
		t.Fatalf("after reload of the stopped app: %+v", st)
	}
	// Stopping the daemon flushes its whole output into s.out.
	if err := s.stop(10 * time.Second); err != nil {
		t.Fatalf("pyhostd exit: %v", err)
	}
	if errs := errorLine.FindAllString(s.out.String(), -1); len(errs) > 0 {
		t.Fatalf("ERROR lines for stop and reload:\n%s", strings.Join(errs, "\n"))
	}
}

// A reload of a stopped app onto code that does not import is refused
// with the traceback, and the app stays stopped (nothing half-started);
// pyctl start then works once the code is fixed.
func TestStoppedReloadOfBrokenCodeStaysStopped(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(versionApp), "version.txt": "v1"})
	s := startServe(t, dir, "--processes", "2", "wsgi.py")
	mustRun(t, s, "stop")
	os.WriteFile(filepath.Join(dir, "version.txt"), []byte("broken"), 0o644)

	out, err := pyctl(t, s, "reload")
	if err == nil {
		t.Fatalf("pyctl reload onto broken code exited 0:\n%s", out)
	}
	if !strings.Contains(out, "ImportError: this version does not import: broken") {
		t.Errorf("pyctl output lacks the traceback:\n%s", out)
	}
	eventually(t, 10*time.Second, "the new workers of the failed reload are gone", func() bool { return countWorkers(s) == 0 })
	if st := s.status(); st[0].State != "stopped" || len(st[0].Workers) != 0 {
		t.Fatalf("after a failed reload of the stopped app: %+v", st)
	}

	os.WriteFile(filepath.Join(dir, "version.txt"), []byte("v3"), 0o644)
	mustRun(t, s, "start")
	if c, body := get(t, s.URL+"/"); c != 200 || body != "v3" {
		t.Fatalf("after start: %d %q, want 200 v3", c, body)
	}
	if err := s.stop(10 * time.Second); err != nil {
		t.Fatalf("pyhostd exit: %v", err)
	}
	if m := regexp.MustCompile(`.*refused (app|worker) state change.*`).FindAllString(s.out.String(), -1); len(m) > 0 {
		t.Fatalf("illegal state changes attempted:\n%s", strings.Join(m, "\n"))
	}
}
