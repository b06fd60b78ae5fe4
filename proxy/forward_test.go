package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/proxymsg"
	"github.com/pyhost/pyhost/wsgiadapter"
)

// echoWorker speaks the worker's side of the protocol and answers each
// request with what it received: the environ and the body, as JSON.
type echoWorker struct {
	path string
	mu   sync.Mutex
	seen []echoed // guarded by mu
}

type echoed struct {
	Env      map[string]string
	Body     []byte
	Streamed bool
}

func newEchoWorker(t *testing.T) *echoWorker {
	t.Helper()
	e := &echoWorker{path: filepath.Join(t.TempDir(), "echo.sock")}
	ln, err := net.Listen("unix", e.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go e.serve(c)
		}
	}()
	return e
}

func (e *echoWorker) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	if typ, _, err := wsgiadapter.ReadFrame(r, nil); err != nil || typ != wsgiadapter.FrameHello {
		return
	}
	c.Write(wsgiadapter.AppendFrame(nil, wsgiadapter.FrameHello, []byte("version=1 pid=42 threads=4")))
	for {
		typ, p, err := wsgiadapter.ReadFrame(r, nil)
		if err != nil || typ != wsgiadapter.FrameRequest {
			return
		}
		req, err := wsgiadapter.ParseRequest(p)
		if err != nil {
			return
		}
		got := echoed{Env: map[string]string{}, Body: bytes.Clone(req.Body), Streamed: req.Streamed}
		for i := 0; i+1 < len(req.Environ); i += 2 {
			got.Env[req.Environ[i]] = req.Environ[i+1]
		}
		for req.Streamed {
			typ, p, err := wsgiadapter.ReadFrame(r, nil)
			if err != nil || typ != wsgiadapter.FrameBody {
				return // the proxy broke the body off: no answer
			}
			if len(p) == 0 {
				break
			}
			got.Body = append(got.Body, p...)
		}
		e.mu.Lock()
		e.seen = append(e.seen, got)
		e.mu.Unlock()
		body, _ := json.Marshal(got)
		out := wsgiadapter.AppendFrame(nil, wsgiadapter.FrameHeaders, wsgiadapter.AppendHead(nil, "200 OK",
			[]wsgiadapter.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Content-Length", Value: strconv.Itoa(len(body))}}))
		out = wsgiadapter.AppendFrame(out, wsgiadapter.FrameBody, body)
		out = wsgiadapter.AppendFrame(out, wsgiadapter.FrameEnd, []byte{0})
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// requests is how many requests reached the worker whole.
func (e *echoWorker) requests() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.seen)
}

// frontProxy serves a Proxy with limits l, routing everything to one app
// whose worker is w, on a loopback HTTP server built as Run builds it.
func frontProxy(t *testing.T, w *echoWorker, l Limits, maxBody int64) (*Proxy, string) {
	p, addr, _ := frontProxySettled(t, w, l, maxBody)
	return p, addr
}

// frontProxySettled is frontProxy, and a channel that gets a token each
// time a handler has returned (its connection idle or closed), so a
// test can look at what the handler left behind.
func frontProxySettled(t *testing.T, w *echoWorker, l Limits, maxBody int64) (*Proxy, string, <-chan struct{}) {
	t.Helper()
	p := New(hclog.NewNullLogger(), nil)
	if l.SpoolDir == "" {
		l.SpoolDir = t.TempDir()
	}
	p.SetLimits(l)
	p.Update(proxymsg.Table{Apps: []proxymsg.App{{Key: "u/app", Prefix: "/", State: proxymsg.AppRunning,
		QueueTimeout: time.Minute, StartupTimeout: time.Minute, QueueLimit: 100, MaxBody: maxBody,
		Workers: []proxymsg.Worker{{ID: "w1", PID: 42, Socket: w.path, Threads: 4}}}}})
	srv := httptest.NewUnstartedServer(p)
	srv.Config = newServer(p, p.limits, hclog.NewNullLogger())
	settled := make(chan struct{}, 100)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateIdle || st == http.StateClosed {
			select {
			case settled <- struct{}{}:
			default:
			}
		}
	}
	srv.Start()
	t.Cleanup(func() { srv.Close(); p.CloseIdle() })
	return p, srv.Listener.Addr().String(), settled
}

func waitSettled(t *testing.T, settled <-chan struct{}) {
	t.Helper()
	select {
	case <-settled:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not return")
	}
}

// rawConn is a client that writes the request by hand.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// Nothing below may hang the test: the proxy answers well within.
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("send: %v", err)
	}
}

