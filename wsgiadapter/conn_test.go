package wsgiadapter

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testDeadline bounds every wait of these tests: a test that would hang
// fails after it instead. It is a deadline, never a synchronization.
const testDeadline = 10 * time.Second

// fakeWorker is a worker written in Go: it listens on a UNIX socket and
// runs serve for every connection it accepts.
type fakeWorker struct {
	path     string
	ln       net.Listener
	accepted atomic.Int32
	stopping atomic.Bool // the test is over: I/O errors are expected

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

// fakeConn is the worker's end of one connection.
type fakeConn struct {
	t  *testing.T
	w  *fakeWorker
	nc net.Conn
	r  *bufio.Reader
	// quiet: the test expects this connection to break; its I/O errors
	// are no failure.
	quiet bool
}

// errorf reports a failure of the fake worker, unless the test is already
// tearing the connections down.
func (fc *fakeConn) errorf(format string, args ...any) {
	if !fc.w.stopping.Load() && !fc.quiet {
		fc.t.Helper()
		fc.t.Errorf(format, args...)
	}
}

func newFakeWorker(t *testing.T, serve func(fc *fakeConn)) *fakeWorker {
	t.Helper()
	path := shortTempDir(t) + "/w.sock"
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	w := &fakeWorker{path: path, ln: ln}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			w.accepted.Add(1)
			nc.SetDeadline(time.Now().Add(testDeadline))
			w.mu.Lock()
			w.conns = append(w.conns, nc)
			w.mu.Unlock()
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				defer nc.Close()
				serve(&fakeConn{t: t, w: w, nc: nc, r: bufio.NewReader(nc)})
			}()
		}
	}()
	t.Cleanup(func() {
		w.stopping.Store(true)
		ln.Close()
		w.mu.Lock()
		for _, c := range w.conns {
			c.Close()
		}
		w.mu.Unlock()
		w.wg.Wait()
	})
	return w
}

// readFrame returns a copy of the next frame's payload.
func (fc *fakeConn) readFrame() (byte, []byte, error) {
	typ, p, err := ReadFrame(fc.r, nil)
	return typ, bytes.Clone(p), err
}

func (fc *fakeConn) write(b []byte) bool {
	if _, err := fc.nc.Write(b); err != nil {
		fc.errorf("write: %v", err)
		return false
	}
	return true
}

// hello answers the proxy's handshake as a version 1 worker.
func (fc *fakeConn) hello() bool {
	return fc.helloWith("version=1 pid=4242 threads=3")
}

func (fc *fakeConn) helloWith(answer string) bool {
	typ, p, err := fc.readFrame()
	if err != nil {
		fc.errorf("read HELLO: %v", err)
		return false
	}
	if typ != FrameHello || string(p) != "versions=1" {
		fc.errorf("handshake frame (%#x, %q), want HELLO %q", typ, p, "versions=1")
		return false
	}
	return fc.write(AppendFrame(nil, FrameHello, []byte(answer)))
}

// request reads one REQUEST and, when it is streamed, its whole body.
// ok is false at a clean end of the connection or after an error.
func (fc *fakeConn) request() (req Request, body []byte, ok bool) {
	typ, p, err := fc.readFrame()
	if err == io.EOF {
		return Request{}, nil, false
	}
	if err != nil {
		fc.errorf("read REQUEST: %v", err)
		return Request{}, nil, false
	}
	if typ != FrameRequest {
		fc.errorf("frame type %#x, want REQUEST", typ)
		return Request{}, nil, false
	}
	req, err = ParseRequest(p)
	if err != nil {
		fc.errorf("%v", err)
		return Request{}, nil, false
	}
	if !req.Streamed {
		return req, req.Body, true
	}
	body, err = fc.streamedBody()
	if err != nil {
		fc.errorf("%v", err)
		return req, nil, false
	}
	return req, body, true
}

// streamedBody reads BODY frames up to the empty one that ends them.
func (fc *fakeConn) streamedBody() ([]byte, error) {
	body := []byte{}
	for {
		typ, p, err := ReadFrame(fc.r, nil)
		if err != nil {
			return body, fmt.Errorf("read request body after %d bytes: %w", len(body), err)
		}
		if typ != FrameBody {
			return body, fmt.Errorf("frame type %#x in a request body", typ)
		}
		if len(p) > MaxBodyFrame {
			return body, fmt.Errorf("BODY frame of %d bytes exceeds MaxBodyFrame", len(p))
		}
		if len(p) == 0 {
			return body, nil
		}
		body = append(body, p...)
	}
}

