package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// basicApp serves the routes most tests use. It is wrapped in
// wsgiref.validate.
const basicApp = `
import hashlib, os, sys, threading, time

released = threading.Event()

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/pid":
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/echo-hash":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        h = hashlib.sha256()
        left = n
        while left > 0:
            chunk = environ["wsgi.input"].read(min(left, 65536))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
        body = ("%d %s" % (n - left, h.hexdigest())).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/stream":
        # The second chunk is only produced once /release was called, so
        # a client that sees the first chunk before calling /release proves
        # the response is not buffered anywhere.
        start_response("200 OK", [("Content-Type", "text/plain")])
        def gen():
            yield b"first\n"
            if not released.wait(20):
                yield b"timeout\n"
                return
            yield b"second\n"
        return gen()
    if path == "/release":
        released.set()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    if path == "/slow":
        print("slow request started", flush=True)
        time.sleep(1)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        return [b"done"]
    body = b"hello world"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`

func TestGet(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(basicApp)})
	s := startServe(t, dir, "--processes", "2", "--threads", "4", "wsgi.py")
	code, body := get(t, s.URL+"/")
	if code != 200 || body != "hello world" {
		t.Fatalf("GET / = %d %q, want 200 %q", code, body, "hello world")
	}
}

func TestModuleCallableTarget(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{
		"myproject/__init__.py": "",
		"myproject/wsgi.py":     validated(basicApp),
	})
	s := startServe(t, dir, "myproject.wsgi:application")
	if code, body := get(t, s.URL+"/"); code != 200 || body != "hello world" {
		t.Fatalf("GET / = %d %q", code, body)
	}
	if st := s.status(); len(st) != 1 || st[0].Name != "myproject.wsgi" {
		t.Fatalf("status names the app %+v, want myproject.wsgi", st)
	}
}

func TestPostBodyEchoedByHash(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(basicApp)})
	s := startServe(t, dir, "wsgi.py")
	for _, size := range []int{0, 100, 64 << 10, 1 << 20} {
		body := make([]byte, size)
		rand.Read(body)
		sum := sha256.Sum256(body)
		want := strconv.Itoa(size) + " " + hex.EncodeToString(sum[:])

		resp, err := http.Post(s.URL+"/echo-hash", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != want {
			t.Fatalf("POST %d bytes: %d %q, want %q", size, resp.StatusCode, got, want)
		}
	}
}

func TestStreamingResponse(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(basicApp)})
	s := startServe(t, dir, "--threads", "4", "wsgi.py")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.TransferEncoding == nil || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("transfer encoding %v, want chunked for a response without Content-Length", resp.TransferEncoding)
	}
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first chunk %q, %v", line, err)
	}
	// Only now does the app produce the rest.
	if code, _ := get(t, s.URL+"/release"); code != 200 {
		t.Fatalf("release: %d", code)
	}
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("rest %q, %v", rest, err)
	}
}

func TestKeepAliveReusesConnection(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(basicApp)})
	s := startServe(t, dir, "wsgi.py")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	reused := 0
	for i := 0; i < 20; i++ {
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			if info.Reused {
				reused++
			}
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", s.URL+"/", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	if reused != 19 {
		t.Fatalf("%d of 19 follow-up requests reused the connection", reused)
	}
}

func TestWorkerKilledIsReplaced(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(basicApp)})
	s := startServe(t, dir, "--processes", "1", "wsgi.py")
	_, pidText := get(t, s.URL+"/pid")
	old, _ := strconv.Atoi(pidText)
	if pids := s.workerPIDs(); len(pids) != 1 || pids[0] != old {
		t.Fatalf("status shows workers %v, the app says it is %d", pids, old)
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var newPID int
	eventually(t, 2*time.Second, "a new worker serves", func() bool {
		resp, err := http.Get(s.URL + "/pid")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		newPID, _ = strconv.Atoi(string(b))
		return resp.StatusCode == 200 && newPID != old && newPID != 0
	})
	t.Logf("replaced in %v", time.Since(killed).Round(time.Millisecond))
	if pids := s.workerPIDs(); len(pids) != 1 || pids[0] != newPID {
		t.Fatalf("status shows workers %v, want the new pid %d", pids, newPID)
	}
	s.waitLine(regexp.MustCompile(`worker died.*killed by signal 9`), 5*time.Second)
}

