package wsgiadapter

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sendApp exercises the worker's response path (issue 10): scatter-gather
// for bodies of every size, sendfile for wsgi.file_wrapper over a file,
// reading for anything else. Bodies are a pattern the test can check
// byte by byte.
const sendApp = `
import io
import os
import threading
import urllib.parse

_SEED = bytes(range(251))  # a prime length: no frame boundary lines up


def pattern(n, start=0):
    reps = (start + n) // len(_SEED) + 2
    return (_SEED * reps)[start:start + n]


_closed = []


class Tracked(io.FileIO):
    def close(self):
        _closed.append(self.name)
        super().close()


def application(environ, start_response):
    path = environ["PATH_INFO"]
    q = dict(urllib.parse.parse_qsl(environ["QUERY_STRING"]))
    if path == "/chunks":
        count, size = int(q["count"]), int(q["size"])
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (pattern(size, i * size) for i in range(count))
    if path == "/bytes":
        body = pattern(int(q["n"]))
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/write":
        write = start_response("200 OK", [])
        write(pattern(int(q["n"])))
        return []
    if path == "/file":
        f = Tracked(q["path"], "rb")
        if "buffered" in q:
            f = io.BufferedReader(f)
            f.read(int(q["buffered"]))  # the app read some itself first
        elif "start" in q:
            f.seek(int(q["start"]))
        headers = []
        if "length" in q:
            headers.append(("Content-Length", q["length"]))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, 65536)
    if path == "/pipe":
        n = int(q["n"])
        r, w = os.pipe()

        def feed():
            with os.fdopen(w, "wb") as out:
                out.write(pattern(n))
        threading.Thread(target=feed, daemon=True).start()
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](os.fdopen(r, "rb"), 8192)
    if path == "/bytesio":
        start_response("200 OK", [("Content-Length", q["length"])] if "length" in q else [])
        return environ["wsgi.file_wrapper"](io.BytesIO(pattern(int(q["n"]))), 1000)
    if path == "/text":
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](open(q["path"], "r"))
    if path == "/closed":
        body = "\n".join(_closed).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
        return [b"hello, world\n"]
    start_response("404 Not Found", [])
    return [b"no"]
`

// pattern is the app's pattern(n, start).
func pattern(n, start int) []byte {
	seed := make([]byte, 251)
	for i := range seed {
		seed[i] = byte(i)
	}
	out := make([]byte, n)
	for i := range out {
		out[i] = seed[(start+i)%len(seed)]
	}
	return out
}

func startSendWorker(t *testing.T) *pyWorker {
	t.Helper()
	w := startPyWorker(t, sendApp)
	if ev := w.nextEvent(t); ev == nil || ev["event"] != "ready" {
		<-w.exited
		t.Fatalf("first status event = %v, want ready", ev)
	}
	return w
}

func query(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v.Encode()
}

// rawResponse sends a GET on a fresh raw connection and returns the
// frames the worker answers with, up to END or the end of the
// connection (ended false then).
type rawFrame struct {
	typ     byte
	payload []byte
}

func rawGet(t *testing.T, sock, path, q string) (frames []rawFrame, ended bool) {
	t.Helper()
	nc, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(testDeadline))
	r := bufio.NewReader(nc)
	req, err := AppendRequest(AppendFrame(nil, FrameHello, []byte("versions=1")), wsgiEnv("GET", path, q), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Write(req); err != nil {
		t.Fatal(err)
	}
	if typ, _, err := ReadFrame(r, nil); err != nil || typ != FrameHello {
		t.Fatalf("hello: %d, %v", typ, err)
	}
	for {
		typ, p, err := ReadFrame(r, nil)
		if err != nil {
			return frames, false
		}
		frames = append(frames, rawFrame{typ, bytes.Clone(p)})
		if typ == FrameEnd {
			return frames, true
		}
	}
}