// response encodes HEADERS, one BODY per chunk and END.
func response(status string, headers []Header, end byte, chunks ...string) []byte {
	b := AppendFrame(nil, FrameHeaders, AppendHead(nil, status, headers))
	for _, c := range chunks {
		b = AppendFrame(b, FrameBody, []byte(c))
	}
	return AppendFrame(b, FrameEnd, []byte{end})
}

// waitEOF blocks until the proxy closes the connection.
func (fc *fakeConn) waitEOF() {
	io.Copy(io.Discard, fc.r)
}

// dialFake dials a fake worker with a bounded handshake and puts a
// deadline on the connection, so no test can hang on it.
func dialFake(t *testing.T, path string) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	c.nc.SetDeadline(time.Now().Add(testDeadline))
	t.Cleanup(func() { c.Close() })
	return c
}

// readAll reads a whole response: the head, the chunks and the error that
// ended it (nil for a complete response).
func readAll(c *Conn) (Head, []byte, error) {
	head, err := c.ReadHead()
	if err != nil {
		return head, nil, err
	}
	var body []byte
	for {
		chunk, err := c.Next()
		if err == io.EOF {
			return head, body, nil
		}
		if err != nil {
			return head, body, err
		}
		if len(chunk) == 0 {
			return head, body, errors.New("Next returned an empty chunk")
		}
		body = append(body, chunk...)
	}
}

// within runs f and fails the test if it does not return in time.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		t.Fatalf("%s did not finish within %v (deadlock?)", what, d)
	}
}

var getEnv = Environ{"REQUEST_METHOD", "GET", "PATH_INFO", "/", "QUERY_STRING", ""}

func TestDialHandshake(t *testing.T) {
	w := newFakeWorker(t, func(fc *fakeConn) {
		if fc.helloWith("version=1 pid=4242 threads=3 future=ignored") {
			fc.waitEOF()
		}
	})
	c := dialFake(t, w.path)
	if c.PID() != 4242 {
		t.Errorf("PID() = %d, want 4242", c.PID())
	}
	if c.threads != 3 {
		t.Errorf("threads = %d, want 3", c.threads)
	}
	if !c.Reusable() {
		t.Errorf("a fresh connection is not Reusable")
	}
}

func TestDialHandshakeFails(t *testing.T) {
	tests := []struct {
		name      string
		answer    []byte // raw bytes the worker sends after reading HELLO
		wantProto bool
	}{
		{"version mismatch", AppendFrame(nil, FrameHello, []byte("version=0")), true},
		{"newer version", AppendFrame(nil, FrameHello, []byte("version=2 pid=1 threads=1")), true},
		{"no version", AppendFrame(nil, FrameHello, []byte("pid=1 threads=1")), true},
		{"no pid", AppendFrame(nil, FrameHello, []byte("version=1 threads=1")), true},
		{"no threads", AppendFrame(nil, FrameHello, []byte("version=1 pid=1")), true},
		{"pid not a number", AppendFrame(nil, FrameHello, []byte("version=1 pid=x threads=1")), true},
		{"malformed field", AppendFrame(nil, FrameHello, []byte("version=1 pid=1 threads=1 junk")), true},
		{"answered with HEADERS", AppendFrame(nil, FrameHeaders, []byte("200 OK")), true},
		{"oversized answer", frameHeader(FrameHello, MaxPayload+1), true},
		{"closed without answer", nil, false},
		{"truncated answer", AppendFrame(nil, FrameHello, []byte("version=1 pid=1 threads=1"))[:10], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newFakeWorker(t, func(fc *fakeConn) {
				if _, _, err := fc.readFrame(); err != nil {
					fc.errorf("%v", err)
					return
				}
				if len(tt.answer) > 0 {
					fc.write(tt.answer)
				}
				// Closing right away, as the real worker does after version=0.
			})
			ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
			defer cancel()
			c, err := Dial(ctx, w.path)
			if err == nil {
				c.Close()
				t.Fatalf("Dial succeeded, want an error")
			}
			if !errors.Is(err, ErrNotDelivered) {
				t.Errorf("err = %v, want ErrNotDelivered (nothing of a request was sent)", err)
			}
			if got := errors.Is(err, ErrProtocol); got != tt.wantProto {
				t.Errorf("errors.Is(%v, ErrProtocol) = %v, want %v", err, got, tt.wantProto)
			}
		})
	}
}

func TestDialMissingSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	_, err := Dial(ctx, shortTempDir(t)+"/missing.sock")
	if !errors.Is(err, ErrNotDelivered) {
		t.Fatalf("err = %v, want ErrNotDelivered", err)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want the cause (ENOENT) kept in the chain", err)
	}
}

