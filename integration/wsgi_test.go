package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// matrixApp reports what it saw of the request as JSON. X-Read-Mode picks
// how it reads wsgi.input, so every method of the input object is
// exercised on every kind of body.
const matrixApp = `
import hashlib, json

def read_body(inp, mode):
    if mode == "read":
        # read() without a size is beyond PEP 3333 and the validator's
        # wrapper refuses it; apps use it anyway, so call ours directly.
        return getattr(inp, "input", inp).read()
    if mode == "read-n":
        parts = []
        while True:
            b = inp.read(8191)
            if not b:
                return b"".join(parts)
            parts.append(b)
    if mode == "readline":
        parts = []
        while True:
            line = inp.readline()
            if not line:
                return b"".join(parts)
            parts.append(line)
    if mode == "readline-n":
        parts = []
        while True:
            line = inp.readline(100)
            if not line:
                return b"".join(parts)
            assert len(line) <= 100, len(line)
            parts.append(line)
    if mode == "readlines":
        return b"".join(inp.readlines())
    if mode == "iter":
        return b"".join(line for line in inp)
    raise ValueError(mode)

def application(environ, start_response):
    inp = environ["wsgi.input"]
    mode = environ.get("HTTP_X_READ_MODE", "read")
    if "CONTENT_LENGTH" in environ:
        n = int(environ["CONTENT_LENGTH"])
        body = inp.read(n) if mode == "read" else read_body(inp, mode)
    else:
        body = read_body(inp, mode)
    report = {
        "method": environ["REQUEST_METHOD"],
        "script_name": environ["SCRIPT_NAME"],
        "path_info": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "request_uri": environ.get("REQUEST_URI"),
        "content_length": environ.get("CONTENT_LENGTH"),
        "terminated": environ.get("wsgi.input_terminated"),
        "body_len": len(body),
        "body_sha": hashlib.sha256(body).hexdigest(),
        "multi": environ.get("HTTP_X_MULTI"),
        "big": len(environ.get("HTTP_X_BIG", "")),
        "spoof": environ.get("HTTP_X_SPOOFED"),
        "request_id": environ.get("HTTP_X_REQUEST_ID"),
        "types_ok": all(type(k) is str and (type(v) is str or k.startswith("wsgi.")) for k, v in environ.items()),
    }
    out = json.dumps(report).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]
`

type matrixReport struct {
	Method        string  `json:"method"`
	ScriptName    string  `json:"script_name"`
	PathInfo      string  `json:"path_info"`
	Query         string  `json:"query"`
	RequestURI    string  `json:"request_uri"`
	ContentLength *string `json:"content_length"`
	Terminated    bool    `json:"terminated"`
	BodyLen       int     `json:"body_len"`
	BodySHA       string  `json:"body_sha"`
	Multi         string  `json:"multi"`
	Big           int     `json:"big"`
	Spoof         *string `json:"spoof"`
	RequestID     string  `json:"request_id"`
	TypesOK       bool    `json:"types_ok"`
}

// latin1 is what PEP 3333 says a native string holds: each byte of the
// raw value as one code point.
func latin1(b string) string {
	r := make([]rune, len(b))
	for i := 0; i < len(b); i++ {
		r[i] = rune(b[i])
	}
	return string(r)
}

func TestRequestMatrix(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(matrixApp)})
	s := startServe(t, dir, "--threads", "4", "wsgi.py")
	lines := bytes.Repeat([]byte("a line of text in the body\n"), 3<<20/27)
	bodies := map[string][]byte{"empty": nil, "3MiB": lines, "small": []byte("x=1\ny=2\nno newline at end")}
	paths := []string{"/plain", "/caf%C3%A9", "/a%20b/c", "/%E2%82%AC/x", "/sl%2Fash"}
	client := &http.Client{Timeout: 60 * time.Second}

	for _, method := range []string{"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"} {
		for _, rawPath := range paths {
			for bname, body := range bodies {
				for _, chunked := range []bool{false, true} {
					if (method == "GET" || method == "HEAD") && body != nil {
						continue
					}
					if chunked && body == nil {
						continue
					}
					mode := []string{"read", "read-n", "readline", "readline-n", "readlines", "iter"}[len(rawPath)%6]
					name := fmt.Sprintf("%s %s %s chunked=%v %s", method, rawPath, bname, chunked, mode)
					u := s.URL + rawPath + "?q=%20a&b=%C3%A9"
					var rd io.Reader
					if body != nil {
						rd = bytes.NewReader(body)
					}
					req, _ := http.NewRequest(method, u, rd)
					if chunked {
						req.ContentLength = -1
						req.Body = io.NopCloser(bytes.NewReader(body))
					}
					req.Header.Set("X-Read-Mode", mode)
					req.Header.Add("X-Multi", "one")
					req.Header.Add("X-Multi", "two")
					req.Header.Set("X-Big", strings.Repeat("b", 16<<10))
					req.Header["X_Spoofed"] = []string{"evil"}
					resp, err := client.Do(req)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					data, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Fatalf("%s: status %d %s", name, resp.StatusCode, data)
					}
					if method == "HEAD" {
						if len(data) != 0 {
							t.Errorf("%s: HEAD response has a body", name)
						}
						continue
					}
					var rep matrixReport
					if err := json.Unmarshal(data, &rep); err != nil {
						t.Fatalf("%s: %v: %s", name, err, data)
					}
					unescaped, _ := url.PathUnescape(rawPath)
					sum := sha256.Sum256(body)
					checks := []struct {
						what      string
						got, want any
					}{
						{"method", rep.Method, method},
						{"SCRIPT_NAME", rep.ScriptName, ""},
						{"PATH_INFO", rep.PathInfo, latin1(unescaped)},
						{"QUERY_STRING", rep.Query, "q=%20a&b=%C3%A9"},
						{"REQUEST_URI", rep.RequestURI, rawPath + "?q=%20a&b=%C3%A9"},
						{"body length", rep.BodyLen, len(body)},
						{"body hash", rep.BodySHA, hex.EncodeToString(sum[:])},
						{"repeated header", rep.Multi, "one, two"},
						{"large header", rep.Big, 16 << 10},
						{"spoofed header dropped", rep.Spoof == nil, true},
						{"request id", rep.RequestID != "" && rep.RequestID == resp.Header.Get("X-Request-Id"), true},
						{"native strings", rep.TypesOK, true},
						{"input_terminated without length", !chunked || (rep.ContentLength == nil && rep.Terminated), true},
					}
					for _, c := range checks {
						if c.got != c.want {
							t.Errorf("%s: %s = %v, want %v", name, c.what, c.got, c.want)
						}
					}
				}
			}
		}
	}
}

