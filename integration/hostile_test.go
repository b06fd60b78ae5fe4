package integration

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Hostile clients (issue 10) and HTTP fidelity (issue 17), scaled down:
// tens of connections, timeouts of a second or two set by serve's flags.

// echoApp tells what it saw: a few environ keys, the body (or its hash
// and length when large), the URL wsgiref rebuilds, and how many requests
// this process has served.
const echoApp = `
import hashlib, json, threading, wsgiref.util

lock = threading.Lock()
served = [0]
KEYS = ("REQUEST_METHOD", "PATH_INFO", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "CONTENT_LENGTH",
        "REMOTE_ADDR", "HTTP_X_REAL_IP", "HTTP_X_FORWARDED_FOR", "HTTP_PROXY", "HTTP_X_HOP", "HTTP_CONNECTION")

def application(environ, start_response):
    with lock:
        served[0] += 1
        n = served[0]
    inp = environ["wsgi.input"]
    if environ.get("CONTENT_LENGTH"):
        body = inp.read(int(environ["CONTENT_LENGTH"]))
    else:
        parts = []
        while True:
            b = inp.read(65536)
            if not b:
                break
            parts.append(b)
        body = b"".join(parts)
    seen = {"served": n, "env": {k: environ[k] for k in KEYS if k in environ},
            "url": wsgiref.util.request_uri(environ), "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest()}
    if len(body) <= 1024:
        seen["body"] = body.decode("latin-1")
    out = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]
`

type appSaw struct {
	Served int               `json:"served"`
	Env    map[string]string `json:"env"`
	URL    string            `json:"url"`
	Length int               `json:"length"`
	SHA256 string            `json:"sha256"`
	Body   *string           `json:"body"`
}

func parseSaw(t *testing.T, body string) appSaw {
	t.Helper()
	var s appSaw
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("not the app's answer: %v: %.300s", err, body)
	}
	return s
}

// raw is a client that writes requests by hand and reads the answers.
type raw struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialHostile(t *testing.T, addr string) *raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second)) // nothing below may hang the test
	return &raw{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *raw) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// response reads one whole response (nil and the error when none came).
func (c *raw) response(method string) (*http.Response, string, error) {
	resp, err := http.ReadResponse(c.r, &http.Request{Method: method})
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func (c *raw) mustResponse(method string) (*http.Response, string) {
	c.t.Helper()
	resp, body, err := c.response(method)
	if err != nil {
		c.t.Fatalf("no response: %v", err)
	}
	return resp, body
}

// closedByServer reports whether the server closed the connection (EOF
// or reset) rather than wait for the next request.
func (c *raw) closedByServer() bool {
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.r.ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// keptAlive checks that the connection serves another request.
func (c *raw) keptAlive() bool {
	c.t.Helper()
	if _, err := io.WriteString(c.c, "GET /next HTTP/1.1\r\nHost: site.test\r\n\r\n"); err != nil {
		return false
	}
	resp, _, err := c.response("GET")
	return err == nil && resp.StatusCode == 200
}

// served asks the app how many requests its process has served, this
// one included.
func served(t *testing.T, s *server) int {
	t.Helper()
	code, body := get(t, s.URL+"/count")
	if code != 200 {
		t.Fatalf("GET /count: %d %s", code, body)
	}
	return parseSaw(t, body).Served
}

func proxyPIDOf(s *server) int {
	for _, p := range descendants(s.cmd.Process.Pid) {
		if strings.Contains(cmdlineOf(p), "__proxy") {
			return p
		}
	}
	return 0
}

// socketsOf counts the sockets pid holds open.
func socketsOf(t *testing.T, pid int) int {
	t.Helper()
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

func rssKiB(pid int) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// Slow small bodies: connections that trickle a body never reach a
// worker, a normal request is served meanwhile, and each slow one is cut
// with 408 after client_body_timeout. Before: bodies up to 64 KiB were
// read with no deadline, so the connections stayed forever (the issue's
// 20,000 descriptors ran out).
func TestHostileSlowSmallBodies(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(echoApp)})
	s := startServe(t, dir, "--threads", "2", "--client-body-timeout", "1s", "wsgi.py")
	before := served(t, s)
	const n = 30
	slow := make([]*raw, n)
	for i := range slow {
		slow[i] = dialHostile(t, s.Addr)
		slow[i].send("POST /slow HTTP/1.1\r\nHost: site.test\r\nContent-Length: 100\r\n\r\nx")
	}
	if code, _ := get(t, s.URL+"/normal"); code != 200 {
		t.Fatalf("a normal request among %d slow bodies: %d", n, code)
	}
	for i, c := range slow {
		resp, _, err := c.response("POST")
		if err != nil {
			t.Fatalf("slow body %d: no answer (%v); it must be cut after client_body_timeout", i, err)
		}
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("slow body %d: %d, want 408", i, resp.StatusCode)
		}
		if !c.closedByServer() {
			t.Errorf("slow body %d: the connection stays open", i)
		}
	}
	// /normal and this /count only: no slow body reached the app.
	if got := served(t, s) - before; got != 2 {
		t.Errorf("the app served %d requests since; want 2 (no slow body)", got)
	}
}