func TestDialSilentWorker(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		w := newFakeWorker(t, func(fc *fakeConn) { fc.waitEOF() })
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		var err error
		within(t, testDeadline, "Dial", func() { _, err = Dial(ctx, w.path) })
		if !errors.Is(err, ErrNotDelivered) || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("err = %v, want ErrNotDelivered and os.ErrDeadlineExceeded", err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		w := newFakeWorker(t, func(fc *fakeConn) {
			fc.readFrame()
			cancel() // the proxy gives up while the worker is silent
			fc.waitEOF()
		})
		var err error
		within(t, testDeadline, "Dial", func() { _, err = Dial(ctx, w.path) })
		if !errors.Is(err, ErrNotDelivered) {
			t.Fatalf("err = %v, want ErrNotDelivered", err)
		}
	})
}

// bodyEcho is a fake worker that answers each request with a summary of
// what it received.
func bodyEcho(fc *fakeConn) {
	if !fc.hello() {
		return
	}
	for {
		req, body, ok := fc.request()
		if !ok {
			return
		}
		summary := fmt.Sprintf("streamed=%v len=%d sha=%x env=%q", req.Streamed, len(body), sha256.Sum256(body), []string(req.Environ))
		if !fc.write(response("200 OK", []Header{{"Content-Type", "text/plain"}}, 0, summary)) {
			return
		}
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	r io.Reader
	n int
}

func (c chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

func TestSendBody(t *testing.T) {
	tests := []struct {
		name     string
		length   int  // body bytes the reader holds; -1: no reader at all
		size     int  // size passed to Send; -1: unknown
		chunk    int  // reader chunk size, 0: whole reads
		streamed bool // expected on the wire
	}{
		{name: "no body", length: -1, size: 0},
		{name: "nil body with size", length: -1, size: 10},
		{name: "size zero ignores the reader", length: 5, size: 0},
		{name: "small inline", length: 5, size: 5},
		{name: "inline below the gathered size", length: gatherMin - 1, size: gatherMin - 1},
		{name: "inline gathered from its own buffer", length: gatherMin, size: gatherMin},
		{name: "inline limit", length: InlineBodyMax, size: InlineBodyMax},
		{name: "one over the inline limit", length: InlineBodyMax + 1, size: InlineBodyMax + 1, streamed: true},
		{name: "large streamed", length: 3<<20 + 17, size: 3<<20 + 17, streamed: true},
		{name: "large streamed in odd reads", length: 200_000, size: 200_000, chunk: 999, streamed: true},
		{name: "unknown size small", length: 100, size: -1, streamed: true},
		{name: "unknown size empty", length: 0, size: -1, streamed: true},
		{name: "unknown size large", length: 1<<20 + 1, size: -1, chunk: 1 << 20, streamed: true},
	}
	w := newFakeWorker(t, bodyEcho)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			var data []byte
			if tt.length >= 0 {
				data = randomBytes(tt.length, uint64(i))
				body = bytes.NewReader(data)
				if tt.chunk > 0 {
					body = chunkReader{body, tt.chunk}
				}
			}
			want := data
			if tt.length < 0 || tt.size == 0 {
				want = nil
			}
			env := Environ{"REQUEST_METHOD", "POST", "X_CASE", tt.name}
			c := dialFake(t, w.path)
			if err := c.Send(env, body, int64(tt.size)); err != nil {
				t.Fatalf("Send: %v", err)
			}
			var (
				head Head
				got  []byte
				err  error
			)
			within(t, testDeadline, "the response", func() { head, got, err = readAll(c) })
			if err != nil {
				t.Fatalf("response: %v", err)
			}
			wantSummary := fmt.Sprintf("streamed=%v len=%d sha=%x env=%q", tt.streamed, len(want), sha256.Sum256(want), []string(env))
			if head.Status != 200 || string(got) != wantSummary {
				t.Fatalf("worker saw %q\nwant        %q", got, wantSummary)
			}
			if tt.streamed {
				// The body writer may still be ending; Reusable waits for it.
				if !c.Reusable() {
					t.Errorf("Reusable() = false after a complete streamed request")
				}
			} else if !c.Reusable() {
				t.Errorf("Reusable() = false after a complete request")
			}
		})
	}
}

