package integration

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bodyApp serves the response shapes of issue 10's body path. Bodies are
// a pattern the test checks byte by byte. Not wrapped by wsgiref's
// validator: its iterator would hide wsgi.file_wrapper from the worker,
// and the sendfile path is what is tested here.
const bodyApp = `
import os
import threading
import urllib.parse

_SEED = bytes(range(251))  # a prime length: no frame boundary lines up


def pattern(n, start=0):
    reps = (start + n) // len(_SEED) + 2
    return (_SEED * reps)[start:start + n]


BIG = pattern(50 << 20)
MIB = pattern(1 << 20)


def application(environ, start_response):
    path = environ["PATH_INFO"]
    q = dict(urllib.parse.parse_qsl(environ["QUERY_STRING"]))
    if path == "/chunks":
        n = int(q["n"])
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (pattern(10, 10 * i) for i in range(n))
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BIG)))])
        return [BIG]
    if path == "/huge":
        n = int(q["mib"])
        start_response("200 OK", [("Content-Length", str(n << 20))])
        return (MIB for _ in range(n))
    if path == "/file":
        name = q["path"]
        size = os.path.getsize(name)
        f = open(name, "rb")
        rng = environ.get("HTTP_RANGE", "")
        if rng.startswith("bytes="):
            # The app serves the range itself: seek, and say how long.
            first, _, last = rng[6:].partition("-")
            first = int(first)
            last = min(int(last), size - 1) if last else size - 1
            f.seek(first)
            start_response("206 Partial Content", [
                ("Content-Range", "bytes %d-%d/%d" % (first, last, size)),
                ("Content-Length", str(last - first + 1))])
        else:
            start_response("200 OK", [("Content-Length", str(size))])
        return environ["wsgi.file_wrapper"](f)
    if path == "/pipe":
        n = int(q["n"])
        r, w = os.pipe()

        def feed():
            with os.fdopen(w, "wb") as out:
                out.write(pattern(n))
        threading.Thread(target=feed, daemon=True).start()
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](os.fdopen(r, "rb"), 8192)
    if path == "/cl":
        body = b"x" * int(q["send"])
        start_response("200 OK", [("Content-Length", v) for v in q["declare"].split("|")])
        return [body]
    if path == "/304":
        start_response("304 Not Modified", [("ETag", '"v1"')])
        return [b"a body a 304 must not have"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"hello, world\n"]
`

// pattern is the app's pattern(n, start), built by repetition (a loop
// per byte is slow under the race detector).
func pattern(n, start int) []byte {
	seed := make([]byte, 251)
	for i := range seed {
		seed[i] = byte(i)
	}
	return bytes.Repeat(seed, (start+n)/len(seed)+2)[start : start+n]
}

// fetchSame GETs url and reports whether the body is want, compared as
// it streams in (reading 50 MiB whole first is slow under the race
// detector).
func fetchSame(t *testing.T, url string, want []byte) (*http.Response, bool) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 1<<20)
	off := 0
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if off+n > len(want) || !bytes.Equal(buf[:n], want[off:off+n]) {
				return resp, false
			}
			off += n
		}
		if err == io.EOF {
			return resp, off == len(want)
		}
		if err != nil {
			t.Fatalf("GET %s: read body after %d bytes: %v", url, off, err)
		}
	}
}

// fetch GETs path with extra headers and returns the response and its
// whole body.
func fetch(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp, body
}