// Slow large uploads: bodies over buffer_request_body are spooled by the
// proxy, so the worker threads stay free, a normal request is served,
// the slow ones are cut (408) and no worker is recycled. Before: a body
// over 64 KiB streamed to a thread at the client's pace; request_timeout
// then recycled the worker.
func TestHostileSlowLargeUploads(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(echoApp)})
	s := startServe(t, dir, "--threads", "2", "--buffer-request-body", "64KiB",
		"--client-body-timeout", "2s", "--request-timeout", "1s", "wsgi.py")
	pids := s.workerPIDs()
	before := served(t, s)
	const n = 10
	half := strings.Repeat("u", 512<<10)
	slow := make([]*raw, n)
	for i := range slow {
		slow[i] = dialHostile(t, s.Addr)
		slow[i].send(fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: site.test\r\nContent-Length: %d\r\n\r\n%s", 1<<20, half))
	}
	if code, _ := get(t, s.URL+"/normal"); code != 200 {
		t.Fatalf("a normal request among %d slow uploads: %d", n, code)
	}
	// A whole upload of the same size goes through, spooled, intact.
	full := strings.Repeat("0123456789abcdef", (1<<20)/16)
	resp, err := http.Post(s.URL+"/upload", "application/octet-stream", strings.NewReader(full))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := sha256.Sum256([]byte(full))
	if saw := parseSaw(t, string(b)); resp.StatusCode != 200 || saw.Length != len(full) || saw.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("a whole 1 MiB upload: %d, the app got %d bytes (sha %s)", resp.StatusCode, saw.Length, saw.SHA256)
	}
	for i, c := range slow {
		resp, _, err := c.response("POST")
		if err != nil {
			t.Fatalf("slow upload %d: no answer (%v)", i, err)
		}
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("slow upload %d: %d, want 408", i, resp.StatusCode)
		}
	}
	if got := served(t, s) - before; got != 3 {
		t.Errorf("the app served %d requests since; want 3 (no slow upload)", got)
	}
	if now := s.workerPIDs(); !slices.Equal(now, pids) {
		t.Errorf("workers %v became %v: slow clients recycled a worker", pids, now)
	}
	if strings.Contains(s.out.String(), "timed out") {
		t.Errorf("a request timed out:\n%s", s.out)
	}
}

// The connection caps: at the cap a new connection is refused at once,
// and those open are served on.
func TestHostileConnectionCap(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(echoApp)})
	for _, c := range []struct {
		name  string
		flags []string
		cap   int
	}{
		{"in all", []string{"--max-connections", "10", "--max-connections-per-ip", "0"}, 10},
		{"per address", []string{"--max-connections", "100", "--max-connections-per-ip", "6"}, 6},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startServe(t, dir, append(c.flags, "wsgi.py")...)
			open := make([]*raw, c.cap)
			for i := range open {
				open[i] = dialHostile(t, s.Addr)
				open[i].send("GET / HTTP/1.1\r\nHost: site.test\r\n\r\n")
				if resp, _ := open[i].mustResponse("GET"); resp.StatusCode != 200 {
					t.Fatalf("connection %d: %d", i, resp.StatusCode)
				}
			}
			for i := 0; i < 5; i++ {
				extra, err := net.Dial("tcp", s.Addr)
				if err != nil {
					continue // reset before connect returned: refused as well
				}
				extra.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(extra, "GET / HTTP/1.1\r\nHost: site.test\r\n\r\n") // may meet the reset already
				if resp, err := http.ReadResponse(bufio.NewReader(extra), nil); err == nil {
					t.Fatalf("connection %d over the cap of %d was answered %d", c.cap+i+1, c.cap, resp.StatusCode)
				}
				extra.Close()
			}
			for i, o := range open {
				if !o.keptAlive() {
					t.Errorf("open connection %d is not served on at the cap", i)
				}
			}
			s.waitLine(regexp.MustCompile(`connection refused at max_connections`), 10*time.Second)
			// One closed: its place is free again.
			open[0].c.Close()
			eventually(t, 10*time.Second, "a new connection once one closed", func() bool {
				c, err := net.Dial("tcp", s.Addr)
				if err != nil {
					return false
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: site.test\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				return err == nil && resp.StatusCode == 200
			})
		})
	}
}