// response reads one response; its body is read whole.
func (rc *rawConn) response(method string) (*http.Response, string) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.r, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("read response body: %v", err)
	}
	return resp, string(b)
}

// closed reports whether the proxy closed the connection (EOF or a
// reset) rather than waiting for another request.
func (rc *rawConn) closed() bool {
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := rc.r.ReadByte()
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func echoOf(t *testing.T, body string) echoed {
	t.Helper()
	var e echoed
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("not the worker's echo: %v: %.200s", err, body)
	}
	return e
}

// A body that stops half-way is 408 after client_body_timeout, the
// connection closed, and no worker ever saw the request: the old proxy
// streamed a body over 64 KiB to a worker thread with no deadline, and
// one under it read with no deadline.
func TestSlowBodyIsCutBeforeAWorker(t *testing.T) {
	for _, c := range []struct {
		name       string
		size, sent int
		l          Limits
	}{
		{"small, in memory", 10, 3, Limits{ClientBodyTimeout: 300 * time.Millisecond}},
		{"over 64 KiB, in memory", 200 << 10, 100 << 10, Limits{ClientBodyTimeout: 300 * time.Millisecond}},
		{"over buffer_request_body, spooled", 300 << 10, 299 << 10, Limits{ClientBodyTimeout: 300 * time.Millisecond, BufferRequestBody: 64 << 10}},
		{"min rate", 100, 10, Limits{ClientBodyTimeout: 300 * time.Millisecond, ClientBodyMinRate: 1 << 20}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newEchoWorker(t)
			p, addr := frontProxy(t, w, c.l, 0)
			rc := dialRaw(t, addr)
			rc.send(fmt.Sprintf("POST /up HTTP/1.1\r\nHost: site.test\r\nContent-Length: %d\r\n\r\n", c.size))
			if c.name == "min rate" {
				// Trickle: each byte well within the timeout, too slow
				// for the rate. The deadline ends it, not this loop.
				go func() {
					for i := 0; i < c.sent; i++ {
						if _, err := rc.c.Write([]byte("x")); err != nil {
							return
						}
						time.Sleep(50 * time.Millisecond)
					}
				}()
			} else {
				rc.send(strings.Repeat("x", c.sent))
			}
			resp, _ := rc.response("POST")
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Errorf("status %d, want 408", resp.StatusCode)
			}
			if !rc.closed() {
				t.Error("the connection stays open after a body that timed out")
			}
			if n := w.requests(); n != 0 {
				t.Errorf("the worker got %d requests; a slow body must never reach it", n)
			}
			if s := p.uploadSpooled.Load(); s != 0 {
				t.Errorf("%d bytes still counted as spooled", s)
			}
		})
	}
}

// A body cut short, or with a bad chunk size, is 400, never "200 with
// Content-Length: 0" nor a 502 from a worker that got half of it.
func TestBrokenBodyIs400(t *testing.T) {
	for _, c := range []struct{ name, head, body string }{
		{"truncated", "Content-Length: 10", "abc"},
		{"bad chunk size", "Transfer-Encoding: chunked", "zz\r\nhello\r\n0\r\n\r\n"},
		{"truncated chunked", "Transfer-Encoding: chunked", "5\r\nhel"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newEchoWorker(t)
			_, addr := frontProxy(t, w, Limits{}, 0)
			rc := dialRaw(t, addr)
			rc.send("POST / HTTP/1.1\r\nHost: site.test\r\n" + c.head + "\r\n\r\n" + c.body)
			rc.c.(*net.TCPConn).CloseWrite()
			resp, _ := rc.response("POST")
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status %d, want 400", resp.StatusCode)
			}
			if !rc.closed() {
				t.Error("the connection stays open")
			}
			if n := w.requests(); n != 0 {
				t.Errorf("the worker got %d requests", n)
			}
		})
	}
}