func TestImportErrorIsReported(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": "import sys\n\ndef helper():\n    raise RuntimeError('broken at import')\n\nhelper()\n"})
	s := launch(t, dir, serveArgs("wsgi.py")...)
	err := s.waitExit(30 * time.Second)
	if err == nil {
		t.Fatalf("pyhostd exited 0 for an app that cannot import")
	}
	out := s.out.String()
	for _, want := range []string{"Traceback (most recent call last)", "RuntimeError: broken at import", "in helper"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^pyhostd: .*RuntimeError: broken at import$`).MatchString(out) {
		t.Errorf("no one-line error naming the failure:\n%s", out)
	}
	if left := descendants(s.cmd.Process.Pid); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
}

func TestSigtermFinishesInFlightRequest(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(basicApp)})
	s := startServe(t, dir, "wsgi.py")
	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(s.URL + "/slow")
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{resp.StatusCode, string(b), err}
	}()
	s.waitLine(regexp.MustCompile(`slow request started`), 10*time.Second)
	pids := append(descendants(s.cmd.Process.Pid), s.cmd.Process.Pid)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.code != 200 || r.body != "done" {
		t.Fatalf("in-flight request: %d %q %v, want 200 done", r.code, r.body, r.err)
	}
	if err := s.waitExit(20 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v, want status 0", err)
	}
	for _, p := range pids {
		if alive(p) {
			t.Errorf("pid %d outlived the daemon", p)
		}
	}
}

func TestMasterKill9LeavesNoOrphan(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(basicApp)})
	s := startServe(t, dir, "--processes", "2", "wsgi.py")
	kids := descendants(s.cmd.Process.Pid)
	if len(kids) < 3 {
		t.Fatalf("expected a proxy and 2 workers under the master, found %v", kids)
	}
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "every descendant of the killed master exits", func() bool {
		for _, p := range kids {
			if alive(p) {
				return false
			}
		}
		return true
	})
}

func TestBadInvocations(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{
		"nocallable.py": "x = 1\n",
		"wsgi.py":       validated(basicApp),
	})
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	// A directory the proxy's user cannot write in (as root: cannot even
	// enter, so the master's check speaks; otherwise creating it fails).
	locked := filepath.Join(t.TempDir(), "locked")
	if err := os.Mkdir(locked, 0o500); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
		code int
	}{
		{"missing file", serveArgs("missing.py"), "missing.py does not exist", 1},
		{"no callable", serveArgs("nocallable.py"), "defines no WSGI callable named application or app", 1},
		{"unknown flag", serveArgs("--frobnicate", "wsgi.py"), "unknown flag: --frobnicate", 2},
		{"port in use", append(serveArgs("wsgi.py"), "--listen", busy.Addr().String()), "address already in use", 1},
		{"no target", serveArgs(), "serve takes one TARGET", 2},
		{"unwritable access log", serveArgs("--access-log", filepath.Join(locked, "access.log"), "wsgi.py"), "access log", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(filepath.Join(binDir, "pyhostd"), c.args...)
			cmd.Dir = dir
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("pyhostd %v still running after 30s", c.args)
			}
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != c.code {
				t.Fatalf("exit %v, want status %d; stderr:\n%s", err, c.code, stderr.String())
			}
			last := lastLine(stderr.String())
			if !strings.HasPrefix(last, "pyhostd: ") || !strings.Contains(last, c.want) {
				t.Fatalf("last stderr line %q, want a pyhostd: line containing %q", last, c.want)
			}
			if left := descendants(cmd.Process.Pid); len(left) > 0 {
				t.Errorf("processes left behind: %v", left)
			}
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
