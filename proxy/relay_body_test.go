package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/proxymsg"
	"github.com/pyhost/pyhost/wsgiadapter"
)

const relayDeadline = 10 * time.Second

// relayWorker is a fake worker on a UNIX socket: it speaks the protocol
// and answers each request with what answer returns for its path.
type relayWorker struct {
	sock   string
	answer func(path string, w io.Writer)
}

func newRelayWorker(t testing.TB, answer func(path string, w io.Writer)) *relayWorker {
	t.Helper()
	dir, err := os.MkdirTemp("", "rw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rw := &relayWorker{sock: filepath.Join(dir, "w.sock"), answer: answer}
	ln, err := net.Listen("unix", rw.sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				rw.serve(c)
			}()
		}
	}()
	return rw
}

func (rw *relayWorker) serve(c net.Conn) {
	r := bufio.NewReader(c)
	if typ, _, err := wsgiadapter.ReadFrame(r, nil); err != nil || typ != wsgiadapter.FrameHello {
		return
	}
	if _, err := c.Write(wsgiadapter.AppendFrame(nil, wsgiadapter.FrameHello, []byte("version=1 pid=1 threads=1"))); err != nil {
		return
	}
	for {
		typ, p, err := wsgiadapter.ReadFrame(r, nil)
		if err != nil || typ != wsgiadapter.FrameRequest {
			return
		}
		req, err := wsgiadapter.ParseRequest(p)
		if err != nil || req.Streamed {
			return
		}
		path := ""
		for i := 0; i+1 < len(req.Environ); i += 2 {
			if req.Environ[i] == "PATH_INFO" {
				path = req.Environ[i+1]
			}
		}
		rw.answer(path, c)
	}
}

// respond writes a whole response: HEADERS, a BODY per chunk, END 0.
func respond(w io.Writer, status string, headers []wsgiadapter.Header, chunks ...string) {
	b := wsgiadapter.AppendFrame(nil, wsgiadapter.FrameHeaders, wsgiadapter.AppendHead(nil, status, headers))
	for _, c := range chunks {
		b = wsgiadapter.AppendFrame(b, wsgiadapter.FrameBody, []byte(c))
	}
	w.Write(wsgiadapter.AppendFrame(b, wsgiadapter.FrameEnd, []byte{0}))
}

// logBuffer collects a logger's lines; wait blocks until one holds s.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return len(p), nil
}

// String is what was logged so far.
func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

func (b *logBuffer) wait(t *testing.T, s string) {
	t.Helper()
	deadline := time.NewTimer(relayDeadline)
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
			t.Fatalf("no log line with %q within %v:\n%s", s, relayDeadline, b.buf.String())
		}
	}
}

// relayProxy serves an app of one single-threaded worker through a real
// HTTP server; it returns the server's address and the proxy's log.
func relayProxy(t *testing.T, rw *relayWorker, l Limits) (string, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	p := New(hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}), nil)
	p.SetLimits(l)
	p.Update(proxymsg.Table{Serial: 1, Apps: []proxymsg.App{{
		Key: "u/app", Prefix: "/", State: proxymsg.AppRunning, QueueTimeout: relayDeadline,
		Workers: []proxymsg.Worker{{ID: "w1", PID: 1, Socket: rw.sock, Threads: 1}},
	}}})
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		p.CloseIdle()
	})
	return srv.Listener.Addr().String(), logs
}

// relayClient is one raw keep-alive HTTP/1.1 connection.
type relayClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRelay(t *testing.T, addr string) *relayClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(relayDeadline))
	return &relayClient{t: t, c: c, br: bufio.NewReader(c)}
}

// do sends a request and reads the response; body is what could be read
// of it and err why reading it stopped (nil: whole).
func (rc *relayClient) do(method, path string) (resp *http.Response, body []byte, err error) {
	rc.t.Helper()
	if _, err := fmt.Fprintf(rc.c, "%s %s HTTP/1.1\r\nHost: test\r\n\r\n", method, path); err != nil {
		rc.t.Fatal(err)
	}
	resp, err = http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("%s %s: %v", method, path, err)
	}
	body, err = io.ReadAll(resp.Body)
	return resp, body, err
}