// behaviourApp has one route per edge of the response side of PEP 3333.
const behaviourApp = `
import sys, threading, time

closed = []
closed_event = threading.Event()

class Tracked:
    """A response iterable that records close() and yields slowly."""
    def __init__(self, name, n, delay):
        self.name, self.n, self.delay = name, n, delay
    def __iter__(self):
        for i in range(self.n):
            yield b"x" * 1024
            time.sleep(self.delay)
    def close(self):
        closed.append(self.name)
        closed_event.set()

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/endless":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Tracked("endless", 100000, 0.01)
    if path == "/closed":
        closed_event.wait(10)
        body = ",".join(closed).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/raise":
        raise RuntimeError("secret database password is hunter2")
    if path == "/raise-mid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        def gen():
            yield b"partial"
            raise ValueError("broke mid-stream")
        return gen()
    if path == "/short":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return [b"only ten b"]
    if path == "/hop":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close"), ("X-Kept", "yes"), ("Content-Length", "2")])
        return [b"ok"]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"and returned"]
    if path == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("x")
        except KeyError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"replaced before sending"]
    if path == "/file":
        import io
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"y" * 200000), 8192)
    if path == "/errors":
        environ["wsgi.errors"].write("a line to wsgi.errors\n")
        environ["wsgi.errors"].flush()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"alive"]
`

func TestClientDisconnectFreesThreadAndCallsClose(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(behaviourApp)})
	// One thread: the next request is served only if the thread was freed.
	s := startServe(t, dir, "--processes", "1", "--threads", "1", "wsgi.py")
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	status, _ := br.ReadString('\n')
	if !strings.HasPrefix(status, "HTTP/1.1 200") {
		t.Fatalf("status line %q", status)
	}
	if _, err := io.ReadFull(br, make([]byte, 1500)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	left := time.Now()
	// /closed waits (in the app) for close(); with one thread it can only
	// run once the endless response's thread is free.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/closed", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("thread not freed or close() not called within 2s of the client leaving: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "endless" {
		t.Fatalf("closed iterables %q, want endless", b)
	}
	t.Logf("close() seen %v after the client left", time.Since(left).Round(time.Millisecond))
}

func TestResponseEdges(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(behaviourApp)})
	s := startServe(t, dir, "wsgi.py")

	// An exception: short 500 page for the client, traceback in the log.
	resp, err := http.Get(s.URL + "/raise")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	rid := resp.Header.Get("X-Request-Id")
	if resp.StatusCode != 500 || strings.Contains(string(body), "hunter2") || strings.Contains(string(body), "Traceback") {
		t.Errorf("/raise: %d %q", resp.StatusCode, body)
	}
	s.waitLine(regexp.MustCompile(regexp.QuoteMeta(rid)+`.*raised`), 5*time.Second)
	s.waitLine(regexp.MustCompile(`RuntimeError: secret database password`), 5*time.Second)

	// Failure mid-body: the client must see a broken response.
	resp, err = http.Get(s.URL + "/raise-mid")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Errorf("/raise-mid: the response looked complete")
	}
	// Shorter than its Content-Length: broken too.
	resp, err = http.Get(s.URL + "/short")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("/short: %v, want unexpected EOF", err)
	}

	cases := []struct {
		path, want string
		code       int
	}{
		{"/write", "written and returned", 200},
		{"/exc-info", "replaced before sending", 500},
		{"/file", strings.Repeat("y", 200000), 200},
		{"/errors", "alive", 200},
	}
	for _, c := range cases {
		if code, body := get(t, s.URL+c.path); code != c.code || body != c.want {
			t.Errorf("%s: %d %.40q, want %d %.40q", c.path, code, body, c.code, c.want)
		}
	}
	s.waitLine(regexp.MustCompile(`a line to wsgi.errors`), 5*time.Second)

	resp, err = http.Get(s.URL + "/hop")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Close || resp.Header.Get("X-Kept") != "yes" {
		t.Errorf("/hop: the app's Connection header reached the client (close=%v) or X-Kept lost", resp.Close)
	}
	s.waitLine(regexp.MustCompile(`dropped hop-by-hop header 'Connection'`), 5*time.Second)

	// After all that the worker still serves.
	if code, body := get(t, s.URL+"/"); code != 200 || body != "alive" {
		t.Errorf("after the edge cases: %d %q", code, body)
	}
}