// A scaled-down slow-body attack, and the proxy's memory after it. The
// figures are logged; the bound is loose (the Go runtime gives memory
// back to the system over minutes, not at once).
func TestHostileProxyMemoryAfterAttack(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(echoApp)})
	s := startServe(t, dir, "--client-body-timeout", "1s", "wsgi.py")
	get(t, s.URL+"/")
	pid := proxyPIDOf(s)
	if pid == 0 {
		t.Fatal("no proxy process")
	}
	base := rssKiB(pid)
	const n = 200
	var wg sync.WaitGroup
	var peak int64
	var mu sync.Mutex
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", s.Addr)
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: site.test\r\nContent-Length: %d\r\n\r\n%s", 1<<20, strings.Repeat("a", 256<<10))
			mu.Lock()
			peak = max(peak, rssKiB(pid))
			mu.Unlock()
			io.Copy(io.Discard, c) // until the proxy cuts it
		}()
	}
	wg.Wait()
	if code, _ := get(t, s.URL+"/"); code != 200 {
		t.Errorf("after the attack: %d", code)
	}
	// The crowd gone, the proxy gives the memory back (tidyMemory): within
	// 10 MiB of where it started.
	var after int64
	eventually(t, 20*time.Second, "proxy RSS back near its baseline", func() bool {
		after = rssKiB(pid)
		return after < base+10<<10
	})
	t.Logf("proxy RSS: %d KiB before, %d KiB at the peak seen, %d KiB after %d slow 1 MiB bodies (256 KiB sent each) were cut", base, peak, after, n)
}

// Issue 17 item 1: a NUL in the path is 400 from the proxy; no worker
// is asked, so none of its pooled connections is lost. Before: 502, and
// every pooled connection of the worker dropped.
func TestHostileNULInPath(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(echoApp)})
	s := startServe(t, dir, "--threads", "4", "wsgi.py")
	// Four requests at once leave four pooled connections.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); http.Get(s.URL + "/warm") }()
	}
	wg.Wait()
	w := s.workerPIDs()[0]
	socks := socketsOf(t, w)
	before := served(t, s)
	c := dialHostile(t, s.Addr)
	c.send("GET /anything/a%00b HTTP/1.1\r\nHost: site.test\r\n\r\n")
	resp, _ := c.mustResponse("GET")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	if !c.keptAlive() {
		t.Error("the connection is not served on")
	}
	if got := socketsOf(t, w); got != socks {
		t.Errorf("the worker holds %d sockets, %d before: pooled connections were lost", got, socks)
	}
	if got := served(t, s) - before; got != 2 {
		t.Errorf("the app served %d requests; want 2 (/next, /count)", got)
	}
	if strings.Contains(s.out.String(), "[WARN]") {
		t.Errorf("WARN lines for a bad request:\n%s", s.out)
	}
}

// Issue 17 item 2: HTTP/1.0 without Host.
func TestHostileHTTP10WithoutHost(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(echoApp)})
	s := startServe(t, dir, "wsgi.py")
	c := dialHostile(t, s.Addr)
	c.send("GET /get HTTP/1.0\r\n\r\n")
	resp, body := c.mustResponse("GET")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	saw := parseSaw(t, body)
	host, port, _ := net.SplitHostPort(s.Addr)
	if v, ok := saw.Env["HTTP_HOST"]; ok {
		t.Errorf("HTTP_HOST = %q; the client sent none", v)
	}
	if saw.Env["SERVER_NAME"] != host || saw.Env["SERVER_PORT"] != port {
		t.Errorf("SERVER_NAME %q SERVER_PORT %q, want %s %s", saw.Env["SERVER_NAME"], saw.Env["SERVER_PORT"], host, port)
	}
	if want := "http://" + s.Addr + "/get"; saw.URL != want {
		t.Errorf("the app's URL %q, want %q", saw.URL, want)
	}
	if !c.closedByServer() {
		t.Error("an HTTP/1.0 connection stays open")
	}
}

// Issue 17 item 3: Content-Length and chunked on HTTP/1.1 is answered,
// chunked winning, and the connection closed. Before: kept for the next
// request.
func TestHostileContentLengthAndChunked(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(echoApp)})
	s := startServe(t, dir, "wsgi.py")
	c := dialHostile(t, s.Addr)
	c.send("POST /post HTTP/1.1\r\nHost: site.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	resp, body := c.mustResponse("POST")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	saw := parseSaw(t, body)
	if cl, ok := saw.Env["CONTENT_LENGTH"]; saw.Body == nil || *saw.Body != "hello" || ok {
		t.Errorf("the app saw body %v, CONTENT_LENGTH %q; want the chunked body, and no length", saw.Body, cl)
	}
	if !resp.Close || !c.closedByServer() {
		t.Errorf("the connection stays open (Connection: %q)", resp.Header.Get("Connection"))
	}
}