func hdrs(kv ...string) []wsgiadapter.Header {
	var h []wsgiadapter.Header
	for i := 0; i+1 < len(kv); i += 2 {
		h = append(h, wsgiadapter.Header{Name: kv[i], Value: kv[i+1]})
	}
	return h
}

func TestDecideFraming(t *testing.T) {
	tests := []struct {
		status  int
		values  []string
		length  int64
		noBody  bool
		problem bool
	}{
		{200, nil, -1, false, false},
		{200, []string{"5"}, 5, false, false},
		{200, []string{"0"}, 0, false, false},
		{200, []string{"5", "5"}, 5, false, true},
		{200, []string{"5, 5"}, 5, false, true},
		{200, []string{"5", "6"}, -1, false, true},
		{200, []string{"5, 6"}, -1, false, true},
		{200, []string{"-1"}, -1, false, true},
		{200, []string{"+5"}, -1, false, true},
		{200, []string{" 5"}, 5, false, false}, // a field value's own whitespace
		{200, []string{"5 "}, 5, false, false},
		{200, []string{"5 5"}, -1, false, true},
		{200, []string{""}, -1, false, true},
		{200, []string{"0x10"}, -1, false, true},
		{200, []string{"99999999999999999999"}, -1, false, true},
		{200, []string{"5", "x"}, -1, false, true},
		{204, []string{"5"}, -1, true, false},
		{304, []string{"5", "6"}, -1, true, false},
		{304, nil, -1, true, false},
		{404, []string{"9"}, 9, false, false},
	}
	for _, tt := range tests {
		f := decideFraming(tt.status, tt.values)
		if f.length != tt.length || f.noBody != tt.noBody || (f.problem != "") != tt.problem {
			t.Errorf("decideFraming(%d, %q) = %+v; want length %d, noBody %v, problem %v", tt.status, tt.values, f, tt.length, tt.noBody, tt.problem)
		}
	}
}