// checkFrames checks a response's framing against docs/protocol.md (one
// HEADERS, non-empty BODY frames of at most MaxBodyFrame, END 0) and
// returns the body.
func checkFrames(t *testing.T, what string, frames []rawFrame, ended bool) []byte {
	t.Helper()
	if !ended || len(frames) < 2 || frames[0].typ != FrameHeaders {
		t.Fatalf("%s: %d frames, ended %v; want HEADERS ... END", what, len(frames), ended)
	}
	var body []byte
	for _, f := range frames[1 : len(frames)-1] {
		if f.typ != FrameBody || len(f.payload) == 0 || len(f.payload) > MaxBodyFrame {
			t.Fatalf("%s: frame type %d of %d bytes between HEADERS and END", what, f.typ, len(f.payload))
		}
		body = append(body, f.payload...)
	}
	if end := frames[len(frames)-1]; !bytes.Equal(end.payload, []byte{0}) {
		t.Fatalf("%s: END %v, want 0", what, end.payload)
	}
	return body
}

func TestSendPathBodies(t *testing.T) {
	w := startSendWorker(t)
	tests := []struct {
		name, path, q string
		want          []byte
	}{
		{"many small chunks", "/chunks", query("count", "3000", "size", "7"), pattern(3000*7, 0)},
		{"chunks around a frame", "/chunks", query("count", "3", "size", strconv.Itoa(MaxBodyFrame+1)), pattern(3*(MaxBodyFrame+1), 0)},
		{"empty", "/bytes", query("n", "0"), nil},
		{"small", "/bytes", query("n", "100"), pattern(100, 0)},
		{"at the join limit", "/bytes", query("n", strconv.Itoa(16<<10)), pattern(16<<10, 0)},
		{"one frame", "/bytes", query("n", strconv.Itoa(MaxBodyFrame)), pattern(MaxBodyFrame, 0)},
		{"one bytes object of many frames", "/bytes", query("n", strconv.Itoa(5<<20+123)), pattern(5<<20+123, 0)},
		{"write()", "/write", query("n", strconv.Itoa(2<<20+1)), pattern(2<<20+1, 0)},
	}
	for _, tt := range tests {
		frames, ended := rawGet(t, w.sock, tt.path, tt.q)
		body := checkFrames(t, tt.name, frames, ended)
		if !bytes.Equal(body, tt.want) {
			t.Errorf("%s: body of %d bytes differs from the %d sent", tt.name, len(body), len(tt.want))
		}
	}
}

