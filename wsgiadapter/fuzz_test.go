package wsgiadapter

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// fuzzFrames are frame sequences shared by the seeds of several fuzzers.
var fuzzFrames = [][]byte{
	nil,
	AppendFrame(nil, FrameHello, []byte("version=1 pid=1 threads=1")),
	AppendFrame(AppendFrame(nil, FrameBody, []byte("abc")), FrameBody, nil),
	AppendFrame(nil, FrameEnd, []byte{0}),
	{FrameBody, 0, 0},                       // truncated header
	append(frameHeader(FrameBody, 10), 'x'), // truncated payload
	frameHeader(FrameBody, MaxPayload+1),    // oversized
	frameHeader(FrameBody, MaxPayload),      // largest, without its payload
	frameHeader(0xff, 0xffffffff),
	AppendFrame(nil, 0x00, []byte("bad type")),
	[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
}

// FuzzReadFrame feeds arbitrary bytes to ReadFrame until it fails. Every
// frame it returns must be exactly the bytes it consumed, and the error
// must be io.EOF exactly when the input ended on a frame boundary.
func FuzzReadFrame(f *testing.F) {
	for _, s := range fuzzFrames {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		buf := make([]byte, 0, 64)
		off := 0
		for {
			typ, p, err := ReadFrame(r, buf)
			if err != nil {
				if p != nil {
					t.Fatalf("payload of %d bytes returned with error %v", len(p), err)
				}
				atEnd := off == len(data)
				if atEnd != (err == io.EOF) {
					t.Fatalf("at offset %d of %d: err = %v; io.EOF must mean a clean end on a frame boundary", off, len(data), err)
				}
				if !atEnd && errors.Is(err, io.EOF) {
					t.Fatalf("a broken frame matches io.EOF: %v", err)
				}
				return
			}
			if len(p) > MaxPayload {
				t.Fatalf("payload of %d bytes exceeds MaxPayload", len(p))
			}
			frame := AppendFrame(nil, typ, p)
			if !bytes.HasPrefix(data[off:], frame) {
				t.Fatalf("frame at offset %d is not what was on the wire", off)
			}
			off += len(frame)
		}
	})
}

// FuzzParseRequest: ParseRequest never panics, and whatever it accepts
// re-encodes with AppendRequest to exactly the same payload.
func FuzzParseRequest(f *testing.F) {
	valid, _ := AppendRequest(nil, Environ{"REQUEST_METHOD", "GET", "PATH_INFO", "/"}, false, []byte("body"))
	f.Add(valid[headerLen:])
	streamed, _ := AppendRequest(nil, Environ{"REQUEST_METHOD", "POST"}, true, nil)
	f.Add(streamed[headerLen:])
	f.Add(requestPayload(0, 0, ""))
	f.Add(requestPayload(0x02, 0, ""))
	f.Add(requestPayload(0, 100, "A\x00B"))
	f.Add(requestPayload(0, 5, "A\x00B\x00C"))
	f.Add(requestPayload(FlagStreamed, 3, "A\x00Bx"))
	f.Add([]byte{1, 2})
	f.Fuzz(func(t *testing.T, p []byte) {
		req, err := ParseRequest(p)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("ParseRequest error %v does not wrap ErrProtocol", err)
			}
			return
		}
		if req.Streamed && len(req.Body) > 0 {
			t.Fatalf("accepted a streamed request with %d inline bytes", len(req.Body))
		}
		wire, err := AppendRequest(nil, req.Environ, req.Streamed, req.Body)
		if err != nil {
			t.Fatalf("AppendRequest refused what ParseRequest accepted (%+v): %v", req, err)
		}
		typ, payload, err := ReadFrame(bufio.NewReader(bytes.NewReader(wire)), nil)
		if err != nil || typ != FrameRequest {
			t.Fatalf("re-encoded frame: type %#x, %v", typ, err)
		}
		if !bytes.Equal(payload, p) {
			t.Fatalf("re-encoded payload differs:\n got %q\nwant %q", payload, p)
		}
		again, err := ParseRequest(payload)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !reflect.DeepEqual(again, req) {
			t.Fatalf("re-parse = %+v, want %+v", again, req)
		}
	})
}

// FuzzEnviron: a block ParseEnviron accepts encodes back to itself.
func FuzzEnviron(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("\x00"))
	f.Add([]byte("A\x001\x00B\x00"))
	f.Add([]byte("REQUEST_METHOD\x00GET\x00HTTP_X\x00caf\xe9"))
	f.Fuzz(func(t *testing.T, block []byte) {
		env, err := ParseEnviron(block)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		out, err := AppendEnviron(nil, env)
		if err != nil {
			t.Fatalf("AppendEnviron refused %q: %v", env, err)
		}
		if !bytes.Equal(out, block) {
			t.Fatalf("AppendEnviron(ParseEnviron(%q)) = %q", block, out)
		}
	})
}

