// Command workerbench measures the Python worker alone: it starts one
// pyhost worker (the embedded script, one thread) on a hello-world app,
// drives it over the wire protocol from Go on one connection, and prints
// the worker's CPU time per request, read from /proc. The proxy, HTTP and
// the network are not involved, so this is the floor of what the Python
// side costs per request.
//
//	go run ./bench/workerbench -n 50000
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/workerproc"
	"github.com/pyhost/pyhost/wsgiadapter"
)

const helloApp = `
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
    return [b"Hello!"]
`

func main() {
	n := flag.Int("n", 50000, "requests to send")
	python := flag.String("python", "/usr/bin/python3", "interpreter")
	app := flag.String("app", "", "WSGI file to serve instead of the built-in hello world")
	flag.Parse()
	if err := run(*n, *python, *app); err != nil {
		fmt.Fprintln(os.Stderr, "workerbench:", err)
		os.Exit(1)
	}
}

func run(n int, python, app string) error {
	dir, err := os.MkdirTemp("", "workerbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "pyhost_worker.py")
	if err := os.WriteFile(script, wsgiadapter.WorkerScript, 0o644); err != nil {
		return err
	}
	if app == "" {
		app = filepath.Join(dir, "hello.py")
		if err := os.WriteFile(app, []byte(helloApp), 0o644); err != nil {
			return err
		}
	}
	cred, err := privdrop.Current()
	if err != nil {
		return err
	}
	sp, err := privdrop.NewSpawner()
	if err != nil {
		return err
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "workerbench", Output: os.Stderr})
	proc, err := workerproc.Start(sp, workerproc.Spec{
		Path:   python,
		Args:   []string{"-u", script, "--script", app, "--directory", dir, "--threads", "1"},
		Dir:    dir,
		Env:    privdrop.CleanEnv(cred, nil),
		Cred:   cred,
		Socket: filepath.Join(dir, "w.sock"),
		Output: func(pid int, line string) { log.Info(line, "pid", pid) },

		SocketUID: -1, SocketGID: -1,
	})
	if err != nil {
		return err
	}
	defer func() { proc.Stop(5 * time.Second); <-proc.Exited() }()
	select {
	case <-proc.Ready():
	case <-proc.Exited():
		return fmt.Errorf("worker exited: %v", proc.ExitErr())
	case <-time.After(30 * time.Second):
		return fmt.Errorf("worker not ready within 30s")
	}
	ctx := context.Background()
	conn, err := wsgiadapter.Dial(ctx, proc.Socket())
	if err != nil {
		return err
	}
	defer conn.Close()
	env := wsgiadapter.Environ{
		"REQUEST_METHOD", "GET", "SCRIPT_NAME", "", "PATH_INFO", "/hello", "QUERY_STRING", "",
		"REQUEST_URI", "/hello", "SERVER_NAME", "127.0.0.1", "SERVER_PORT", "8000", "SERVER_PROTOCOL", "HTTP/1.1",
		"REMOTE_ADDR", "127.0.0.1", "REMOTE_PORT", "40000", "wsgi.url_scheme", "http", "HTTP_HOST", "127.0.0.1:8000",
		"HTTP_X_REQUEST_ID", "0123abcd-1", "HTTP_USER_AGENT", "workerbench/1", "HTTP_ACCEPT", "*/*",
	}
	one := func() error {
		if err := conn.Send(env, nil, 0); err != nil {
			return err
		}
		if _, err := conn.ReadHead(); err != nil {
			return err
		}
		for {
			if _, err := conn.Next(); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
		}
	}
	for i := 0; i < n/10+100; i++ { // warm up
		if err := one(); err != nil {
			return err
		}
	}
	u0, s0, err := cpuSeconds(proc.PID())
	if err != nil {
		return err
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := one(); err != nil {
			return err
		}
	}
	wall := time.Since(start)
	u1, s1, err := cpuSeconds(proc.PID())
	if err != nil {
		return err
	}
	us := func(sec float64) float64 { return sec / float64(n) * 1e6 }
	fmt.Printf("worker CPU per request: %.1f us (user %.1f, system %.1f; %d requests, one connection, one thread)\n",
		us(u1-u0+s1-s0), us(u1-u0), us(s1-s0), n)
	fmt.Printf("round trips: %.0f/s sequential (%.1f us each, driver included)\n", float64(n)/wall.Seconds(), float64(wall.Microseconds())/float64(n))
	fmt.Printf("python: %s; go: %s\n", pythonVersion(python), runtime.Version())
	return nil
}

// cpuSeconds is utime and stime of pid from /proc/PID/stat.
func cpuSeconds(pid int) (user, system float64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return ut / 100, st / 100, nil // USER_HZ is 100 on Linux
}

func pythonVersion(python string) string {
	out, err := exec.Command(python, "--version").Output()
	if err != nil {
		return python + " (version unknown)"
	}
	return strings.TrimSpace(string(out))
}