// TestRelayFramesWhatTheAppSends: the front owns response framing (issue
// 10, issue 17 item 4). Each case is checked for what the client gets,
// whether its connection stays usable, and one log line.
func TestRelayFramesWhatTheAppSends(t *testing.T) {
	long := strings.Repeat("x", 27)
	rw := newRelayWorker(t, func(path string, w io.Writer) {
		switch path {
		case "/more":
			respond(w, "200 OK", hdrs("Content-Length", "5"), long)
		case "/more-frames":
			respond(w, "200 OK", hdrs("Content-Length", "5"), "abc", "defgh", "ijk")
		case "/less":
			respond(w, "200 OK", hdrs("Content-Length", "10"), "abc")
		case "/none":
			respond(w, "200 OK", hdrs("Content-Length", "10"))
		case "/dup":
			respond(w, "200 OK", hdrs("Content-Length", "5", "content-length", "5"), "hello")
		case "/list":
			respond(w, "200 OK", hdrs("Content-Length", "5, 5"), "hello")
		case "/conflict":
			respond(w, "200 OK", hdrs("Content-Length", "5", "Content-Length", "6"), "hello!")
		case "/304":
			respond(w, "304 Not Modified", hdrs("ETag", `"a"`, "Content-Length", "3"), "abc")
		case "/204":
			respond(w, "204 No Content", nil, "abc")
		case "/interim":
			respond(w, "103 Early Hints", nil, "abc")
		default:
			respond(w, "200 OK", hdrs("Content-Length", "2"), "ok")
		}
	})
	addr, logs := relayProxy(t, rw, Limits{})
	tests := []struct {
		method, path string
		status       int
		length       []string // the Content-Length header(s) the client gets
		body         string
		broken       bool   // the body ends early, and the connection with it
		log          string // the line the proxy writes, "" for none
	}{
		{"GET", "/more", 200, []string{"5"}, "xxxxx", false, "more than its Content-Length"},
		{"GET", "/more-frames", 200, []string{"5"}, "abcde", false, "more than its Content-Length"},
		{"HEAD", "/more", 200, []string{"5"}, "", false, "more than its Content-Length"},
		{"GET", "/dup", 200, []string{"5"}, "hello", false, "the same value more than once"},
		{"GET", "/list", 200, []string{"5"}, "hello", false, "the same value more than once"},
		{"GET", "/conflict", 200, nil, "hello!", false, "invalid or conflicting values"},
		{"GET", "/304", 304, nil, "", false, "a body with a response that has none"},
		{"GET", "/204", 204, nil, "", false, "a body with a response that has none"},
		{"HEAD", "/none", 200, []string{"10"}, "", false, ""},
		{"GET", "/interim", 502, nil, "", false, "interim status"},
		{"GET", "/less", 200, []string{"10"}, "abc", true, "less than its Content-Length"},
		{"GET", "/none", 200, []string{"10"}, "", true, "less than its Content-Length"},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			before := 0
			if tt.log != "" {
				before = logs.count(tt.log)
			}
			c := dialRelay(t, addr)
			resp, body, err := c.do(tt.method, tt.path)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 502 {
				body, err = []byte(""), nil // the proxy's own page
			}
			if got := resp.Header["Content-Length"]; tt.status != 502 && fmt.Sprint(got) != fmt.Sprint(tt.length) {
				t.Errorf("Content-Length %q, want %q", got, tt.length)
			}
			if string(body) != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
			if tt.broken {
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("reading the body: %v, want it cut short (unexpected EOF)", err)
				}
			} else {
				if err != nil {
					t.Fatalf("reading the body: %v", err)
				}
				// The connection stays in step: the next request on it
				// gets its own answer.
				resp, body, err := c.do("GET", "/ok")
				if err != nil || resp.StatusCode != 200 || string(body) != "ok" {
					t.Errorf("next request on the connection: %d %q %v", resp.StatusCode, body, err)
				}
			}
			if tt.log != "" {
				logs.wait(t, tt.log)
				if n := logs.count(tt.log) - before; n != 1 {
					t.Errorf("%d log lines with %q, want 1", n, tt.log)
				}
			}
		})
	}
	if n := logs.count("[WARN]"); n != 11 {
		t.Errorf("%d WARN lines in all, want one per case that logs (11):\n%s", n, logs)
	}
}

// TestRelayStreamsEachChunk: a chunk reaches the client before the app
// yields the next one (R6).
func TestRelayStreamsEachChunk(t *testing.T) {
	next := make(chan struct{})
	rw := newRelayWorker(t, func(path string, w io.Writer) {
		w.Write(wsgiadapter.AppendFrame(nil, wsgiadapter.FrameHeaders, []byte("200 OK")))
		for i := range 3 {
			w.Write(wsgiadapter.AppendFrame(nil, wsgiadapter.FrameBody, []byte(fmt.Sprintf("chunk %d;", i))))
			select {
			case <-next:
			case <-time.After(relayDeadline):
				return
			}
		}
		w.Write(wsgiadapter.AppendFrame(nil, wsgiadapter.FrameEnd, []byte{0}))
	})
	addr, _ := relayProxy(t, rw, Limits{})
	c := dialRelay(t, addr)
	fmt.Fprintf(c.c, "GET /stream HTTP/1.1\r\nHost: test\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		want := fmt.Sprintf("chunk %d;", i)
		got := make([]byte, len(want))
		if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != want {
			t.Fatalf("chunk %d: %q, %v", i, got, err)
		}
		next <- struct{}{} // only now does the app go on
	}
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Fatalf("after the chunks: %q, %v", rest, err)
	}
}