// FuzzParseHead: a head ParseHead accepts is what net/http can be handed
// (3-digit status, token names, values without line breaks), and it
// encodes back to an equal head.
func FuzzParseHead(f *testing.F) {
	f.Add([]byte("200 OK\x00Content-Type\x00text/plain"))
	f.Add([]byte("204"))
	f.Add([]byte("20x OK"))
	f.Add([]byte("200 OK\x00Bad Name\x00v"))
	f.Add([]byte("200 OK\x00X\x00a\r\nb"))
	f.Add([]byte("200 OK\x00X"))
	f.Fuzz(func(t *testing.T, p []byte) {
		h, err := ParseHead(p)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		if h.Status < 100 || h.Status > 999 {
			t.Fatalf("accepted status %d", h.Status)
		}
		for _, hv := range h.Headers {
			if !validHeaderName(hv.Name) || bytes.ContainsAny([]byte(hv.Value), "\r\n\x00") {
				t.Fatalf("accepted header %q: %q", hv.Name, hv.Value)
			}
		}
		again, err := ParseHead(AppendHead(nil, strconv.Itoa(h.Status)+" "+h.Reason, h.Headers))
		if err != nil {
			t.Fatalf("re-encoded head refused: %v", err)
		}
		if !reflect.DeepEqual(again, h) {
			t.Fatalf("re-parse = %+v, want %+v", again, h)
		}
	})
}

// FuzzParseHello: never panics; an accepted hello has no empty key.
func FuzzParseHello(f *testing.F) {
	f.Add([]byte("version=1 pid=4711 threads=4"))
	f.Add([]byte("=1"))
	f.Add([]byte("a==b\tc=d"))
	f.Fuzz(func(t *testing.T, p []byte) {
		h, err := ParseHello(p)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		for k := range h {
			if k == "" {
				t.Fatalf("accepted an empty key in %q", p)
			}
			h.Int(k) // must not panic
		}
	})
}

// FuzzResponse plays a hostile worker: after a valid handshake it sends
// the fuzz input as its answer to a request and closes its sending side.
// The proxy's Conn reads it through ReadHead and Next until an error and
// must neither panic nor hang, and must never call a broken response
// complete.
func FuzzResponse(f *testing.F) {
	ok := response("200 OK", []Header{{"Content-Type", "text/plain"}}, 0, "hello")
	f.Add(ok, false)
	f.Add(ok, true)
	f.Add(response("200 OK", nil, 1, "partial"), false)
	f.Add(response("204 No Content", nil, 0), false)
	f.Add(ok[:len(ok)-3], false)                                                                                    // truncated END
	f.Add(append(AppendFrame(nil, FrameHeaders, []byte("200 OK")), frameHeader(FrameBody, MaxPayload+1)...), false) // oversized
	f.Add(append(AppendFrame(nil, FrameHeaders, []byte("200 OK")), AppendFrame(nil, FrameBody, nil)...), false)     // empty BODY
	f.Add(append(AppendFrame(nil, FrameHeaders, []byte("200 OK")), AppendFrame(nil, FrameEnd, []byte{7})...), true) // bad END
	f.Add(AppendFrame(nil, FrameBody, []byte("no head")), false)
	f.Add(AppendFrame(nil, FrameHeaders, []byte("2x0 OK")), false)
	f.Add([]byte{}, true)

	path := shortTempDir(f) + "/w.sock"
	ln, err := net.Listen("unix", path)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	hello := AppendFrame(nil, FrameHello, []byte("version=1 pid=1 threads=1"))

	f.Fuzz(func(t *testing.T, data []byte, streamed bool) {
		served := make(chan struct{})
		go func() {
			defer close(served)
			nc, err := ln.Accept()
			if err != nil {
				t.Errorf("accept: %v", err)
				return
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(testDeadline))
			r := bufio.NewReader(nc)
			if typ, _, err := ReadFrame(r, nil); err != nil || typ != FrameHello {
				t.Errorf("fake worker: handshake: %#x %v", typ, err)
				return
			}
			if _, err := nc.Write(append(hello[:len(hello):len(hello)], data...)); err != nil {
				return // the proxy gave up early and closed
			}
			nc.(*net.UnixConn).CloseWrite()
			io.Copy(io.Discard, r) // the request and its body, until the proxy closes
		}()

		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		defer cancel()
		c, err := Dial(ctx, path)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer func() {
			c.Close()
			<-served
		}()
		c.nc.SetDeadline(time.Now().Add(testDeadline))

		var body io.Reader
		size := int64(0)
		if streamed {
			body, size = bytes.NewReader(make([]byte, 3*InlineBodyMax)), -1
		}
		if err := c.Send(Environ{"REQUEST_METHOD", "POST", "PATH_INFO", "/"}, body, size); err != nil {
			t.Fatalf("Send: %v", err)
		}
		head, err := c.ReadHead()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("ReadHead hung: %v", err)
			}
			if c.Reusable() {
				t.Fatalf("Reusable() after ReadHead failed with %v", err)
			}
			return
		}
		if head.Status < 100 || head.Status > 999 {
			t.Fatalf("ReadHead accepted status %d", head.Status)
		}
		for i := 0; ; i++ {
			if i > len(data)/headerLen+1 {
				t.Fatalf("Next returned more chunks than the input holds frames")
			}
			chunk, err := c.Next()
			if err == nil {
				if len(chunk) == 0 || len(chunk) > MaxPayload {
					t.Fatalf("Next returned a chunk of %d bytes", len(chunk))
				}
				continue
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Next hung: %v", err)
			}
			complete := err == io.EOF || err == ErrAppFailed
			if !complete && c.Reusable() {
				t.Fatalf("Reusable() after Next failed with %v", err)
			}
			if complete && !streamed && !c.Reusable() {
				t.Fatalf("not Reusable() after a response that ended with END")
			}
			if !complete && errors.Is(err, io.EOF) {
				t.Fatalf("a broken response matches io.EOF: %v", err)
			}
			return
		}
	})
}