func TestResponse(t *testing.T) {
	hdrs := []Header{{"Content-Type", "text/plain"}, {"X-Multi", "a"}, {"X-Multi", "b"}}
	big := strings.Repeat("0123456789abcdef", MaxBodyFrame/16)
	tests := []struct {
		name       string
		wire       []byte // what the worker sends after reading the request
		closeAfter bool   // the worker closes its end after wire
		headErr    error  // expected ReadHead error (errors.Is)
		headFail   bool   // ReadHead must fail, with any error
		wantStatus int
		wantBody   string
		endErr     error // expected error ending Next; nil: io.EOF
		notEOF     bool  // the error must not match io.EOF
		reusable   bool
	}{
		{name: "complete", wire: response("200 OK", hdrs, 0, "hel", "lo"), wantStatus: 200, wantBody: "hello", reusable: true},
		{name: "empty body", wire: response("204 No Content", nil, 0), wantStatus: 204, reusable: true},
		{name: "frame larger than the read buffer", wire: response("200 OK", nil, 0, big, "!"), wantStatus: 200, wantBody: big + "!", reusable: true},
		{name: "app failed", wire: response("200 OK", nil, 1, "part"), wantStatus: 200, wantBody: "part", endErr: ErrAppFailed, reusable: true},
		{name: "closed mid-body", wire: response("200 OK", nil, 0, "part")[:len(response("200 OK", nil, 0, "part"))-6],
			closeAfter: true, wantStatus: 200, wantBody: "part", endErr: io.ErrUnexpectedEOF, notEOF: true},
		// A frame is streamed as it arrives, so what came of it is
		// delivered before the error that breaks the response.
		{name: "closed inside a BODY frame", wire: append(AppendFrame(nil, FrameHeaders, []byte("200 OK")), append(frameHeader(FrameBody, 10), "abc"...)...),
			closeAfter: true, wantStatus: 200, wantBody: "abc", endErr: io.ErrUnexpectedEOF, notEOF: true},
		{name: "closed inside an END header", wire: append(AppendFrame(nil, FrameHeaders, []byte("200 OK")), FrameEnd, 0),
			closeAfter: true, wantStatus: 200, endErr: io.ErrUnexpectedEOF, notEOF: true},
		{name: "closed before HEADERS", closeAfter: true, headFail: true},
		{name: "BODY before HEADERS", wire: AppendFrame(nil, FrameBody, []byte("x")), headErr: ErrProtocol},
		{name: "END before HEADERS", wire: AppendFrame(nil, FrameEnd, []byte{0}), headErr: ErrProtocol},
		{name: "bad status", wire: AppendFrame(nil, FrameHeaders, []byte("2x0 OK")), headErr: ErrProtocol},
		{name: "header with CRLF", wire: AppendFrame(nil, FrameHeaders, []byte("200 OK\x00X\x00a\r\nb")), headErr: ErrProtocol},
		{name: "oversized HEADERS", wire: frameHeader(FrameHeaders, MaxPayload+1), headErr: ErrProtocol},
		{name: "empty BODY", wire: append(AppendFrame(nil, FrameHeaders, []byte("200 OK")), AppendFrame(nil, FrameBody, nil)...),
			wantStatus: 200, endErr: ErrProtocol},
		{name: "END without payload", wire: append(AppendFrame(nil, FrameHeaders, []byte("200 OK")), AppendFrame(nil, FrameEnd, nil)...),
			wantStatus: 200, endErr: ErrProtocol},
		{name: "END with two bytes", wire: append(AppendFrame(nil, FrameHeaders, []byte("200 OK")), AppendFrame(nil, FrameEnd, []byte{0, 0})...),
			wantStatus: 200, endErr: ErrProtocol},
		{name: "END 2", wire: append(AppendFrame(nil, FrameHeaders, []byte("200 OK")), AppendFrame(nil, FrameEnd, []byte{2})...),
			wantStatus: 200, endErr: ErrProtocol},
		{name: "second HEADERS", wire: append(AppendFrame(nil, FrameHeaders, []byte("200 OK")), AppendFrame(nil, FrameHeaders, []byte("200 OK"))...),
			wantStatus: 200, endErr: ErrProtocol},
		{name: "HELLO mid-body", wire: append(AppendFrame(nil, FrameHeaders, []byte("200 OK")), AppendFrame(nil, FrameHello, []byte("version=1"))...),
			wantStatus: 200, endErr: ErrProtocol},
		{name: "unknown type", wire: append(AppendFrame(nil, FrameHeaders, []byte("200 OK")), AppendFrame(nil, 0x09, []byte("x"))...),
			wantStatus: 200, endErr: ErrProtocol},
		{name: "oversized BODY", wire: append(AppendFrame(nil, FrameHeaders, []byte("200 OK")), frameHeader(FrameBody, MaxPayload+1)...),
			wantStatus: 200, endErr: ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newFakeWorker(t, func(fc *fakeConn) {
				if !fc.hello() {
					return
				}
				if _, _, ok := fc.request(); !ok {
					return
				}
				if len(tt.wire) > 0 && !fc.write(tt.wire) {
					return
				}
				if !tt.closeAfter {
					fc.waitEOF()
				}
			})
			c := dialFake(t, w.path)
			if err := c.Send(getEnv, nil, 0); err != nil {
				t.Fatalf("Send: %v", err)
			}
			head, err := c.ReadHead()
			if tt.headErr != nil || tt.headFail {
				if err == nil || (tt.headErr != nil && !errors.Is(err, tt.headErr)) {
					t.Fatalf("ReadHead = %+v, %v; want %v", head, err, tt.headErr)
				}
				if c.Reusable() {
					t.Errorf("Reusable() = true after a failed ReadHead")
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadHead: %v", err)
			}
			if head.Status != tt.wantStatus {
				t.Errorf("status = %d, want %d", head.Status, tt.wantStatus)
			}
			var body []byte
			for i := 0; ; i++ {
				chunk, err := c.Next()
				if err == nil {
					if len(chunk) == 0 {
						t.Fatalf("Next returned an empty chunk without error")
					}
					body = append(body, chunk...)
					continue
				}
				want := tt.endErr
				if want == nil {
					if err != io.EOF {
						t.Fatalf("Next error = %v, want io.EOF itself", err)
					}
				} else if !errors.Is(err, want) {
					t.Fatalf("Next error = %v, want %v", err, want)
				}
				if tt.notEOF && errors.Is(err, io.EOF) {
					t.Errorf("Next error = %v matches io.EOF: a broken response must not look complete", err)
				}
				break
			}
			if string(body) != tt.wantBody {
				t.Errorf("body = %q (%d bytes), want %d bytes", truncate(body), len(body), len(tt.wantBody))
			}
			if got := c.Reusable(); got != tt.reusable {
				t.Errorf("Reusable() = %v, want %v", got, tt.reusable)
			}
		})
	}
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

func TestResponseHeadFields(t *testing.T) {
	w := newFakeWorker(t, func(fc *fakeConn) {
		if !fc.hello() {
			return
		}
		if _, _, ok := fc.request(); ok {
			// One write: head, body and END arrive together, as the real
			// worker sends a small response.
			fc.write(response("201 Created", []Header{{"Location", "/x"}, {"Set-Cookie", "a=1"}, {"Set-Cookie", "b=2"}}, 0, "ok"))
			fc.waitEOF()
		}
	})
	c := dialFake(t, w.path)
	if err := c.Send(getEnv, nil, 0); err != nil {
		t.Fatal(err)
	}
	head, err := c.ReadHead()
	if err != nil {
		t.Fatal(err)
	}
	want := Head{Status: 201, Reason: "Created", Headers: []Header{{"Location", "/x"}, {"Set-Cookie", "a=1"}, {"Set-Cookie", "b=2"}}}
	if fmt.Sprint(head) != fmt.Sprint(want) {
		t.Errorf("head = %+v, want %+v", head, want)
	}
	if !c.Buffered() {
		t.Errorf("Buffered() = false with the body already received")
	}
	if chunk, err := c.Next(); err != nil || string(chunk) != "ok" {
		t.Fatalf("Next = %q, %v", chunk, err)
	}
	if _, err := c.Next(); err != io.EOF {
		t.Fatalf("Next = %v, want io.EOF", err)
	}
	if c.Buffered() {
		t.Errorf("Buffered() = true after END")
	}
}

func TestConnReused(t *testing.T) {
	w := newFakeWorker(t, func(fc *fakeConn) {
		if !fc.hello() {
			return
		}
		for n := 1; ; n++ {
			req, body, ok := fc.request()
			if !ok {
				return
			}
			path := ""
			for i := 0; i+1 < len(req.Environ); i += 2 {
				if req.Environ[i] == "PATH_INFO" {
					path = req.Environ[i+1]
				}
			}
			if !fc.write(response("200 OK", nil, 0, fmt.Sprintf("#%d %s %s", n, path, body))) {
				return
			}
		}
	})
	c := dialFake(t, w.path)
	for i, tt := range []struct {
		path string
		body string
		size int64
	}{
		{"/a", "", 0},
		{"/b", "inline", 6},
		{"/c", strings.Repeat("s", InlineBodyMax+10), InlineBodyMax + 10},
		{"/d", "unknown", -1},
		{"/e", "", 0},
	} {
		if !c.Reusable() {
			t.Fatalf("request %d: connection not reusable", i+1)
		}
		if err := c.Send(Environ{"PATH_INFO", tt.path}, strings.NewReader(tt.body), tt.size); err != nil {
			t.Fatalf("request %d: Send: %v", i+1, err)
		}
		_, got, err := readAll(c)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if want := fmt.Sprintf("#%d %s %s", i+1, tt.path, tt.body); string(got) != want {
			t.Fatalf("request %d: got %q, want %q", i+1, truncate(got), truncate([]byte(want)))
		}
	}
	if n := w.accepted.Load(); n != 1 {
		t.Errorf("worker accepted %d connections, want 1", n)
	}
}

func TestSendNotIdle(t *testing.T) {
	w := newFakeWorker(t, func(fc *fakeConn) {
		if fc.hello() {
			fc.waitEOF()
		}
	})
	c := dialFake(t, w.path)
	if err := c.Send(getEnv, nil, 0); err != nil {
		t.Fatal(err)
	}
	if c.Reusable() {
		t.Errorf("Reusable() = true with a request in flight")
	}
	if err := c.Send(getEnv, nil, 0); !errors.Is(err, ErrNotDelivered) {
		t.Fatalf("second Send = %v, want ErrNotDelivered", err)
	}
}

func TestSendPeerClosed(t *testing.T) {
	tests := []struct {
		name string
		body string
		size int64
	}{
		{"no body", "", 0},
		{"inline body", "abc", 3},
		{"streamed body", strings.Repeat("x", InlineBodyMax+1), InlineBodyMax + 1},
		{"unknown size", "abc", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			closed := make(chan struct{})
			w := newFakeWorker(t, func(fc *fakeConn) {
				defer close(closed)
				if fc.hello() {
					fc.nc.Close() // e.g. the worker restarted while the conn idled in the pool
				}
			})
			c := dialFake(t, w.path)
			select {
			case <-closed:
			case <-time.After(testDeadline):
				t.Fatal("fake worker did not close")
			}
			err := c.Send(getEnv, strings.NewReader(tt.body), tt.size)
			if !errors.Is(err, ErrNotDelivered) {
				t.Fatalf("Send = %v, want ErrNotDelivered", err)
			}
			if c.Reusable() {
				t.Errorf("Reusable() = true after a failed Send")
			}
		})
	}
}