// bigResponse writes a response of n bytes (a multiple of 1 MiB) of
// pattern, frame by frame from one buffer, and reports when the last byte
// was taken by the proxy.
func bigResponse(w io.Writer, n int, frame []byte, done chan<- struct{}) {
	head := wsgiadapter.AppendFrame(nil, wsgiadapter.FrameHeaders,
		wsgiadapter.AppendHead(nil, "200 OK", hdrs("Content-Length", fmt.Sprint(n))))
	if _, err := w.Write(head); err != nil {
		return
	}
	hdr := wsgiadapter.AppendFrameHeader(nil, wsgiadapter.FrameBody, len(frame))
	for sent := 0; sent < n; sent += len(frame) {
		if _, err := w.Write(hdr); err != nil {
			return
		}
		if _, err := w.Write(frame); err != nil {
			return
		}
	}
	if _, err := w.Write(wsgiadapter.AppendFrame(nil, wsgiadapter.FrameEnd, []byte{0})); err == nil && done != nil {
		done <- struct{}{}
	}
}

func patternFrame() []byte {
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// slowClient asks for path and reads nothing. (Its receive buffer stays
// as the kernel sizes it: one shrunk after the handshake makes TCP crawl
// on its own.)
func slowClient(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path)
	return c
}

// TestRelayClientThatNeverReads: the worker is freed while the client
// reads nothing (its response goes to the spool), and the client is cut
// after send_timeout (issue 10). The spooler must have taken the whole
// response before send_timeout ends the client (and with it the
// worker's connection): 16 MiB in 3 s leaves room on a loaded machine,
// where 64 MiB in 1 s did not always.
func TestRelayClientThatNeverReads(t *testing.T) {
	spoolTmpFn = t.TempDir
	defer func() { spoolTmpFn = os.TempDir }()
	frame := patternFrame()
	done := make(chan struct{}, 1)
	const size = 16 << 20
	rw := newRelayWorker(t, func(path string, w io.Writer) {
		if path == "/big" {
			bigResponse(w, size, frame, done)
			return
		}
		respond(w, "200 OK", hdrs("Content-Length", "2"), "ok")
	})
	addr, logs := relayProxy(t, rw, Limits{SendTimeout: 3 * time.Second})
	slow := slowClient(t, addr, "/big")
	select {
	case <-done: // the proxy took the whole response from the worker
	case <-time.After(relayDeadline):
		t.Fatalf("the worker is still held by a client that reads nothing:\n%s", logs)
	}
	logs.wait(t, "spooling the rest of the response")
	// The app's only thread is free: another client is served while the
	// first still reads nothing.
	resp, body, err := dialRelay(t, addr).do("GET", "/hello")
	if err != nil || resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("second request while the first client reads nothing: %d %q %v", resp.StatusCode, body, err)
	}
	logs.wait(t, "client read nothing for send_timeout")
	// The proxy's end is gone (reset, what was queued for the client
	// dropped): what the client sends now is answered with a reset, and
	// it gets no more than was in flight.
	slow.SetDeadline(time.Now().Add(relayDeadline))
	slow.Write([]byte("x"))
	n, err := io.Copy(io.Discard, slow)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the connection of a client that read nothing: %d bytes read, then %v; want a reset", n, err)
	}
	if n >= size {
		t.Fatalf("the client got the whole response (%d bytes) after being cut", n)
	}
	waitFor(t, func() bool { return spoolMem.Load() == 0 && spoolDisk.Load() == 0 })
}