// Bodies reach the worker whole and in order, however they were held:
// inline, from memory, from the spool, or partly streamed when the spool
// is full or off; a chunked one stays one to the app (no CONTENT_LENGTH,
// wsgi.input_terminated), however it was held.
func TestBodiesArriveWhole(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16) // 300 KiB
	for _, c := range []struct {
		name     string
		l        Limits
		body     []byte
		chunked  bool
		streamed bool
		length   bool // CONTENT_LENGTH given to the app
	}{
		{"small inline", Limits{}, []byte("hello"), false, false, true},
		{"small chunked, inline", Limits{}, []byte("hello"), true, false, false},
		{"in memory, sent streamed", Limits{}, big, false, true, true},
		{"chunked in memory", Limits{}, big, true, true, false},
		{"spooled", Limits{BufferRequestBody: 64 << 10}, big, false, true, true},
		{"chunked, memory then spool", Limits{BufferRequestBody: 64 << 10}, big, true, true, false},
		{"spool limit reached: the rest streams", Limits{BufferRequestBody: 64 << 10, RequestSpoolLimit: 100 << 10}, big, false, true, true},
		{"chunked past the spool limit", Limits{BufferRequestBody: 64 << 10, RequestSpoolLimit: 100 << 10}, big, true, true, false},
		{"buffering and spooling off", Limits{BufferRequestBody: -1, RequestSpoolLimit: -1}, big, true, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newEchoWorker(t)
			p, addr, settled := frontProxySettled(t, w, c.l, 0)
			var rd io.Reader = bytes.NewReader(c.body)
			if c.chunked {
				rd = io.MultiReader(rd) // no length known: net/http sends it chunked
			}
			req, _ := http.NewRequest("POST", "http://"+addr+"/up", rd)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			e := echoOf(t, string(b))
			if !bytes.Equal(e.Body, c.body) {
				t.Errorf("the worker got %d bytes, want %d, the same", len(e.Body), len(c.body))
			}
			if e.Streamed != c.streamed {
				t.Errorf("streamed %v, want %v", e.Streamed, c.streamed)
			}
			cl, ok := e.Env["CONTENT_LENGTH"]
			if ok != c.length || ok && cl != strconv.Itoa(len(c.body)) {
				t.Errorf("CONTENT_LENGTH %q (set: %v), want set: %v", cl, ok, c.length)
			}
			if c.chunked != resp.Close {
				t.Errorf("connection closed after the response: %v; want it only after a chunked request", resp.Close)
			}
			waitSettled(t, settled)
			if s, m := p.uploadSpooled.Load(), p.uploadMem.Load(); s != 0 || m != 0 {
				t.Errorf("%d bytes still counted as spooled, %d in memory", s, m)
			}
		})
	}
}

// A chunked body over max_body is 413 before any worker sees it.
func TestChunkedOverMaxBodyIs413(t *testing.T) {
	w := newEchoWorker(t)
	_, addr := frontProxy(t, w, Limits{}, 1000)
	req, _ := http.NewRequest("POST", "http://"+addr+"/", io.MultiReader(bytes.NewReader(make([]byte, 5000))))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || w.requests() != 0 {
		t.Errorf("status %d, worker requests %d; want 413 and none", resp.StatusCode, w.requests())
	}
}