func TestSendInlineBodyShort(t *testing.T) {
	w := newFakeWorker(t, func(fc *fakeConn) {
		if fc.hello() {
			fc.waitEOF()
		}
	})
	c := dialFake(t, w.path)
	// Content-Length said 10, the client sent 3: nothing may reach the worker.
	err := c.Send(getEnv, strings.NewReader("abc"), 10)
	if !errors.Is(err, ErrNotDelivered) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Send = %v, want ErrNotDelivered wrapping io.ErrUnexpectedEOF", err)
	}
}

// zeros is an endless body.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestEarlyAnswer: a worker answers before it read the request body. The
// proxy writes the body concurrently with reading the response, so
// neither side may block the other.
func TestEarlyAnswer(t *testing.T) {
	bigResponse := strings.Repeat("r", 4<<20)
	tests := []struct {
		name     string
		body     io.Reader
		size     int64
		response string
		after    func(fc *fakeConn) // what the worker does once it answered
		reusable string             // "yes", "no" or "" (timing-dependent, not checked)
	}{
		{
			name: "answer then drain", body: bytes.NewReader(make([]byte, 8<<20)), size: 8 << 20, response: "early",
			after: func(fc *fakeConn) {
				// The proxy may give up on its body writer once it has
				// the response (bodyGrace) and close: not an error.
				fc.streamedBody()
				fc.waitEOF()
			},
		},
		{
			name: "large answer then drain", body: bytes.NewReader(make([]byte, 8<<20)), size: 8 << 20, response: bigResponse,
			after: func(fc *fakeConn) {
				// The proxy may give up on its body writer once it has
				// the response (bodyGrace) and close: not an error.
				fc.streamedBody()
				fc.waitEOF()
			},
		},
		{
			name: "answer then close without reading an endless body", body: zeros{}, size: -1, response: "bye",
			after: func(fc *fakeConn) {}, reusable: "no",
		},
		{
			name: "large answer then close", body: zeros{}, size: -1, response: bigResponse,
			after: func(fc *fakeConn) {}, reusable: "no",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newFakeWorker(t, func(fc *fakeConn) {
				if !fc.hello() {
					return
				}
				typ, p, err := fc.readFrame()
				if err != nil || typ != FrameRequest {
					fc.errorf("REQUEST: %#x %v", typ, err)
					return
				}
				if req, err := ParseRequest(p); err != nil || !req.Streamed {
					fc.errorf("request %+v, %v; want streamed", req, err)
					return
				}
				var chunks []string
				for s := tt.response; len(s) > 0; {
					n := min(len(s), MaxBodyFrame)
					chunks = append(chunks, s[:n])
					s = s[n:]
				}
				if !fc.write(response("200 OK", nil, 0, chunks...)) {
					return
				}
				tt.after(fc)
			})
			c := dialFake(t, w.path)
			var (
				got []byte
				err error
			)
			within(t, testDeadline, "the exchange", func() {
				if err = c.Send(getEnv, tt.body, tt.size); err != nil {
					return
				}
				_, got, err = readAll(c)
			})
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if string(got) != tt.response {
				t.Fatalf("response is %d bytes, want %d", len(got), len(tt.response))
			}
			switch tt.reusable {
			case "yes":
				if !c.Reusable() {
					t.Errorf("Reusable() = false")
				}
			case "no":
				if c.Reusable() {
					t.Errorf("Reusable() = true, but the worker closed the connection")
				}
			}
		})
	}
}