// The HTTP/1.0 variant (issue 10): net/http frames the body by
// Content-Length; the chunk data after it must not run as a second
// request. Before: it did, on a kept-alive connection.
func TestHostileHTTP10ContentLengthAndChunked(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(echoApp)})
	s := startServe(t, dir, "wsgi.py")
	before := served(t, s)
	c := dialHostile(t, s.Addr)
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: site.test\r\n\r\n"
	c.send(fmt.Sprintf("POST /post HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled))
	resp, _ := c.mustResponse("POST")
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
	if !c.closedByServer() {
		t.Error("the connection stays open: what follows would run as another request")
	}
	if got := served(t, s) - before; got != 2 {
		t.Errorf("the app served %d requests; want 2 (/post, /count)", got)
	}
}

// X-Real-Ip from a client is replaced by the resolved client.
func TestHostileXRealIP(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(echoApp)})
	ask := func(s *server) appSaw {
		req, _ := http.NewRequest("GET", s.URL+"/", nil)
		req.Header.Set("X-Real-Ip", "6.6.6.6")
		req.Header.Set("X-Forwarded-For", "198.51.100.7")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return parseSaw(t, string(b))
	}
	s := startServe(t, dir, "wsgi.py")
	if got := ask(s).Env["HTTP_X_REAL_IP"]; got != "127.0.0.1" {
		t.Errorf("untrusted: X-Real-Ip %q, want the peer 127.0.0.1", got)
	}
	s.stop(10 * time.Second)
	s = startServe(t, dir, "--trusted-proxy", "127.0.0.1", "wsgi.py")
	if got := ask(s).Env["HTTP_X_REAL_IP"]; got != "198.51.100.7" {
		t.Errorf("behind a trusted proxy: X-Real-Ip %q, want the client it named, 198.51.100.7", got)
	}
}

// One test per hygiene item of issue 10: the status, whether the
// connection is closed after, and whether (and what) the app saw.
func TestHostileHygiene(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(echoApp)})
	s := startServe(t, dir, "wsgi.py")
	cases := []struct {
		name, req string
		status    int
		closed    bool
		reached   bool
		check     func(t *testing.T, saw appSaw)
	}{
		{"truncated body: 400, never 200 with an empty body",
			"POST /t HTTP/1.1\r\nHost: site.test\r\nContent-Length: 10\r\n\r\nabc", 400, true, false, nil},
		{"bad chunk size: 400, not 502",
			"POST /t HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400, true, false, nil},
		{"CONNECT: 501", "CONNECT site.test:443 HTTP/1.1\r\nHost: site.test:443\r\n\r\n", 501, false, false, nil},
		{"TRACE: 501", "TRACE / HTTP/1.1\r\nHost: site.test\r\nCookie: secret=1\r\n\r\n", 501, false, false, nil},
		{"PRI *: 501", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 501, true, false, nil},
		{"URI over 8 KiB: 414", "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: site.test\r\n\r\n", 414, false, false, nil},
		{"Proxy header dropped (httpoxy)", "GET /p HTTP/1.1\r\nHost: site.test\r\nProxy: http://evil.test:3128\r\n\r\n", 200, false, true,
			func(t *testing.T, saw appSaw) {
				if v, ok := saw.Env["HTTP_PROXY"]; ok {
					t.Errorf("HTTP_PROXY = %q reached the app", v)
				}
			}},
		{"headers named in Connection dropped", "GET /c HTTP/1.1\r\nHost: site.test\r\nConnection: keep-alive, X-Hop\r\nX-Hop: mine\r\n\r\n", 200, false, true,
			func(t *testing.T, saw appSaw) {
				for _, k := range []string{"HTTP_X_HOP", "HTTP_CONNECTION"} {
					if v, ok := saw.Env[k]; ok {
						t.Errorf("%s = %q reached the app", k, v)
					}
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := served(t, s)
			conn := dialHostile(t, s.Addr)
			conn.send(c.req)
			if strings.HasPrefix(c.req, "POST") {
				conn.c.(*net.TCPConn).CloseWrite() // nothing more is coming
			}
			resp, body := conn.mustResponse(strings.Fields(c.req)[0])
			if resp.StatusCode != c.status {
				t.Errorf("status %d, want %d", resp.StatusCode, c.status)
			}
			if c.closed && !conn.closedByServer() {
				t.Error("the connection stays open")
			}
			if !c.closed && !conn.keptAlive() {
				t.Error("the connection is not served on")
			}
			want := 1 // /count
			if c.reached {
				want++
			}
			if !c.closed {
				want++ // /next
			}
			if got := served(t, s) - before; got != want {
				t.Errorf("the app served %d requests, want %d", got, want)
			}
			if c.check != nil {
				c.check(t, parseSaw(t, body))
			}
		})
	}
	if strings.Contains(s.out.String(), "[WARN]") {
		t.Errorf("WARN lines for bad requests:\n%s", s.out)
	}
}