func TestBodyDeadline(t *testing.T) {
	now := time.Unix(1000, 0)
	const timeout = 10 * time.Second
	cases := []struct {
		name     string
		rate     int64
		received int64
		waited   time.Duration
		want     time.Duration // after now
	}{
		{"no rate: the timeout per read", 0, 0, time.Hour, timeout},
		{"a fresh body: the timeout", 100, 0, 0, timeout},
		{"waited half of it", 100, 0, 5 * time.Second, 5 * time.Second},
		{"bytes buy time", 100, 1000, 15 * time.Second, 5 * time.Second},
		{"well ahead: never past the per-read timeout", 100, 1 << 20, time.Second, timeout},
		{"behind: at once", 100, 100, time.Minute, 0},
		{"huge counts do not overflow", 1, 1 << 62, 0, timeout},
	}
	for _, c := range cases {
		if got := bodyDeadline(now, timeout, c.rate, c.received, c.waited).Sub(now); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// trickle yields its bytes one Read at a time.
type trickle struct{ left int }

func (r *trickle) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	r.left--
	p[0] = 'x'
	return 1, nil
}

// Memory grows with what arrives, not with what is announced.
func TestReadUpToGrowsWithTheBytes(t *testing.T) {
	var granted int64
	grow := func(n int64) bool { granted += n; return true }
	buf, eof, err := readUpTo(&trickle{left: 3}, 1<<20, false, grow)
	if err != nil || !eof || string(buf) != "xxx" || cap(buf) > 4<<10 || granted != int64(cap(buf)) {
		t.Errorf("3 bytes of a 1 MiB limit: %q eof %v err %v cap %d granted %d", buf, eof, err, cap(buf), granted)
	}
	granted = 0
	buf, eof, err = readUpTo(&trickle{left: 100 << 10}, 64<<10, false, grow)
	if err != nil || eof || len(buf) != 64<<10 || cap(buf) != 64<<10 || granted != 64<<10 {
		t.Errorf("past the limit: len %d cap %d eof %v err %v granted %d", len(buf), cap(buf), eof, err, granted)
	}
	// The budget spent: it stops at what it was granted.
	granted = 0
	buf, eof, err = readUpTo(&trickle{left: 100 << 10}, 64<<10, false, func(n int64) bool {
		if granted+n > 4<<10 {
			return false
		}
		granted += n
		return true
	})
	if err != nil || eof || len(buf) != 4<<10 {
		t.Errorf("budget of 4 KiB: len %d eof %v err %v", len(buf), eof, err)
	}
}

// Past the memory budget, bodies go to the spool file whole, and every
// byte of both budgets comes back.
func TestMemoryBudgetSpillsToTheSpool(t *testing.T) {
	w := newEchoWorker(t)
	p, addr, settled := frontProxySettled(t, w, Limits{}, 0)
	p.uploadMem.Store(uploadMemTotal - 8<<10) // as if other bodies held nearly all of it
	body := bytes.Repeat([]byte("m"), 200<<10)
	resp, err := http.Post("http://"+addr+"/", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if e := echoOf(t, string(b)); !bytes.Equal(e.Body, body) {
		t.Errorf("the worker got %d bytes, want %d", len(e.Body), len(body))
	}
	waitSettled(t, settled)
	if m, s := p.uploadMem.Load(), p.uploadSpooled.Load(); m != uploadMemTotal-8<<10 || s != 0 {
		t.Errorf("after the request: memory %d (want %d), spooled %d (want 0)", m, uploadMemTotal-8<<10, s)
	}
}

// A body read whole into one of the pooled inline buffers (cap
// InlineBodyMax) is still held to its limit, and goes back to the pool
// only when it went inline.
func TestReadUpToPooledBufferKeepsToTheLimit(t *testing.T) {
	src := bytes.Repeat([]byte("p"), 100<<10)
	grow := func(int64) bool { return true }
	// The first read fills the first 4 KiB; the next growth is to the
	// whole limit at once, from the pool.
	buf, eof, err := readUpTo(bytes.NewReader(src), 40<<10, false, grow)
	if err != nil || eof || len(buf) != 40<<10 || cap(buf) != wsgiadapter.InlineBodyMax {
		t.Fatalf("40 KiB of 100: len %d cap %d eof %v err %v", len(buf), cap(buf), eof, err)
	}
	var counter atomic.Int64
	rb := &requestBody{mem: buf, memCounter: &counter}
	rb.release()
	rb = &requestBody{mem: buf, memCounter: &counter, recycle: true}
	rb.release()
	if rb.mem != nil {
		t.Errorf("release kept the buffer")
	}
	// What the pool gives next is a whole buffer again, whichever it is:
	// the next body read whole uses it.
	for range 3 {
		buf, eof, err = readUpTo(bytes.NewReader(src[:60<<10]), 60<<10, false, grow)
		if err != nil || len(buf) != 60<<10 || cap(buf) != wsgiadapter.InlineBodyMax || !bytes.Equal(buf, src[:60<<10]) {
			t.Fatalf("a body read after a release: len %d cap %d eof %v err %v", len(buf), cap(buf), eof, err)
		}
		rb = &requestBody{mem: buf, memCounter: &counter, recycle: true}
		rb.release()
	}
}

// countingReader counts its Read calls.
type countingReader struct {
	r     io.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}

// An eager read of a small body sent at once takes its whole size before
// the first read: one Read for the body and one for its EOF, where the
// first 4 KiB cost a read of their own; the grants add up to the body.
func TestReadUpToEagerReadsOnce(t *testing.T) {
	src := bytes.Repeat([]byte("e"), 60<<10)
	for _, eager := range []bool{false, true} {
		var granted int64
		in := &countingReader{r: bytes.NewReader(src)}
		buf, eof, err := readUpTo(in, int64(len(src)), eager, func(n int64) bool { granted += n; return true })
		if err != nil || eof || !bytes.Equal(buf, src) || granted != int64(len(src)) {
			t.Fatalf("eager %v: len %d eof %v err %v granted %d cap %d", eager, len(buf), eof, err, granted, cap(buf))
		}
		want := 2
		if eager {
			want = 1
		}
		if in.reads != want {
			t.Errorf("eager %v: %d reads, want %d", eager, in.reads, want)
		}
	}
}