// errAfter returns n bytes and then err.
type errAfter struct {
	n   int
	err error
}

func (e *errAfter) Read(p []byte) (int, error) {
	if e.n == 0 {
		return 0, e.err
	}
	k := min(len(p), e.n)
	clear(p[:k])
	e.n -= k
	return k, nil
}

// TestStreamedBodyFails: the proxy's body source fails (a client sends a
// malformed chunked body, or fewer bytes than its Content-Length). The
// worker is waiting for the rest of the body, so the request must fail
// promptly instead of both sides waiting for each other forever.
func TestStreamedBodyFails(t *testing.T) {
	tests := []struct {
		name string
		body io.Reader
		size int64
	}{
		{"read error, unknown size", &errAfter{n: 100, err: errors.New("malformed chunked encoding")}, -1},
		{"read error, known size", &errAfter{n: 100, err: io.ErrUnexpectedEOF}, 1 << 20},
		{"body shorter than its size", &errAfter{n: 100, err: io.EOF}, 1 << 20},
		{"body longer than its size", &errAfter{n: 200_000, err: io.EOF}, 100_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newFakeWorker(t, func(fc *fakeConn) {
				if !fc.hello() {
					return
				}
				// Like pyhost_worker.py: the app reads the whole body before
				// answering, and a connection that ends mid-body is dropped.
				fc.quiet = true // the proxy breaks the body off on purpose
				if _, _, ok := fc.request(); ok {
					fc.write(response("200 OK", nil, 0, "unexpected"))
					fc.waitEOF()
				}
			})
			c := dialFake(t, w.path)
			c.nc.SetDeadline(time.Now().Add(3 * time.Second))
			if err := c.Send(getEnv, tt.body, tt.size); err != nil {
				return // refusing up front is fine too
			}
			_, _, err := readAll(c)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("request still pending after its body failed: %v", err)
			}
			if err == nil {
				t.Fatalf("a request whose body failed completed successfully")
			}
			if c.Reusable() {
				t.Errorf("Reusable() = true after the body failed")
			}
		})
	}
}

