package supervisor

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/wsgiadapter"
)

// warmApp answers every path with its Host and path, and raises on
// /boom, as a Django view with a NameError does on its first request.
const warmApp = `def application(environ, start_response):
    if environ["PATH_INFO"] == "/boom":
        return viewz(environ, start_response)
    body = (environ.get("HTTP_HOST", "") + " " + environ["PATH_INFO"]).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`

// TestWarmupRealWorker: the warm-up through a real pyhost_worker.py,
// started as the test's own user: a worker that answers its paths gets
// ready; a reload whose warm-up path raises aborts with the path, the
// status and the app's traceback, and the old worker keeps serving.
func TestWarmupRealWorker(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	script := filepath.Join(dir, "pyhost_worker.py")
	if err := os.WriteFile(script, wsgiadapter.WorkerScript, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(warmApp), 0o644); err != nil {
		t.Fatal(err)
	}
	sp, err := privdrop.NewSpawner()
	if err != nil {
		t.Fatal(err)
	}
	cred, err := privdrop.Current()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.App{
		Name: "warm", Cred: cred, Script: "app.py", Directory: dir, Python: python,
		Domains:   []string{"warm.example.com"},
		Processes: 1, Threads: 2,
		StartupTimeout: 30 * time.Second, GracefulTimeout: 5 * time.Second, QueueTimeout: 30 * time.Second,
		Env: map[string]string{"WARMUP": "/,/healthz"},
	}
	var out lockedLines
	app := NewApp(cfg, Options{
		Spawner: sp, WorkerScript: script, SocketDir: dir, SocketUID: -1, SocketGID: -1,
		Log: hclog.NewNullLogger(), Restart: DefaultRestartPolicy,
		Output: func(_ string, pid int, line string) { out.add(line) },
		// Until config.App has the key, the paths ride in the test's
		// environment.
		WarmupPaths: func(c config.App) []string { return strings.Split(c.Env["WARMUP"], ",") },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); app.Run(ctx) }()
	defer func() { cancel(); <-done }()

	wait, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	if err := app.WaitStarted(wait); err != nil {
		t.Fatalf("start with a passing warm-up: %v\n%s", err, out.String())
	}
	r := app.Route()
	if len(r.Workers) != 1 {
		t.Fatalf("route %+v, want one worker", r)
	}
	first := r.Workers[0].PID
	// The worker answers as the warm-up saw it.
	if got := get(t, r.Workers[0].Socket, "/x"); got != "warm.example.com /x" {
		t.Errorf("a request after the warm-up: %q", got)
	}

	bad := cfg
	bad.Env = map[string]string{"WARMUP": "/,/boom"}
	err = app.Reload(wait, bad, nil)
	var rerr *ReloadError
	if !errors.As(err, &rerr) {
		t.Fatalf("reload with a failing warm-up: %v, want a ReloadError\n%s", err, out.String())
	}
	if !strings.Contains(rerr.Reason, "warm-up GET /boom answered 500") || !strings.Contains(rerr.Traceback, "NameError") {
		t.Errorf("reload error %q with traceback %q: want the path, the status and the NameError", rerr.Reason, rerr.Traceback)
	}
	t.Logf("pyctl reload would print: %v\n%s", rerr, rerr.Traceback)
	if r := app.Route(); len(r.Workers) != 1 || r.Workers[0].PID != first || r.Workers[0].Draining {
		t.Errorf("route after the abort %+v, want the old worker %d serving", r.Workers, first)
	}
}

// get asks the worker at socket for path as warm.example.com and
// returns the body.
func get(t *testing.T, socket, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := wsgiadapter.Dial(ctx, socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendBytes(warmupEnviron(WarmupRequest{Host: "warm.example.com"}, path, 0), nil); err != nil {
		t.Fatal(err)
	}
	head, err := c.ReadHead()
	if err != nil || head.Status != 200 {
		t.Fatalf("GET %s: %d %v", path, head.Status, err)
	}
	body, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// lockedLines collects output lines from the workers' readers.
type lockedLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *lockedLines) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
}

func (l *lockedLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