func TestBodyPathResponses(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": bodyApp})
	const fileSize = 20<<20 + 3
	content := pattern(fileSize, 0)
	file := filepath.Join(dir, "data.bin")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, dir, "--threads", "2", "wsgi.py")

	resp, body := fetch(t, s.URL+"/chunks?n=20000")
	if !bytes.Equal(body, pattern(200000, 0)) || resp.Header.Get("Content-Length") != "" {
		t.Errorf("many small chunks: %d bytes (want 200000), Content-Length %q", len(body), resp.Header.Get("Content-Length"))
	}
	if resp, same := fetchSame(t, s.URL+"/big", pattern(50<<20, 0)); !same || resp.ContentLength != 50<<20 {
		t.Errorf("one 50 MiB bytes object: not the body sent, or Content-Length %d", resp.ContentLength)
	}
	if resp, same := fetchSame(t, s.URL+"/file?path="+file, content); resp.StatusCode != 200 || !same {
		t.Errorf("file_wrapper over a file: %d, not the file", resp.StatusCode)
	}
	resp, body = fetch(t, s.URL+"/pipe?n=3000001")
	if resp.StatusCode != 200 || !bytes.Equal(body, pattern(3000001, 0)) {
		t.Errorf("file_wrapper over a pipe: %d, %d bytes", resp.StatusCode, len(body))
	}
	for _, tt := range []struct {
		rng         string
		first, last int
	}{
		{"bytes=1000-2999", 1000, 2999},
		{"bytes=0-0", 0, 0},
		{"bytes=5000000-", 5000000, fileSize - 1},
		{"bytes=" + strconv.Itoa(fileSize-10) + "-" + strconv.Itoa(fileSize+100), fileSize - 10, fileSize - 1},
	} {
		resp, body := fetch(t, s.URL+"/file?path="+file, "Range", tt.rng)
		want := fmt.Sprintf("bytes %d-%d/%d", tt.first, tt.last, fileSize)
		if resp.StatusCode != 206 || resp.Header.Get("Content-Range") != want || !bytes.Equal(body, content[tt.first:tt.last+1]) {
			t.Errorf("Range %s: %d %q, %d bytes; want 206 %q, %d bytes", tt.rng, resp.StatusCode, resp.Header.Get("Content-Range"), len(body), want, tt.last-tt.first+1)
		}
	}
	// A range is what the app declared, not the rest of the file: no
	// excess reached the proxy.
	if strings.Contains(s.out.String(), "Content-Length") {
		t.Errorf("the proxy complained about a Content-Length:\n%s", s.out)
	}
}

func TestBodyPathFileTruncatedWhileSent(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": bodyApp})
	const size = 64 << 20
	content := pattern(size, 0)
	file := filepath.Join(dir, "shrinks.bin")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, dir, "--threads", "1", "wsgi.py")
	pids := s.workerPIDs()

	resp, err := http.Get(s.URL + "/file?path=" + file)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 1)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	// The worker is inside the file, held by a client that has read one
	// byte; now the file shrinks under it.
	if err := os.Truncate(file, 0); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(resp.Body)
	got := append(first, rest...)
	if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read %d of %d bytes, then %v; want the response broken (unexpected EOF)", len(got), size, err)
	}
	if !bytes.Equal(got, content[:len(got)]) {
		t.Fatalf("the %d bytes received are not the file's: foreign bytes sent", len(got))
	}
	// Said in the log: by the worker (the file ended inside a frame) or
	// by the proxy (it ended between two, short of the Content-Length).
	eventually(t, 10*time.Second, "a log line about the short file", func() bool {
		out := s.out.String()
		return strings.Contains(out, "truncated while sent") || strings.Contains(out, "less than its Content-Length")
	})
	// The worker survives and serves on.
	if code, body := get(t, s.URL+"/"); code != 200 || body != "hello, world\n" {
		t.Fatalf("after the broken response: %d %q", code, body)
	}
	if after := s.workerPIDs(); fmt.Sprint(after) != fmt.Sprint(pids) {
		t.Errorf("workers %v, then %v: the worker did not survive", pids, after)
	}
}

// rawHTTP is one raw HTTP/1.1 connection, to see the framing the proxy
// puts on the wire.
type rawHTTP struct {
	c  net.Conn
	br *bufio.Reader
}

func dialHTTP(t *testing.T, addr string) *rawHTTP {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawHTTP{c: c, br: bufio.NewReader(c)}
}

