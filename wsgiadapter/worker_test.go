package wsgiadapter

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testApp is the WSGI app the real worker serves in these tests. Each
// path exercises one part of the worker.
const testApp = `
import hashlib
import json
import threading

_lock = threading.Lock()
_closed = []


class Closing(object):
    """A response iterable whose close() the worker must call."""

    def __init__(self, tag, chunks, fail=False):
        self.tag = tag
        self.chunks = chunks
        self.fail = fail

    def __iter__(self):
        for c in self.chunks:
            yield c
        if self.fail:
            raise RuntimeError("boom in iterable " + self.tag)

    def close(self):
        with _lock:
            _closed.append(self.tag)


def _reply(start_response, body, ctype="text/plain", status="200 OK"):
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def _json(start_response, obj):
    return _reply(start_response, json.dumps(obj, sort_keys=True).encode("utf-8"), "application/json")


def _describe(v):
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, int, tuple)):
        return repr(v)
    return "<%s>" % type(v).__name__


def _lines(inp, mode):
    if mode in ("readline", "readline5"):
        size = 5 if mode == "readline5" else -1
        out = []
        while True:
            line = inp.readline(size)
            if not line:
                return out
            out.append(line)
    if mode == "readlines":
        return inp.readlines()
    if mode == "iter":
        return [line for line in inp]
    if mode == "mixed":
        out = [inp.read(3), inp.readline()]
        out.extend(inp.readlines())
        out.append(inp.read())
        return out
    raise ValueError("unknown mode %r" % mode)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    qs = environ.get("QUERY_STRING", "")
    if path == "/hello":
        return _reply(start_response, b"hello, world\n")
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"")
        return [b"and returned"]
    if path == "/hop":
        start_response("200 OK", [("Connection", "close"), ("X-Kept", "yes"), ("Transfer-Encoding", "chunked")])
        return [b"hop"]
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [b"x" * int(qs)]
    if path == "/environ":
        return _json(start_response, dict((k, _describe(v)) for k, v in environ.items()))
    if path == "/hash":
        inp = environ["wsgi.input"]
        h = hashlib.sha256()
        n = 0
        while True:
            chunk = inp.read(65536)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        return _json(start_response, {
            "sha256": h.hexdigest(),
            "length": n,
            "terminated": environ["wsgi.input_terminated"],
            "content_length": environ.get("CONTENT_LENGTH"),
        })
    if path == "/lines":
        lines = _lines(environ["wsgi.input"], qs)
        return _json(start_response, [line.decode("latin-1") for line in lines])
    if path == "/raise-early":
        raise RuntimeError("boom before start_response")
    if path == "/raise-mid":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            yield b"partial"
            raise RuntimeError("boom mid-body")
        return gen()
    if path == "/close":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing(qs, [b"a", b"b"])
    if path == "/close-raise":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing(qs, [b"a"], fail=True)
    if path == "/closed":
        with _lock:
            return _json(start_response, list(_closed))
    if path == "/head":
        headers = []
        if "TEST_NAME" in environ:
            headers.append((environ["TEST_NAME"], "v"))
        start_response(environ["TEST_STATUS"], headers)
        return [b"x"]
    return _reply(start_response, b"not found\n", status="404 Not Found")
`

// syncBuffer collects a worker's output; waitFor waits for a line.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.NewTimer(testDeadline)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		if strings.Contains(b.buf.String(), s) {
			b.mu.Unlock()
			return
		}
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("worker output never contained %q", s)
		}
	}
}

// pyWorker is one real pyhost_worker.py process.
type pyWorker struct {
	sock   string
	cmd    *exec.Cmd
	out    *syncBuffer
	status chan map[string]any // events from the status pipe (fd 4)
	exited chan struct{}       // closed once cmd.Wait returned
}

func findPython(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found: the real worker cannot be tested")
	}
	return p
}