// syscallsRead is the worker's read-side system call count so far
// (/proc/PID/io syscr): sendfile counts one per call, reading a file
// one per block.
func syscallsRead(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		t.Skipf("no /proc/PID/io: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Skip("no syscr in /proc/PID/io")
	return 0
}

func TestSendPathFileWrapper(t *testing.T) {
	w := startSendWorker(t)
	dir := shortTempDir(t)
	const size = 5<<20 + 77
	content := pattern(size, 0)
	file := filepath.Join(dir, "data.bin")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "small.txt"), []byte("small text\n"), 0o644)
	tests := []struct {
		name, path, q string
		want          []byte
	}{
		{"whole file", "/file", query("path", file), content},
		{"from a position (a Range)", "/file", query("path", file, "start", "1000", "length", "300000"), content[1000:301000]},
		{"a small range", "/file", query("path", file, "start", strconv.Itoa(size-10), "length", "10"), content[size-10:]},
		{"length past the end", "/file", query("path", file, "start", strconv.Itoa(size-10), "length", "50"), content[size-10:]},
		{"after the app's buffered reads", "/file", query("path", file, "buffered", "12345"), content[12345:]},
		{"zero length", "/file", query("path", file, "length", "0"), nil},
		{"a pipe", "/pipe", query("n", strconv.Itoa(3<<20+5)), pattern(3<<20+5, 0)},
		{"a BytesIO", "/bytesio", query("n", "100000"), pattern(100000, 0)},
		{"a BytesIO held to its length", "/bytesio", query("n", "100000", "length", "2500"), pattern(2500, 0)},
	}
	for _, tt := range tests {
		frames, ended := rawGet(t, w.sock, tt.path, tt.q)
		body := checkFrames(t, tt.name, frames, ended)
		if !bytes.Equal(body, tt.want) {
			t.Errorf("%s: body of %d bytes differs from the %d expected", tt.name, len(body), len(tt.want))
		}
	}

	// A file goes out with sendfile: a few calls per MiB frame, where
	// reading it in 64 KiB blocks makes 80.
	before := syscallsRead(t, w.cmd.Process.Pid)
	frames, ended := rawGet(t, w.sock, "/file", query("path", file))
	if body := checkFrames(t, "sendfile", frames, ended); !bytes.Equal(body, content) {
		t.Fatalf("sendfile: body differs")
	}
	if calls := syscallsRead(t, w.cmd.Process.Pid) - before; calls > 40 {
		t.Errorf("sending a 5 MiB file took %d read-side system calls; sendfile should need a few", calls)
	}

	// A text file cannot be sent as bytes: the app fails before any
	// byte, so it is a 500.
	frames, ended = rawGet(t, w.sock, "/text", query("path", filepath.Join(dir, "small.txt")))
	if !ended || frames[0].typ != FrameHeaders || !bytes.HasPrefix(frames[0].payload, []byte("500 ")) {
		t.Errorf("file_wrapper over a text file: %q, want a 500", frames[0].payload)
	}

	// Every file the app opened was closed (PEP 3333: the server calls
	// the iterable's close()).
	frames, ended = rawGet(t, w.sock, "/closed", "")
	closed := string(checkFrames(t, "closed", frames, ended))
	if n := strings.Count(closed, file); n != 7 {
		t.Errorf("files closed: %q, want %s 7 times", closed, file)
	}
}

func TestSendPathFileTruncatedWhileSent(t *testing.T) {
	w := startSendWorker(t)
	dir := shortTempDir(t)
	const size = 8 << 20
	content := pattern(size, 0)
	file := filepath.Join(dir, "shrinks.bin")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("unix", w.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(testDeadline))
	r := bufio.NewReaderSize(nc, 1024)
	req, _ := AppendRequest(AppendFrame(nil, FrameHello, []byte("versions=1")),
		wsgiEnv("GET", "/file", query("path", file, "length", strconv.Itoa(size))), false, nil)
	nc.Write(req)
	if typ, _, err := ReadFrame(r, nil); err != nil || typ != FrameHello {
		t.Fatalf("hello: %d, %v", typ, err)
	}
	if typ, _, err := ReadFrame(r, nil); err != nil || typ != FrameHeaders {
		t.Fatalf("head: %d, %v", typ, err)
	}
	// The first BODY frame is announced, and the worker is blocked in
	// sendfile inside it or a later one: the socket cannot hold the
	// 8 MiB file (the worker's SO_SNDBUF holds a frame or two). Now the
	// file shrinks under it.
	typ, n, err := readFrameHeader(r)
	if err != nil || typ != FrameBody || n != MaxBodyFrame {
		t.Fatalf("first body frame: type %d, %d bytes, %v", typ, n, err)
	}
	if err := os.Truncate(file, 0); err != nil {
		t.Fatal(err)
	}
	// What follows is the file's bytes in whole frames, and then a close
	// inside a frame (the worker was blocked in one), or, when the worker
	// had sent a frame whole before the file shrank, END short of the
	// declared length, as for a Content-Length past a file's end (the
	// proxy leaves the client's connection closed after such a body, so
	// the client sees it broken): never foreign bytes, never END after
	// the declared length.
	off, inside := 0, false
	for {
		got, err := io.ReadAll(io.LimitReader(r, int64(n)))
		if err != nil {
			t.Fatalf("reading the frame at %d: %v", off, err)
		}
		if !bytes.Equal(got, content[off:off+len(got)]) {
			t.Fatalf("the %d bytes at %d are not the file's: foreign bytes sent", len(got), off)
		}
		off += len(got)
		if len(got) < n {
			inside = true
			break // closed inside the frame
		}
		typ, n, err = readFrameHeader(r)
		if errors.Is(err, io.EOF) {
			t.Fatalf("the connection closed after whole frames (%d bytes) with no END and no log of why", off)
		}
		if err == nil && typ == FrameEnd && off < size {
			break // short of the declared length (between frames)
		}
		if err != nil || typ != FrameBody {
			t.Fatalf("after %d bytes: frame type %d, %v; want a BODY frame or a close inside one", off, typ, err)
		}
	}
	if inside {
		w.out.waitFor(t, "truncated while sent")
	}
	// The worker survives, and both its threads (one of them served the
	// broken response) take a connection again.
	w.assertRunning(t)
	c1, c2 := dialFake(t, w.sock), dialFake(t, w.sock)
	mustHello(t, c1)
	mustHello(t, c2)
}