func (h *rawHTTP) get(t *testing.T, path string) (*http.Response, []byte, error) {
	t.Helper()
	fmt.Fprintf(h.c, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path)
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// TestBodyPathContentLength: the front owns response framing (issue 17
// item 4, issue 10): whatever Content-Length an app sends, the client
// gets a response framed by what is sent, and the log says what was
// wrong, once.
func TestBodyPathContentLength(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": bodyApp})
	s := startServe(t, dir, "--threads", "1", "wsgi.py")
	tests := []struct {
		path    string
		status  int
		length  []string
		body    string
		broken  bool
		logLine string
	}{
		{"/cl?declare=5&send=27", 200, []string{"5"}, "xxxxx", false, "app sent more than its Content-Length"},
		{"/cl?declare=5|5&send=5", 200, []string{"5"}, "xxxxx", false, "the same value more than once"},
		{"/cl?declare=5|6&send=6", 200, nil, "xxxxxx", false, "invalid or conflicting values"},
		{"/304", 304, nil, "", false, "a body with a response that has none"},
		{"/cl?declare=100&send=3", 200, []string{"100"}, "xxx", true, "app sent less than its Content-Length"},
	}
	for _, tt := range tests {
		h := dialHTTP(t, s.Addr)
		resp, body, err := h.get(t, tt.path)
		if resp.StatusCode != tt.status || fmt.Sprint(resp.Header["Content-Length"]) != fmt.Sprint(tt.length) || string(body) != tt.body {
			t.Errorf("%s: %d, Content-Length %q, body %q; want %d, %q, %q", tt.path, resp.StatusCode, resp.Header["Content-Length"], body, tt.status, tt.length, tt.body)
		}
		if tt.broken {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%s: reading the body ended with %v, want it cut short", tt.path, err)
			}
		} else {
			if err != nil {
				t.Errorf("%s: reading the body: %v", tt.path, err)
			}
			// Still in step: the connection carries the next request.
			if resp, body, err := h.get(t, "/"); err != nil || resp.StatusCode != 200 || string(body) != "hello, world\n" {
				t.Errorf("%s: next request on the connection: %d %q %v", tt.path, resp.StatusCode, body, err)
			}
		}
		eventually(t, 10*time.Second, "log line "+tt.logLine, func() bool { return strings.Contains(s.out.String(), tt.logLine) })
		if n := strings.Count(s.out.String(), tt.logLine); n != 1 {
			t.Errorf("%s: %d log lines with %q, want 1", tt.path, n, tt.logLine)
		}
	}
}

// TestBodyPathClientThatNeverReads: a client that asks for 64 MiB and
// reads nothing holds the app's only thread no longer than the proxy
// takes to spool the response, and is cut after send_timeout (issue 10).
func TestBodyPathClientThatNeverReads(t *testing.T) {
	t.Parallel()
	help, _ := exec.Command(filepath.Join(binDir, "pyhostd"), "serve", "--help").CombinedOutput()
	if !bytes.Contains(help, []byte("--send-timeout")) {
		t.Skip("pyhostd serve has no --send-timeout yet")
	}
	dir := writeApp(t, map[string]string{"wsgi.py": bodyApp})
	s := startServe(t, dir, "--threads", "1", "--send-timeout", "1s", "wsgi.py")
	slow, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET /huge?mib=64 HTTP/1.1\r\nHost: test\r\n\r\n")

	// The one thread is free again once the proxy took the response.
	if code, body := get(t, s.URL+"/"); code != 200 || body != "hello, world\n" {
		t.Fatalf("second request while a client reads nothing: %d %q", code, body)
	}
	eventually(t, 20*time.Second, "the client cut after send_timeout", func() bool {
		return strings.Contains(s.out.String(), "client read nothing for send_timeout")
	})
	// Its connection was reset: what it sends now meets a reset, and it
	// got at most what was in flight.
	slow.SetDeadline(time.Now().Add(20 * time.Second))
	slow.Write([]byte("x"))
	n, err := io.Copy(io.Discard, slow)
	if !errors.Is(err, syscall.ECONNRESET) || n >= 64<<20 {
		t.Fatalf("the client that read nothing: %d bytes, then %v; want a reset", n, err)
	}
}