// startPyWorker starts the embedded worker script on app the way the
// package workerproc does: the listening socket as fd 3, the status pipe as
// fd 4. It does not wait for readiness.
func startPyWorker(t *testing.T, app string) *pyWorker {
	t.Helper()
	python := findPython(t)
	dir := shortTempDir(t)
	if err := os.WriteFile(dir+"/app.py", []byte(app), 0o644); err != nil {
		t.Fatal(err)
	}
	script := dir + "/pyhost_worker.py"
	if err := os.WriteFile(script, WorkerScript, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := dir + "/w.sock"
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	lf, err := ln.File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer statusW.Close()

	cmd := exec.Command(python, "-u", script, "--script", "app.py", "--threads", "2", "--directory", dir)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = []*os.File{lf, statusW} // fds 3 and 4
	if err := cmd.Start(); err != nil {
		statusR.Close()
		t.Fatalf("start worker: %v", err)
	}
	w := &pyWorker{sock: sock, cmd: cmd, out: out, status: make(chan map[string]any, 8), exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(w.exited)
	}()
	go func() {
		defer close(w.status)
		defer statusR.Close()
		sc := bufio.NewScanner(statusR)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"event": "unparsable", "line": sc.Text()}
			}
			w.status <- m
		}
	}()
	t.Cleanup(func() {
		select {
		case <-w.exited:
		default:
			cmd.Process.Kill()
			select {
			case <-w.exited:
			case <-time.After(testDeadline):
				t.Errorf("worker %d did not exit after SIGKILL", cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("worker output:\n%s", out.String())
		}
	})
	return w
}

// nextEvent returns the next status pipe event, nil when the pipe closed.
func (w *pyWorker) nextEvent(t *testing.T) map[string]any {
	t.Helper()
	select {
	case m := <-w.status:
		return m
	case <-time.After(testDeadline):
		t.Fatalf("no status event within %v", testDeadline)
		return nil
	}
}

// startReady starts a worker on testApp and waits for its ready event.
func startReady(t *testing.T) *pyWorker {
	t.Helper()
	w := startPyWorker(t, testApp)
	ev := w.nextEvent(t)
	if ev == nil || ev["event"] != "ready" {
		<-w.exited
		t.Fatalf("first status event = %v, want ready", ev)
	}
	if pid, _ := ev["pid"].(float64); int(pid) != w.cmd.Process.Pid {
		t.Errorf("ready pid = %v, want %d", ev["pid"], w.cmd.Process.Pid)
	}
	return w
}

func (w *pyWorker) assertRunning(t *testing.T) {
	t.Helper()
	select {
	case <-w.exited:
		t.Fatalf("worker exited: %v", w.cmd.ProcessState)
	default:
	}
}

func (w *pyWorker) waitExit(t *testing.T) int {
	t.Helper()
	select {
	case <-w.exited:
		return w.cmd.ProcessState.ExitCode()
	case <-time.After(testDeadline):
		t.Fatalf("worker did not exit within %v", testDeadline)
		return -1
	}
}

// wsgiEnv is the CGI environ the proxy would send for a request.
func wsgiEnv(method, path, query string, extra ...string) Environ {
	env := Environ{
		"REQUEST_METHOD", method, "SCRIPT_NAME", "", "PATH_INFO", path, "QUERY_STRING", query,
		"SERVER_NAME", "test.example", "SERVER_PORT", "80", "SERVER_PROTOCOL", "HTTP/1.1",
	}
	return append(env, extra...)
}

func do(t *testing.T, c *Conn, env Environ, body io.Reader, size int64) (Head, []byte, error) {
	t.Helper()
	if err := c.Send(env, body, size); err != nil {
		t.Fatalf("Send: %v", err)
	}
	return readAll(c)
}

func get(t *testing.T, c *Conn, path, query string) (Head, []byte, error) {
	t.Helper()
	return do(t, c, wsgiEnv("GET", path, query), nil, 0)
}

func mustHello(t *testing.T, c *Conn) {
	t.Helper()
	head, body, err := get(t, c, "/hello", "")
	if err != nil || head.Status != 200 || string(body) != "hello, world\n" {
		t.Fatalf("GET /hello = %d %q, %v", head.Status, body, err)
	}
	if !c.Reusable() {
		t.Fatalf("connection not reusable after GET /hello")
	}
}

func latin1(s string) string {
	r := make([]rune, len(s))
	for i := 0; i < len(s); i++ {
		r[i] = rune(s[i])
	}
	return string(r)
}

func TestWorkerGet(t *testing.T) {
	w := startReady(t)
	c := dialFake(t, w.sock)
	if c.PID() != w.cmd.Process.Pid {
		t.Errorf("PID() = %d, want %d", c.PID(), w.cmd.Process.Pid)
	}
	if c.threads != 2 {
		t.Errorf("threads = %d, want 2", c.threads)
	}
	tests := []struct {
		path, query string
		status      int
		headers     []Header
		body        string
	}{
		{"/hello", "", 200, []Header{{"Content-Type", "text/plain"}, {"Content-Length", "13"}}, "hello, world\n"},
		{"/write", "", 200, []Header{{"Content-Type", "text/plain"}}, "written and returned"},
		{"/hop", "", 200, []Header{{"X-Kept", "yes"}}, "hop"},
		{"/missing", "", 404, []Header{{"Content-Type", "text/plain"}, {"Content-Length", "10"}}, "not found\n"},
		{"/big", "0", 200, []Header{{"Content-Type", "application/octet-stream"}}, ""},
	}
	for _, tt := range tests {
		head, body, err := get(t, c, tt.path, tt.query)
		if err != nil {
			t.Fatalf("GET %s: %v", tt.path, err)
		}
		if head.Status != tt.status || fmt.Sprint(head.Headers) != fmt.Sprint(tt.headers) || string(body) != tt.body {
			t.Errorf("GET %s = %d %v %q, want %d %v %q", tt.path, head.Status, head.Headers, body, tt.status, tt.headers, tt.body)
		}
		if !c.Reusable() {
			t.Fatalf("GET %s: connection not reusable", tt.path)
		}
	}

	// A large response leaves in BODY frames of at most MaxBodyFrame.
	const n = 3<<20 + 5
	if err := c.Send(wsgiEnv("GET", "/big", strconv.Itoa(n)), nil, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadHead(); err != nil {
		t.Fatal(err)
	}
	total := 0
	for {
		chunk, err := c.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(chunk) > MaxBodyFrame {
			t.Errorf("BODY frame of %d bytes exceeds MaxBodyFrame", len(chunk))
		}
		if bytes.IndexFunc(chunk, func(r rune) bool { return r != 'x' }) >= 0 {
			t.Fatalf("unexpected bytes in the body")
		}
		total += len(chunk)
	}
	if total != n {
		t.Errorf("body is %d bytes, want %d", total, n)
	}

	// Both threads serve at once: a second connection while the first
	// one idles.
	c2 := dialFake(t, w.sock)
	mustHello(t, c2)
	mustHello(t, c)
}

func TestWorkerEnviron(t *testing.T) {
	w := startReady(t)
	c := dialFake(t, w.sock)
	env := wsgiEnv("GET", "/environ", "a=1&b=%20",
		"HTTP_X_LATIN1", "caf\xe9 \xff",
		"HTTP_COOKIE", "a=b; c=d",
		"EMPTY", "",
		"HTTP_X_SPACES", " padded ",
		"REMOTE_ADDR", "192.0.2.1",
		"wsgi.url_scheme", "https",
	)
	head, body, err := do(t, c, env, nil, 0)
	if err != nil || head.Status != 200 {
		t.Fatalf("GET /environ = %d, %v", head.Status, err)
	}
	var got map[string]string
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("app answered %q: %v", body, err)
	}
	want := map[string]string{
		"wsgi.version":          "(1, 0)",
		"wsgi.multithread":      "True",
		"wsgi.multiprocess":     "True",
		"wsgi.run_once":         "False",
		"wsgi.input_terminated": "True",
		"wsgi.input":            "<BytesIO>",
	}
	for i := 0; i < len(env); i += 2 {
		want[env[i]] = latin1(env[i+1]) // the app decodes the block as latin-1
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("environ[%q] = %q (present %v), want %q", k, g, ok, v)
		}
	}
	for _, k := range []string{"wsgi.errors", "wsgi.file_wrapper"} {
		if _, ok := got[k]; !ok {
			t.Errorf("environ lacks %s", k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && k != "wsgi.errors" && k != "wsgi.file_wrapper" {
			t.Errorf("unexpected environ key %q = %q", k, got[k])
		}
	}
}

func TestWorkerStreamedBody(t *testing.T) {
	w := startReady(t)
	c := dialFake(t, w.sock)
	data := randomBytes(3<<20, 99)
	sum := sha256.Sum256(data)
	small := data[:1000]
	smallSum := sha256.Sum256(small)
	tests := []struct {
		name       string
		body       io.Reader
		size       int64
		sum        [32]byte
		length     int
		terminated bool
	}{
		{"3 MiB known size", bytes.NewReader(data), int64(len(data)), sum, len(data), false},
		{"3 MiB unknown size", bytes.NewReader(data), -1, sum, len(data), true},
		{"3 MiB in odd frames", chunkReader{bytes.NewReader(data), 7777}, int64(len(data)), sum, len(data), false},
		{"inline", bytes.NewReader(small), int64(len(small)), smallSum, len(small), true},
		{"empty streamed", bytes.NewReader(nil), -1, sha256.Sum256(nil), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var extra []string
			if tt.size >= 0 {
				extra = []string{"CONTENT_LENGTH", strconv.FormatInt(tt.size, 10)}
			}
			head, body, err := do(t, c, wsgiEnv("POST", "/hash", "", extra...), tt.body, tt.size)
			if err != nil || head.Status != 200 {
				t.Fatalf("POST /hash = %d %q, %v", head.Status, body, err)
			}
			var got struct {
				SHA256     string `json:"sha256"`
				Length     int    `json:"length"`
				Terminated bool   `json:"terminated"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("app answered %q: %v", body, err)
			}
			if got.Length != tt.length || got.SHA256 != hex.EncodeToString(tt.sum[:]) {
				t.Errorf("app read %d bytes with sha256 %s, want %d bytes", got.Length, got.SHA256, tt.length)
			}
			if got.Terminated != tt.terminated {
				t.Errorf("wsgi.input_terminated = %v, want %v", got.Terminated, tt.terminated)
			}
			if !c.Reusable() {
				t.Fatalf("connection not reusable after a body the app read whole")
			}
		})
	}
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := strings.IndexByte(s, '\n') + 1
		if i == 0 {
			i = len(s)
		}
		out = append(out, s[:i])
		s = s[i:]
	}
	return out
}

func TestWorkerInputLines(t *testing.T) {
	short := "first line\nsecond\n\n\r\nlast-no-newline \xe9"
	long := "head\n" + strings.Repeat("x", 150_000) + "\n\ntail"
	expect := func(body, mode string) []string {
		switch mode {
		case "readline", "readlines", "iter":
			return splitLines(body)
		case "readline5":
			var out []string
			for _, l := range splitLines(body) {
				for len(l) > 5 {
					out = append(out, l[:5])
					l = l[5:]
				}
				out = append(out, l)
			}
			return out
		case "mixed":
			rest := body[3:]
			first := splitLines(rest)[0]
			return append(append([]string{body[:3], first}, splitLines(rest[len(first):])...), "")
		}
		panic(mode)
	}
	bodies := []struct {
		name string
		body string
		read func(string) io.Reader
		size func(string) int64
	}{
		{"inline", short, func(s string) io.Reader { return strings.NewReader(s) }, func(s string) int64 { return int64(len(s)) }},
		{"streamed one byte per frame", short, func(s string) io.Reader { return chunkReader{strings.NewReader(s), 1} }, func(string) int64 { return -1 }},
		{"streamed long line", long, func(s string) io.Reader { return chunkReader{strings.NewReader(s), 4093} }, func(s string) int64 { return int64(len(s)) }},
	}
	w := startReady(t)
	c := dialFake(t, w.sock)
	for _, b := range bodies {
		for _, mode := range []string{"readline", "readline5", "readlines", "iter", "mixed"} {
			t.Run(b.name+"/"+mode, func(t *testing.T) {
				head, body, err := do(t, c, wsgiEnv("POST", "/lines", mode), b.read(b.body), b.size(b.body))
				if err != nil || head.Status != 200 {
					t.Fatalf("POST /lines?%s = %d %q, %v", mode, head.Status, truncate(body), err)
				}
				var got []string
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatalf("app answered %q: %v", truncate(body), err)
				}
				want := expect(b.body, mode)
				for i := range want {
					want[i] = latin1(want[i])
				}
				if !slices.Equal(got, want) {
					t.Errorf("lines = %d %.200q\nwant   %d %.200q", len(got), got, len(want), want)
				}
				if !c.Reusable() {
					t.Fatalf("connection not reusable")
				}
			})
		}
	}
}

func TestWorkerAppErrors(t *testing.T) {
	w := startReady(t)
	c := dialFake(t, w.sock)

	// Raising before start_response: the worker answers 500 itself and
	// logs the traceback; the connection stays usable.
	head, body, err := get(t, c, "/raise-early", "")
	if err != nil || head.Status != 500 || string(body) != "Internal Server Error\n" {
		t.Fatalf("GET /raise-early = %d %q, %v; want the worker's 500", head.Status, body, err)
	}
	w.out.waitFor(t, "RuntimeError: boom before start_response")
	if !c.Reusable() {
		t.Fatalf("connection not reusable after a 500")
	}
	mustHello(t, c)

	// The same with a streamed body the app never read.
	head, _, err = do(t, c, wsgiEnv("POST", "/raise-early", ""), bytes.NewReader(make([]byte, 100_000)), -1)
	if err != nil || head.Status != 500 {
		t.Fatalf("POST /raise-early = %d, %v", head.Status, err)
	}
	mustHello(t, c)

	// Raising mid-body: the response is broken (END 1), but the
	// connection is clean for the next request.
	if err := c.Send(wsgiEnv("GET", "/raise-mid", ""), nil, 0); err != nil {
		t.Fatal(err)
	}
	head, err = c.ReadHead()
	if err != nil || head.Status != 200 {
		t.Fatalf("ReadHead = %d, %v", head.Status, err)
	}
	if chunk, err := c.Next(); err != nil || string(chunk) != "partial" {
		t.Fatalf("Next = %q, %v; want %q", chunk, err, "partial")
	}
	if _, err := c.Next(); !errors.Is(err, ErrAppFailed) {
		t.Fatalf("Next = %v, want ErrAppFailed", err)
	}
	w.out.waitFor(t, "RuntimeError: boom mid-body")
	mustHello(t, c)
}

func TestWorkerCallsClose(t *testing.T) {
	w := startReady(t)
	c := dialFake(t, w.sock)
	closed := func() []string {
		t.Helper()
		_, body, err := get(t, c, "/closed", "")
		if err != nil {
			t.Fatal(err)
		}
		var tags []string
		if err := json.Unmarshal(body, &tags); err != nil {
			t.Fatalf("app answered %q: %v", body, err)
		}
		return tags
	}
	if _, body, err := get(t, c, "/close", "one"); err != nil || string(body) != "ab" {
		t.Fatalf("GET /close = %q, %v", body, err)
	}
	// The same connection is served by the same thread, so close() ran
	// before this request was read.
	if got := closed(); !slices.Equal(got, []string{"one"}) {
		t.Fatalf("closed = %q, want [one]", got)
	}
	if _, body, err := get(t, c, "/close-raise", "two"); !errors.Is(err, ErrAppFailed) || string(body) != "a" {
		t.Fatalf("GET /close-raise = %q, %v; want %q and ErrAppFailed", body, err, "a")
	}
	if got := closed(); !slices.Equal(got, []string{"one", "two"}) {
		t.Fatalf("closed = %q, want [one two]: close() must be called when the iterable raised too", got)
	}
}

func TestWorkerUnreadBody(t *testing.T) {
	w := startReady(t)

	// Up to 1 MiB of unread body is discarded and the connection kept.
	c := dialFake(t, w.sock)
	if _, body, err := do(t, c, wsgiEnv("POST", "/hello", ""), bytes.NewReader(make([]byte, 100_000)), -1); err != nil || string(body) != "hello, world\n" {
		t.Fatalf("POST /hello = %q, %v", body, err)
	}
	if !c.Reusable() {
		t.Fatalf("connection not reusable after a small unread body")
	}
	mustHello(t, c)

	// More than that and the worker closes the connection instead.
	c2 := dialFake(t, w.sock)
	size := int64(3 << 20)
	if _, body, err := do(t, c2, wsgiEnv("POST", "/hello", "", "CONTENT_LENGTH", strconv.FormatInt(size, 10)), bytes.NewReader(make([]byte, size)), size); err != nil || string(body) != "hello, world\n" {
		t.Fatalf("POST /hello = %q, %v", body, err)
	}
	if c2.Reusable() {
		t.Errorf("connection reusable although the worker closed it after draining 1 MiB")
	}
	mustHello(t, dialFake(t, w.sock))
}

// TestWorkerMalformed sends malformed input on raw connections: the
// worker must close each one without answering the bad request, and keep
// serving new connections.
func TestWorkerMalformed(t *testing.T) {
	hello := AppendFrame(nil, FrameHello, []byte("versions=1"))
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	frame := func(typ byte, p string) []byte { return AppendFrame(nil, typ, []byte(p)) }
	envBlock, _ := AppendEnviron(nil, wsgiEnv("GET", "/hello", ""))
	request := func(flags byte, env []byte, rest string) []byte {
		return AppendFrame(nil, FrameRequest, requestPayload(flags, uint32(len(env)), string(env)+rest))
	}
	streamed := func(path string) []byte {
		b, err := AppendRequest(nil, wsgiEnv("POST", path, ""), true, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	getReq, err := AppendRequest(nil, wsgiEnv("GET", "/hello", ""), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	helloOnly := []byte{FrameHello}
	answered := []byte{FrameHello, FrameHeaders, FrameBody, FrameEnd}

	tests := []struct {
		name       string
		send       []byte
		halfClose  bool   // end our sending side after send
		want       []byte // frame types the worker may send before closing
		wantHello  string // the HELLO answer, when not the normal one
		regression string // the fixed bug this case guards against
	}{
		{name: "REQUEST before HELLO", send: getReq},
		{name: "BODY before HELLO", send: frame(FrameBody, "x")},
		{name: "HTTP instead of frames", send: []byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")},
		{name: "oversized first frame", send: frameHeader(FrameHello, MaxPayload+1)},
		{name: "HELLO not ASCII", send: frame(FrameHello, "versions=1 \xff")},
		{name: "no common version", send: frame(FrameHello, "versions=2,3"), want: helloOnly, wantHello: "version=0"},
		{name: "truncated header then close", send: cat(hello, []byte{FrameRequest, 0, 0}), halfClose: true, want: helloOnly},
		{name: "truncated payload then close", send: cat(hello, frameHeader(FrameRequest, 100), make([]byte, 10)), halfClose: true, want: helloOnly},
		{name: "oversized REQUEST", send: cat(hello, frameHeader(FrameRequest, MaxPayload+1)), want: helloOnly},
		{name: "length 0xffffffff", send: cat(hello, frameHeader(FrameRequest, 0xffffffff)), want: helloOnly},
		{name: "REQUEST too short", send: cat(hello, frame(FrameRequest, "\x00\x00")), want: helloOnly},
		{name: "reserved flag 0x02", send: cat(hello, request(0x02, envBlock, "")), want: helloOnly},
		{name: "reserved flag 0x80 with streamed", send: cat(hello, request(0x81, envBlock, "")), want: helloOnly},
		{name: "environ with odd field count", send: cat(hello, frame(FrameRequest, string(requestPayload(0, 5, "A\x00B\x00C")))), want: helloOnly},
		{name: "environ length beyond frame", send: cat(hello, frame(FrameRequest, string(requestPayload(0, 100, "A\x00B")))), want: helloOnly},
		{name: "second HELLO", send: cat(hello, hello), want: helloOnly},
		{name: "BODY instead of REQUEST", send: cat(hello, frame(FrameBody, "x")), want: helloOnly},
		{name: "HEADERS from the proxy", send: cat(hello, frame(FrameHeaders, "200 OK")), want: helloOnly},
		{name: "unknown frame type", send: cat(hello, frame(0x09, "x")), want: helloOnly},
		{name: "frame type 0", send: cat(hello, frame(0x00, "")), want: helloOnly},
		{name: "garbage after HELLO", send: cat(hello, []byte("\xde\xad\xbe\xef garbage that is no frame")), want: helloOnly},
		{name: "streamed body cut off", send: cat(hello, streamed("/hash"), frame(FrameBody, "abc")), halfClose: true, want: helloOnly},
		{name: "bad frame in a body the app ignores", send: cat(hello, streamed("/hello"), getReq), want: answered},
		{name: "oversized frame in a body the app ignores", send: cat(hello, streamed("/hello"), frameHeader(FrameBody, MaxPayload+1)), want: answered},
		{
			name: "bad frame in a body the app reads", send: cat(hello, streamed("/hash"), frame(FrameHeaders, "x"), frame(FrameBody, "")), want: helloOnly,
			regression: "StreamedInput raises ProtocolError into the app; run_app catches it as an app exception (logs a bogus app traceback, " +
				"answers 500), drain() then reads on and the worker keeps serving the desynchronized connection",
		},
		{
			name: "oversized frame in a body the app reads", send: cat(hello, streamed("/hash"), frameHeader(FrameBody, MaxPayload+1)), want: helloOnly,
			regression: "a ProtocolError raised by wsgi.input.read() is turned into a 500 response instead of closing the connection",
		},
		{
			name: "streamed flag with an inline body", send: cat(hello, request(FlagStreamed, envBlock, "inline")), want: helloOnly,
			regression: "Worker.handle ignores inline bytes in a streamed REQUEST, which ParseRequest refuses as a protocol error",
		},
	}
	w := startReady(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := net.Dial("unix", w.sock)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(testDeadline))
			// The worker may close before it read everything: write errors
			// are expected and not the point.
			nc.Write(tt.send)
			if tt.halfClose {
				nc.(*net.UnixConn).CloseWrite()
			}
			r := bufio.NewReader(nc)
			for i := 0; ; i++ {
				typ, p, err := ReadFrame(r, nil)
				if err != nil {
					if errors.Is(err, os.ErrDeadlineExceeded) {
						t.Fatalf("the worker neither answered nor closed the connection: %v", err)
					}
					if err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
						t.Fatalf("read: %v, want the worker to close the connection", err)
					}
					if i != len(tt.want) {
						t.Fatalf("worker closed after %d frames, want %d", i, len(tt.want))
					}
					break
				}
				if i >= len(tt.want) || typ != tt.want[i] {
					t.Fatalf("frame %d from the worker is type %#x %q; want only %v before the worker closes", i, typ, truncate(p), tt.want)
				}
				if typ == FrameHello && tt.wantHello != "" && string(p) != tt.wantHello {
					t.Errorf("HELLO answer %q, want %q", p, tt.wantHello)
				}
			}
			mustHello(t, dialFake(t, w.sock))
		})
	}
	w.assertRunning(t)
	if out := w.out.String(); strings.Contains(out, "internal error") {
		t.Errorf("the worker hit an internal error on malformed input:\n%s", out)
	}
}

// TestWorkerHeaderMismatch: heads an app hands to start_response that
// ParseHead refuses. The app is at fault, so the worker must answer 500
// (and log why) rather than send a HEADERS frame the proxy has to treat as
// a protocol error, which costs the connection and hides the cause.
func TestWorkerHeaderMismatch(t *testing.T) {
	const statusRegression = "Worker._encode_head checked the status with str.isdigit(), which accepted codes below 100 " +
		"and non-ASCII digits such as '\u00b2\u00b3\u00b9' (latin-1 encodable), which ParseHead refuses as a protocol error"
	tests := []struct {
		name       string
		status     string
		header     string // "-" for no header
		regression string
	}{
		{name: "space in name", status: "200 OK", header: "Bad Name"},
		{name: "colon in name", status: "200 OK", header: "X:y"},
		{name: "separator in name", status: "200 OK", header: "X(y)"},
		{name: "latin-1 name", status: "200 OK", header: "X-\xe9"},
		{name: "status without reason", status: "200", header: "-"},
		{name: "status with letters", status: "2x0 OK", header: "-"},
		{name: "empty name", status: "200 OK", header: "",
			regression: "Worker._encode_head accepts an empty header name: _BAD_NAME.search runs on the joined names, where an empty name leaves no trace"},
		{name: "status below 100", status: "099 Low", header: "-", regression: statusRegression},
		{name: "status 000", status: "000 Zero", header: "-", regression: statusRegression},
		{name: "superscript digits", status: "\xb2\xb3\xb9 Odd", header: "-", regression: statusRegression},
	}
	w := startReady(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialFake(t, w.sock)
			extra := []string{"TEST_STATUS", tt.status}
			if tt.header != "-" {
				extra = append(extra, "TEST_NAME", tt.header)
			}
			head, _, err := do(t, c, wsgiEnv("GET", "/head", "", extra...), nil, 0)
			if err != nil {
				t.Fatalf("response: %v (want the worker's 500)", err)
			}
			if head.Status != 500 {
				t.Fatalf("status %d, want 500", head.Status)
			}
			mustHello(t, c)
		})
	}
}

func TestWorkerImportError(t *testing.T) {
	tests := []struct {
		name string
		app  string
		want string // in the error and the traceback
	}{
		{"missing module", "import pyhost_no_such_module_xyz\n", "ModuleNotFoundError"},
		{"raises at import", "x = 1 / 0\n", "ZeroDivisionError"},
		{"no callable", "handler = None\n", "LookupError"},
		{"syntax error", "def application(:\n", "SyntaxError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startPyWorker(t, tt.app)
			ev := w.nextEvent(t)
			if ev == nil || ev["event"] != "import_error" {
				t.Fatalf("first status event = %v, want import_error", ev)
			}
			if pid, _ := ev["pid"].(float64); int(pid) != w.cmd.Process.Pid {
				t.Errorf("pid = %v, want %d", ev["pid"], w.cmd.Process.Pid)
			}
			msg, _ := ev["error"].(string)
			tb, _ := ev["traceback"].(string)
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error = %q, want it to name %s", msg, tt.want)
			}
			if !strings.Contains(tb, "Traceback (most recent call last)") || !strings.Contains(tb, tt.want) {
				t.Errorf("traceback = %q", tb)
			}
			if code := w.waitExit(t); code != 3 {
				t.Errorf("exit status %d, want 3", code)
			}
			if ev := w.nextEvent(t); ev != nil {
				t.Errorf("event after import_error: %v", ev)
			}
		})
	}
}

func TestWorkerSIGTERM(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, w *pyWorker)
	}{
		{"never used", func(*testing.T, *pyWorker) {}},
		{"idle connection open", func(t *testing.T, w *pyWorker) {
			mustHello(t, dialFake(t, w.sock)) // stays open, idle, until cleanup
		}},
		{"connected before HELLO", func(t *testing.T, w *pyWorker) {
			nc, err := net.Dial("unix", w.sock)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nc.Close() })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startReady(t)
			tt.setup(t, w)
			if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code := w.waitExit(t); code != 0 {
				t.Fatalf("exit status %d after SIGTERM, want 0 (%v)", code, w.cmd.ProcessState)
			}
		})
	}
}

// TestWorkerGarbage mutates valid conversations at random (with a fixed
// seed) and sends each on its own connection, then ends the sending side.
// Whatever it makes of the bytes, the worker must close the connection
// (never hang on input that has ended), never hit an internal error, and
// keep serving.
func TestWorkerGarbage(t *testing.T) {
	hello := AppendFrame(nil, FrameHello, []byte("versions=1"))
	get, _ := AppendRequest(nil, wsgiEnv("GET", "/hello", ""), false, nil)
	post, _ := AppendRequest(nil, wsgiEnv("POST", "/hash", ""), true, nil)
	inline, _ := AppendRequest(nil, wsgiEnv("POST", "/lines", "readline"), false, []byte("a\nb\n"))
	body := AppendFrame(AppendFrame(nil, FrameBody, []byte("chunk\n")), FrameBody, nil)
	seeds := [][]byte{
		bytes.Join([][]byte{hello, get}, nil),
		bytes.Join([][]byte{hello, post, body}, nil),
		bytes.Join([][]byte{hello, inline, get}, nil),
		bytes.Join([][]byte{hello, post, body, get, post, body}, nil),
	}
	rng := rand.New(rand.NewPCG(2026, 11))
	mutate := func(b []byte) []byte {
		b = bytes.Clone(b)
		for n := 1 + rng.IntN(4); n > 0 && len(b) > 0; n-- {
			i := rng.IntN(len(b))
			switch rng.IntN(6) {
			case 0: // flip a byte
				b[i] ^= byte(1 + rng.IntN(255))
			case 1: // insert a byte
				b = slices.Insert(b, i, byte(rng.Uint32()))
			case 2: // delete a range
				b = slices.Delete(b, i, min(len(b), i+1+rng.IntN(8)))
			case 3: // truncate
				b = b[:i]
			case 4: // duplicate a range
				j := min(len(b), i+1+rng.IntN(16))
				b = slices.Insert(b, j, b[i:j]...)
			case 5: // a random 32-bit value somewhere (lengths)
				if i+4 <= len(b) {
					binary.BigEndian.PutUint32(b[i:], rng.Uint32()>>uint(rng.IntN(32)))
				}
			}
		}
		return b
	}
	w := startReady(t)
	rounds := 300
	if n, err := strconv.Atoi(os.Getenv("PYHOST_GARBAGE_ROUNDS")); err == nil {
		rounds = n // a longer exploratory run
	}
	for i := 0; i < rounds; i++ {
		in := mutate(seeds[i%len(seeds)])
		nc, err := net.Dial("unix", w.sock)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(testDeadline))
		nc.Write(in) // the worker may close early; errors are expected
		nc.(*net.UnixConn).CloseWrite()
		_, err = io.Copy(io.Discard, nc)
		nc.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("round %d: the worker did not close a connection whose input ended: %q", i, in)
		}
	}
	w.assertRunning(t)
	mustHello(t, dialFake(t, w.sock))
	if out := w.out.String(); strings.Contains(out, "internal error") {
		t.Errorf("the worker hit an internal error on garbage input:\n%s", out)
	}
}

// TestWorkerArgs runs the worker's own argument parser: what pyhostd
// passes, what ps shows a forked worker as (with --app), and mistakes.
func TestWorkerArgs(t *testing.T) {
	python := findPython(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pyhost_worker.py"), WorkerScript, 0o644); err != nil {
		t.Fatal(err)
	}
	const probe = `
import json, sys
sys.path.insert(0, sys.argv[1])
import pyhost_worker as w
for argv in json.loads(sys.argv[2]):
    try:
        a = w.parse_args(argv)
        print(json.dumps([a.app, a.script, a.module, a.callable, a.directory, a.threads, a.listen_fd, a.status_fd]))
    except ValueError as e:
        print(json.dumps("error: %s" % e))
`
	cases := []struct {
		argv []string
		want string
	}{
		{[]string{"--script", "/srv/a.py", "--directory", "/srv", "--threads", "8"}, `["", "/srv/a.py", "", "", "/srv", 8, 3, 4]`},
		{[]string{"--app", "alice/blog", "--module", "blog.wsgi", "--callable", "app"}, `["alice/blog", "", "blog.wsgi", "app", "", 4, 3, 4]`},
		{[]string{"--listen-fd", "5", "--status-fd", "6", "--script", "x.py"}, `["", "x.py", "", "", "", 4, 5, 6]`},
		{[]string{"--directory", "/srv"}, `"error: exactly one of --script and --module is required"`},
		{[]string{"--script", "a.py", "--module", "m"}, `"error: exactly one of --script and --module is required"`},
		{[]string{"--script", "a.py", "--threads", "many"}, `"error: --threads needs a whole number, not 'many'"`},
		{[]string{"--script"}, `"error: --script needs a value"`},
		{[]string{"--script", "a.py", "--__init__", "x"}, `"error: unknown argument '--__init__'"`},
		{[]string{"script.py"}, `"error: unknown argument 'script.py'"`},
	}
	var argvs [][]string
	for _, c := range cases {
		argvs = append(argvs, c.argv)
	}
	in, _ := json.Marshal(argvs)
	out, err := exec.Command(python, "-c", probe, dir, string(in)).CombinedOutput()
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(got) != len(cases) {
		t.Fatalf("%d answers for %d cases:\n%s", len(got), len(cases), out)
	}
	for i, c := range cases {
		if got[i] != c.want {
			t.Errorf("%q: got %s, want %s", c.argv, got[i], c.want)
		}
	}
}

// The worker reads its connection through a buffer of its own
// (ProxyReader, 256 KiB): a request larger than the buffer (a large
// environ and an inline body), then small ones, each reach the app whole
// on the same connection, and the buffer is left in step between them.
func TestWorkerRequestLargerThanItsBuffer(t *testing.T) {
	w := startReady(t)
	c := dialFake(t, w.sock)
	big := strings.Repeat("c", 300<<10)
	for i, size := range []int{len(big), 10, len(big), 1} {
		env := wsgiEnv("POST", "/environ", "", "HTTP_X_BIG", big[:size])
		head, body, err := do(t, c, env, strings.NewReader("inline body"), 11)
		if err != nil || head.Status != 200 {
			t.Fatalf("request %d: %d, %v", i, head.Status, err)
		}
		var got map[string]string
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("request %d: app answered %q: %v", i, body, err)
		}
		if got["HTTP_X_BIG"] != big[:size] {
			t.Errorf("request %d: HTTP_X_BIG has %d bytes, want %d", i, len(got["HTTP_X_BIG"]), size)
		}
	}
}