// TestRelaySlowClientGetsItAll: a client that pauses has its response
// spooled (memory, then a file) and the worker freed; when it reads on,
// it gets every byte, in order.
func TestRelaySlowClientGetsItAll(t *testing.T) {
	dir := t.TempDir()
	spoolTmpFn = func() string { return dir }
	defer func() { spoolTmpFn = os.TempDir }()
	frame := patternFrame()
	done := make(chan struct{}, 1)
	const size = 16 << 20
	rw := newRelayWorker(t, func(path string, w io.Writer) {
		if path == "/big" {
			bigResponse(w, size, frame, done)
			return
		}
		respond(w, "200 OK", hdrs("Content-Length", "2"), "ok")
	})
	addr, logs := relayProxy(t, rw, Limits{SendTimeout: relayDeadline})
	slow := slowClient(t, addr, "/big")
	select {
	case <-done:
	case <-time.After(relayDeadline):
		t.Fatal("the worker is still held by a client that pauses")
	}
	logs.wait(t, "spooling the rest of the response")
	if spoolDisk.Load() == 0 {
		t.Errorf("a 16 MiB response spooled nothing to its file")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("spool files have names: %v", entries)
	}
	resp, body, err := dialRelay(t, addr).do("GET", "/hello")
	if err != nil || resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("second request while the first client pauses: %d %q %v", resp.StatusCode, body, err)
	}
	// Now the client reads it all.
	slow.SetReadDeadline(time.Now().Add(relayDeadline))
	r, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r.Body)
	if err != nil || len(got) != size {
		t.Fatalf("read %d bytes, %v; want %d", len(got), err, size)
	}
	for off := 0; off < size; off += len(frame) {
		if !bytes.Equal(got[off:off+len(frame)], frame) {
			t.Fatalf("the body differs in its MiB at %d", off)
		}
	}
	waitFor(t, func() bool { return spoolMem.Load() == 0 && spoolDisk.Load() == 0 })
}

// Issue 10: a body that fails while it streams to a worker (buffering
// and spooling off) is answered with the client's failure, as one that
// failed before a worker was taken: 408 too slow, 400 broken. The body
// writer closes the worker connection, and the relay used to call that
// 502, the worker's failure.
func TestStreamedBodyFailureIsTheClients(t *testing.T) {
	off := Limits{BufferRequestBody: -1, RequestSpoolLimit: -1, ClientBodyTimeout: 300 * time.Millisecond}
	for _, c := range []struct {
		name, head, body string
		closeWrite       bool
		want             int
	}{
		{"stops sending", "Content-Length: 200000", strings.Repeat("x", 100<<10), false, http.StatusRequestTimeout},
		{"cut short", "Content-Length: 200000", strings.Repeat("x", 100<<10), true, http.StatusBadRequest},
		{"bad chunk size", "Transfer-Encoding: chunked", "5\r\nhello\r\nzz\r\n", false, http.StatusBadRequest},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newEchoWorker(t)
			_, addr := frontProxy(t, w, off, 0)
			rc := dialRaw(t, addr)
			rc.send("POST /up HTTP/1.1\r\nHost: site.test\r\n" + c.head + "\r\n\r\n" + c.body)
			if c.closeWrite {
				rc.c.(*net.TCPConn).CloseWrite()
			}
			resp, _ := rc.response("POST")
			if resp.StatusCode != c.want {
				t.Errorf("status %d, want %d", resp.StatusCode, c.want)
			}
			if !rc.closed() {
				t.Error("the connection stays open after a failed body")
			}
			if n := w.requests(); n != 0 {
				t.Errorf("the worker answered %d requests; it never got a whole body", n)
			}
		})
	}
}