// TestCloseCancels: Close from another goroutine (the proxy's
// context.AfterFunc) ends a Next that waits for the worker.
func TestCloseCancels(t *testing.T) {
	w := newFakeWorker(t, func(fc *fakeConn) {
		if !fc.hello() {
			return
		}
		if _, _, ok := fc.request(); ok {
			fc.write(AppendFrame(AppendFrame(nil, FrameHeaders, []byte("200 OK")), FrameBody, []byte("first")))
			fc.waitEOF() // then silence: the app is slow
		}
	})
	c := dialFake(t, w.path)
	if err := c.Send(getEnv, nil, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadHead(); err != nil {
		t.Fatal(err)
	}
	if chunk, err := c.Next(); err != nil || string(chunk) != "first" {
		t.Fatalf("Next = %q, %v", chunk, err)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		c.Close()
	}()
	var err error
	within(t, testDeadline, "Next after Close", func() { _, err = c.Next() })
	<-closed
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, ErrAppFailed) {
		t.Fatalf("Next after Close = %v, want a failure that is neither io.EOF nor ErrAppFailed", err)
	}
	if c.Reusable() {
		t.Errorf("Reusable() = true after Close")
	}
}

// TestCloseThenBufferedEnd: Close cancels the request, but the END frame
// is already in the read buffer; Next still returns it and must not make
// the closed connection Reusable again (the pool would keep it).
func TestCloseThenBufferedEnd(t *testing.T) {
	t.Run("sequential", func(t *testing.T) {
		w := newFakeWorker(t, func(fc *fakeConn) {
			if fc.hello() {
				if _, _, ok := fc.request(); ok {
					fc.write(response("200 OK", nil, 0, "hi"))
					fc.waitEOF()
				}
			}
		})
		c := dialFake(t, w.path)
		if err := c.Send(getEnv, nil, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadHead(); err != nil {
			t.Fatal(err)
		}
		c.Close()
		for {
			if _, err := c.Next(); err != nil {
				break
			}
		}
		if c.Reusable() {
			t.Fatalf("Reusable() = true after Close")
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		// Run under -race: Close from another goroutine while Next reads a
		// buffered END.
		w := newFakeWorker(t, func(fc *fakeConn) {
			if fc.hello() {
				if _, _, ok := fc.request(); ok {
					fc.write(response("200 OK", nil, 0, "hi"))
					fc.waitEOF()
				}
			}
		})
		c := dialFake(t, w.path)
		if err := c.Send(getEnv, nil, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadHead(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		closed := make(chan struct{})
		context.AfterFunc(ctx, func() { c.Close(); close(closed) })
		cancel()
		for {
			if _, err := c.Next(); err != nil {
				break
			}
		}
		<-closed
		if c.Reusable() {
			t.Fatalf("Reusable() = true after Close")
		}
	})
}

// awaitQueued blocks until bytes wait unread in nc's receive queue,
// without reading any: a worker about to die with a request unread.
func awaitQueued(nc net.Conn) error {
	rc, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	err = rc.Read(func(fd uintptr) bool {
		var n int
		n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		return ierr != nil || n > 0
	})
	return errors.Join(err, ierr)
}

// Issue 11: a worker that dies with the request unread resets the
// connection; ReadHead says ErrNotRead then, and only then: the proxy
// sends such a request to another worker. After the worker read it, a
// streamed body (the app may be reading it) or any byte of an answer,
// the request is the worker's.
func TestReadHeadNotRead(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		size    int64
		worker  func(fc *fakeConn)
		notRead bool
	}{
		{"closed unread", "", 0, func(fc *fakeConn) {}, true},
		{"closed unread, inline body", "abc", 3, func(fc *fakeConn) {}, true},
		{"read, then closed", "abc", 3, func(fc *fakeConn) {
			fc.request()
		}, false},
		{"closed unread, streamed body", strings.Repeat("x", InlineBodyMax+1), InlineBodyMax + 1, func(fc *fakeConn) {}, false},
		{"part of an answer, then closed unread", "", 0, func(fc *fakeConn) {
			fc.write(response("200 OK", nil, 0, "hi")[:3])
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newFakeWorker(t, func(fc *fakeConn) {
				fc.quiet = true
				if !fc.hello() {
					return
				}
				// The proxy sends the request only after the handshake,
				// so the reader holds none of it yet.
				if err := awaitQueued(fc.nc); err != nil {
					t.Errorf("waiting for the request: %v", err)
				}
				tt.worker(fc)
				fc.nc.Close()
			})
			c := dialFake(t, w.path)
			if err := c.Send(getEnv, strings.NewReader(tt.body), tt.size); err != nil {
				t.Fatalf("Send: %v", err)
			}
			_, err := c.ReadHead()
			if err == nil {
				t.Fatal("ReadHead succeeded on a closed connection")
			}
			if got := errors.Is(err, ErrNotRead); got != tt.notRead {
				t.Fatalf("ReadHead = %v; ErrNotRead %v, want %v", err, got, tt.notRead)
			}
		})
	}
}

// An inline body written from its own buffer (writev) is announced in the
// frame's length, and a frame that would pass MaxPayload is refused
// before anything is written.
func TestExtendFrame(t *testing.T) {
	env := Environ{"REQUEST_METHOD", "POST"}
	body := []byte("gathered body")
	whole, err := AppendRequest(nil, env, false, body)
	if err != nil {
		t.Fatal(err)
	}
	head, err := AppendRequest(nil, env, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	head, err = extendFrame(head, len(body))
	if err != nil {
		t.Fatal(err)
	}
	if got := append(head, body...); !bytes.Equal(got, whole) {
		t.Errorf("head + body = %q, want %q", got, whole)
	}
	head, _ = AppendRequest(nil, env, false, nil)
	if _, err := extendFrame(head, MaxPayload); err == nil {
		t.Error("a frame past MaxPayload was accepted")
	}
}