// TestConnReadAcrossFrames: Conn.Read yields a body's bytes, never its
// frame headers, in pieces as small as the caller's buffer, and reports
// a frame in progress as more at hand.
func TestConnReadAcrossFrames(t *testing.T) {
	big := string(pattern(100<<10, 0))
	w := newFakeWorker(t, func(fc *fakeConn) {
		if !fc.hello() {
			return
		}
		for {
			if _, _, ok := fc.request(); !ok {
				return
			}
			if !fc.write(response("200 OK", nil, 0, "abc", big, "de")) {
				return
			}
		}
	})
	c := dialFake(t, w.path)
	for _, size := range []int{1, 7, 64 << 10, 1 << 20} {
		if err := c.Send(getEnv, nil, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadHead(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, size)
		var body []byte
		for {
			n, err := c.Read(buf)
			body = append(body, buf[:n]...)
			if len(body) > 3 && len(body) < 3+len(big) && !c.Buffered() {
				t.Fatalf("Buffered() = false inside a frame (at %d)", len(body))
			}
			if err == io.EOF {
				break
			}
			if err != nil || n == 0 {
				t.Fatalf("Read with a %d-byte buffer: %d, %v", size, n, err)
			}
		}
		if string(body) != "abc"+big+"de" {
			t.Fatalf("Read with a %d-byte buffer: %d bytes, not the body sent", size, len(body))
		}
		if n, err := c.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("Read after the end = %d, %v; want io.EOF again", n, err)
		}
		if !c.Reusable() {
			t.Fatalf("not reusable after a complete response")
		}
	}
}

// TestConnReadAllocations: reading a response allocates the same whether
// it is 64 KiB or 8 MiB (issue 10: no buffer per frame).
func TestConnReadAllocations(t *testing.T) {
	responses := map[string][]byte{}
	for _, n := range []int{64 << 10, 8 << 20} {
		b := AppendFrame(nil, FrameHeaders, []byte("200 OK"))
		frame := make([]byte, min(n, MaxBodyFrame))
		for sent := 0; sent < n; sent += len(frame) {
			b = AppendFrame(b, FrameBody, frame)
		}
		responses[strconv.Itoa(n)] = AppendFrame(b, FrameEnd, []byte{0})
	}
	w := newFakeWorker(t, func(fc *fakeConn) {
		if !fc.hello() {
			return
		}
		for {
			req, _, ok := fc.request()
			if !ok || !fc.write(responses[req.Environ[1]]) {
				return
			}
		}
	})
	c := dialFake(t, w.path)
	buf := make([]byte, 128<<10)
	allocs := map[string]float64{}
	for key := range responses {
		env := Environ{"SIZE", key}
		allocs[key] = testing.AllocsPerRun(20, func() {
			if err := c.Send(env, nil, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ReadHead(); err != nil {
				t.Fatal(err)
			}
			for {
				_, err := c.Read(buf)
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	small, large := allocs[strconv.Itoa(64<<10)], allocs[strconv.Itoa(8<<20)]
	if large > small+1 {
		t.Errorf("allocations per response: %.0f for 64 KiB, %.0f for 8 MiB; want no more for the larger", small, large)
	}
}