// Issue 10: large bodies in 1 MiB frames, as the worker sends them, are
// relayed held to their framing: every byte in order, a body past its
// Content-Length trimmed (the connection kept), one short of it or cut
// by the worker's death mid-frame a broken response of the app's bytes.
func TestRelayLargeBodies(t *testing.T) {
	frame := patternFrame()
	rw := newRelayWorker(t, func(path string, w io.Writer) {
		head := func(length int) {
			w.Write(wsgiadapter.AppendFrame(nil, wsgiadapter.FrameHeaders,
				wsgiadapter.AppendHead(nil, "200 OK", hdrs("Content-Length", fmt.Sprint(length)))))
		}
		body := func(b []byte) {
			w.Write(wsgiadapter.AppendFrameHeader(nil, wsgiadapter.FrameBody, len(b)))
			w.Write(b)
		}
		end := func() { w.Write(wsgiadapter.AppendFrame(nil, wsgiadapter.FrameEnd, []byte{0})) }
		switch path {
		case "/4m":
			bigResponse(w, 4<<20, frame, nil)
		case "/more": // 1 MiB announced, 1.25 MiB sent
			head(1 << 20)
			body(frame)
			body(frame[:256<<10])
			end()
		case "/less": // 2 MiB announced, 1 MiB sent
			head(2 << 20)
			body(frame)
			end()
		case "/dies": // a 1 MiB frame announced, half of it sent
			head(1 << 20)
			w.Write(wsgiadapter.AppendFrameHeader(nil, wsgiadapter.FrameBody, len(frame)))
			w.Write(frame[:512<<10])
			w.(net.Conn).Close()
		default:
			respond(w, "200 OK", hdrs("Content-Length", "2"), "ok")
		}
	})
	addr, logs := relayProxy(t, rw, Limits{})
	c := dialRelay(t, addr)
	for _, path := range []string{"/4m", "/more", "/hello"} {
		resp, body, err := c.do("GET", path)
		want := map[string]int{"/4m": 4 << 20, "/more": 1 << 20, "/hello": 2}[path]
		if err != nil || resp.StatusCode != 200 || len(body) != want {
			t.Fatalf("%s: %d, %d bytes, %v; want 200, %d bytes", path, resp.StatusCode, len(body), err, want)
		}
		for off := 0; off+len(frame) <= len(body); off += len(frame) {
			if !bytes.Equal(body[off:off+len(frame)], frame) {
				t.Fatalf("%s: the body differs in its MiB at %d", path, off)
			}
		}
	}
	logs.wait(t, "app sent more than its Content-Length")
	for _, path := range []string{"/less", "/dies"} {
		resp, body, err := dialRelay(t, addr).do("GET", path)
		if err == nil || resp.StatusCode != 200 || len(body) >= int(resp.ContentLength) {
			t.Errorf("%s: %d, %d of %d bytes, %v; want a broken response", path, resp.StatusCode, len(body), resp.ContentLength, err)
		}
		if !bytes.Equal(body, frame[:len(body)]) {
			t.Errorf("%s: the bytes received are not the app's", path)
		}
	}
	logs.wait(t, "worker failed mid-response")
}

// Issue 10: once the spools of slow clients that held spoolTidyPeak or
// more at once are all empty, the proxy asks for its free memory to go
// back to the system (20 never-reading clients left it at 3.6 times its
// size a minute after they left); smaller spools do not.
func TestSpoolsDrainedAskForTidy(t *testing.T) {
	p := New(hclog.NewNullLogger(), nil)
	fill := func(n int) []*spool {
		var sps []*spool
		chunk := bytes.Repeat([]byte("s"), spoolChunk)
		for i := 0; i < n; i++ {
			sp := newSpool()
			for sp.mem < spoolMemMax {
				if !sp.put(chunk, p) {
					t.Fatal("put on an open spool failed")
				}
			}
			sps = append(sps, sp)
		}
		return sps
	}
	asked := spoolTidies.Load()
	tidyAsked := func() bool {
		n := spoolTidies.Load()
		defer func() { asked = n }()
		return n != asked
	}
	if spoolMem.Load() != 0 {
		t.Fatalf("spools of other tests hold %d bytes", spoolMem.Load())
	}
	for _, sp := range fill(spoolTidyPeak/spoolMemMax - 1) {
		sp.close()
	}
	if tidyAsked() {
		t.Error("spools below spoolTidyPeak asked for a tidy")
	}
	sps := fill(spoolTidyPeak / spoolMemMax)
	for _, sp := range sps[1:] {
		sp.close()
		if tidyAsked() {
			t.Fatal("a tidy asked for while a spool still holds memory")
		}
	}
	sps[0].close()
	if !tidyAsked() {
		t.Error("no tidy asked for once spools that held spoolTidyPeak were empty")
	}
}
