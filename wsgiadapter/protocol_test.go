package wsgiadapter

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
)

// shortTempDir is t.TempDir for UNIX socket paths: sun_path holds 108
// bytes, which long subtest names in t.TempDir can exceed.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pyh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// frameHeader is a bare 5-byte frame header with an arbitrary length.
func frameHeader(typ byte, length uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{typ}, length)
}

// requestPayload builds a REQUEST payload by hand, so tests can produce
// payloads AppendRequest refuses to build.
func requestPayload(flags byte, envLen uint32, rest string) []byte {
	p := binary.BigEndian.AppendUint32([]byte{flags}, envLen)
	return append(p, rest...)
}

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		typ     byte
		payload []byte
	}{
		{"empty payload", FrameBody, nil},
		{"hello", FrameHello, []byte("versions=1")},
		{"one byte", FrameEnd, []byte{0}},
		{"binary", FrameBody, []byte{0, 1, 2, 0xff, 0, '\n'}},
		{"larger than the reader buffer", FrameBody, bytes.Repeat([]byte("0123456789"), 20000)},
		{"unknown type is the caller's business", 0xee, []byte("x")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := AppendFrame(nil, tt.typ, tt.payload)
			if len(wire) != headerLen+len(tt.payload) {
				t.Fatalf("frame is %d bytes, want %d", len(wire), headerLen+len(tt.payload))
			}
			// Two copies back to back: the first read must stop exactly at
			// the frame boundary.
			r := bufio.NewReader(bytes.NewReader(append(wire, wire...)))
			for i := 0; i < 2; i++ {
				typ, p, err := ReadFrame(r, nil)
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if typ != tt.typ || !bytes.Equal(p, tt.payload) {
					t.Fatalf("frame %d = (%#x, %d bytes), want (%#x, %d bytes)", i, typ, len(p), tt.typ, len(tt.payload))
				}
			}
			if _, _, err := ReadFrame(r, nil); err != io.EOF {
				t.Fatalf("after the last frame: err = %v, want io.EOF", err)
			}
		})
	}
}

func TestReadFrameLimits(t *testing.T) {
	maxFrame := append(frameHeader(FrameBody, MaxPayload), make([]byte, MaxPayload)...)
	tests := []struct {
		name      string
		in        []byte
		wantLen   int
		wantErr   error // nil: success
		notEOF    bool  // the error must not be io.EOF
		wantProto bool
	}{
		{name: "exactly MaxPayload accepted", in: maxFrame, wantLen: MaxPayload},
		{name: "MaxPayload+1 rejected", in: frameHeader(FrameBody, MaxPayload+1), wantProto: true, notEOF: true},
		{name: "length 0xffffffff rejected", in: frameHeader(FrameBody, 0xffffffff), wantProto: true, notEOF: true},
		{name: "oversized length rejected before the payload is read", in: append(frameHeader(FrameBody, MaxPayload+1), "abc"...), wantProto: true, notEOF: true},
		{name: "clean EOF", in: nil, wantErr: io.EOF},
		{name: "truncated header 1 byte", in: []byte{FrameBody}, wantErr: io.ErrUnexpectedEOF, notEOF: true},
		{name: "truncated header 4 bytes", in: []byte{FrameBody, 0, 0, 0}, wantErr: io.ErrUnexpectedEOF, notEOF: true},
		{name: "header without payload", in: frameHeader(FrameBody, 3), wantErr: io.ErrUnexpectedEOF, notEOF: true},
		{name: "truncated payload", in: append(frameHeader(FrameBody, 3), 'a', 'b'), wantErr: io.ErrUnexpectedEOF, notEOF: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReader(bytes.NewReader(tt.in))
			_, p, err := ReadFrame(r, nil)
			success := tt.wantErr == nil && !tt.wantProto
			if success {
				if err != nil {
					t.Fatalf("ReadFrame: %v", err)
				}
				if len(p) != tt.wantLen {
					t.Fatalf("payload is %d bytes, want %d", len(p), tt.wantLen)
				}
				return
			}
			if err == nil {
				t.Fatalf("ReadFrame succeeded with %d bytes, want an error", len(p))
			}
			if p != nil {
				t.Errorf("payload of %d bytes returned with error %v", len(p), err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want errors.Is(err, %v)", err, tt.wantErr)
			}
			if tt.wantErr == io.EOF && err != io.EOF {
				t.Errorf("a clean end must be io.EOF itself (callers compare with ==), got %#v", err)
			}
			if tt.notEOF && errors.Is(err, io.EOF) {
				t.Errorf("err = %v matches io.EOF; a broken frame must not look like a clean end", err)
			}
			if got := errors.Is(err, ErrProtocol); got != tt.wantProto {
				t.Errorf("errors.Is(%v, ErrProtocol) = %v, want %v", err, got, tt.wantProto)
			}
		})
	}
}

func TestReadFrameBufferReuse(t *testing.T) {
	tests := []struct {
		name   string
		cap    int
		length int
		reused bool
	}{
		{"smaller than cap", 64, 10, true},
		{"exactly cap", 64, 64, true},
		{"one over cap", 64, 65, false},
		{"nil buffer", 0, 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := bytes.Repeat([]byte{'p'}, tt.length)
			buf := make([]byte, 0, tt.cap)
			_, p, err := ReadFrame(bufio.NewReader(bytes.NewReader(AppendFrame(nil, FrameBody, payload))), buf)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p, payload) {
				t.Fatalf("payload mismatch")
			}
			reused := cap(buf) > 0 && &p[0] == &buf[:1][0]
			if reused != tt.reused {
				t.Errorf("payload reused buf = %v, want %v", reused, tt.reused)
			}
		})
	}

	// Reuse across calls: the second frame overwrites the first payload,
	// which is exactly why callers must not keep it.
	buf := make([]byte, 0, 16)
	r := bufio.NewReader(bytes.NewReader(append(AppendFrame(nil, FrameBody, []byte("first")), AppendFrame(nil, FrameBody, []byte("again"))...)))
	_, p1, err := ReadFrame(r, buf)
	if err != nil {
		t.Fatal(err)
	}
	_, p2, err := ReadFrame(r, buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(p2) != "again" || string(p1) != "again" {
		t.Errorf("p1 = %q, p2 = %q; want both to alias buf and read %q", p1, p2, "again")
	}
}

func TestEnvironRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		env  Environ
		wire string
	}{
		{"empty", nil, ""},
		{"one pair", Environ{"REQUEST_METHOD", "GET"}, "REQUEST_METHOD\x00GET"},
		{"empty value", Environ{"QUERY_STRING", "", "PATH_INFO", "/"}, "QUERY_STRING\x00\x00PATH_INFO\x00/"},
		{"empty key and value", Environ{"", ""}, "\x00"},
		{"latin-1 bytes pass through", Environ{"HTTP_X_NAME", "caf\xe9 \xff"}, "HTTP_X_NAME\x00caf\xe9 \xff"},
		{"separators inside values", Environ{"HTTP_COOKIE", "a=b; c=d", "HTTP_X", " =\t"}, "HTTP_COOKIE\x00a=b; c=d\x00HTTP_X\x00 =\t"},
		{"duplicate keys kept in order", Environ{"K", "1", "K", "2"}, "K\x001\x00K\x002"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire, err := AppendEnviron([]byte("prefix"), tt.env)
			if err != nil {
				t.Fatalf("AppendEnviron: %v", err)
			}
			if got := string(wire); got != "prefix"+tt.wire {
				t.Fatalf("AppendEnviron = %q, want %q", got, "prefix"+tt.wire)
			}
			got, err := ParseEnviron(wire[len("prefix"):])
			if err != nil {
				t.Fatalf("ParseEnviron: %v", err)
			}
			if len(got) != len(tt.env) || (len(got) > 0 && !reflect.DeepEqual(got, tt.env)) {
				t.Fatalf("ParseEnviron = %q, want %q", got, tt.env)
			}
		})
	}
}

func TestEnvironRefused(t *testing.T) {
	tests := []struct {
		name string
		env  Environ
	}{
		{"odd length", Environ{"REQUEST_METHOD"}},
		{"odd length after pairs", Environ{"A", "1", "B"}},
		{"NUL in key", Environ{"BAD\x00KEY", "v"}},
		{"NUL in value", Environ{"K", "v\x00INJECTED\x00x"}},
		{"NUL in a later value", Environ{"A", "1", "B", "\x00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if out, err := AppendEnviron(nil, tt.env); err == nil {
				t.Fatalf("AppendEnviron(%q) = %q, want an error", tt.env, out)
			}
		})
	}

	blocks := []struct {
		name  string
		block string
	}{
		{"one field", "KEY"},
		{"three fields", "A\x00B\x00C"},
		{"trailing NUL", "A\x00B\x00"},
		{"two NULs are three fields", "\x00\x00"},
	}
	for _, tt := range blocks {
		t.Run("parse "+tt.name, func(t *testing.T) {
			env, err := ParseEnviron([]byte(tt.block))
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("ParseEnviron(%q) = %q, %v; want ErrProtocol", tt.block, env, err)
			}
		})
	}
}

func TestRequestRoundTrip(t *testing.T) {
	get := Environ{"REQUEST_METHOD", "GET", "PATH_INFO", "/x", "QUERY_STRING", ""}
	tests := []struct {
		name     string
		env      Environ
		streamed bool
		inline   []byte
	}{
		{"get without body", get, false, nil},
		{"inline body", Environ{"REQUEST_METHOD", "POST", "CONTENT_LENGTH", "5"}, false, []byte("a\x00b\nc")},
		{"inline body of InlineBodyMax", Environ{"REQUEST_METHOD", "POST"}, false, bytes.Repeat([]byte{'z'}, InlineBodyMax)},
		{"streamed", Environ{"REQUEST_METHOD", "POST"}, true, nil},
		{"empty environ", nil, false, []byte("body")},
		{"empty environ streamed", nil, true, nil},
		{"empty environ no body", nil, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire, err := AppendRequest([]byte("keep"), tt.env, tt.streamed, tt.inline)
			if err != nil {
				t.Fatalf("AppendRequest: %v", err)
			}
			if string(wire[:4]) != "keep" {
				t.Fatalf("AppendRequest clobbered dst")
			}
			typ, p, err := ReadFrame(bufio.NewReader(bytes.NewReader(wire[4:])), nil)
			if err != nil {
				t.Fatalf("ReadFrame: %v", err)
			}
			if typ != FrameRequest {
				t.Fatalf("frame type %#x, want REQUEST", typ)
			}
			if flags := p[0]; (flags == FlagStreamed) != tt.streamed || flags&^FlagStreamed != 0 {
				t.Fatalf("flags = %#x, streamed = %v", flags, tt.streamed)
			}
			req, err := ParseRequest(p)
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if req.Streamed != tt.streamed {
				t.Errorf("Streamed = %v, want %v", req.Streamed, tt.streamed)
			}
			if len(req.Environ) != len(tt.env) || (len(tt.env) > 0 && !reflect.DeepEqual(req.Environ, tt.env)) {
				t.Errorf("Environ = %q, want %q", req.Environ, tt.env)
			}
			if !bytes.Equal(req.Body, tt.inline) {
				t.Errorf("Body = %d bytes, want %d", len(req.Body), len(tt.inline))
			}
		})
	}
}

func TestAppendRequestRefused(t *testing.T) {
	tests := []struct {
		name     string
		env      Environ
		streamed bool
		inline   []byte
	}{
		{"streamed with inline body", Environ{"A", "1"}, true, []byte("x")},
		{"NUL in environ", Environ{"A", "1\x002"}, false, nil},
		{"odd environ", Environ{"A"}, false, nil},
		{"frame over MaxPayload", Environ{"A", "1"}, false, make([]byte, MaxPayload)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			out, err := AppendRequest(dst, tt.env, tt.streamed, tt.inline)
			if err == nil {
				t.Fatalf("AppendRequest succeeded, want an error")
			}
			if string(out) != "keep" {
				t.Errorf("on error AppendRequest returned %d bytes, want dst unchanged", len(out))
			}
		})
	}
}

func TestParseRequestRefused(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
	}{
		{"empty", nil},
		{"4 bytes", []byte{0, 0, 0, 0}},
		{"reserved flag 0x02", requestPayload(0x02, 0, "")},
		{"reserved flag 0x80 with streamed", requestPayload(0x81, 0, "")},
		{"all flags", requestPayload(0xff, 0, "")},
		{"environ length beyond frame", requestPayload(0, 4, "A\x00B")},
		{"environ length 0xffffffff", requestPayload(0, 0xffffffff, "A\x00B")},
		{"environ with odd fields", requestPayload(0, 5, "A\x00B\x00C")},
		{"environ with one field", requestPayload(0, 3, "KEY")},
		{"streamed with inline body", requestPayload(FlagStreamed, 3, "A\x00Bbody")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := ParseRequest(tt.payload)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("ParseRequest = %+v, %v; want ErrProtocol", req, err)
			}
		})
	}
}

func TestParseRequestValid(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		want    Request
	}{
		{"minimal", requestPayload(0, 0, ""), Request{Body: []byte{}}},
		{"streamed", requestPayload(FlagStreamed, 3, "A\x00B"), Request{Streamed: true, Environ: Environ{"A", "B"}, Body: []byte{}}},
		{"inline body with NULs", requestPayload(0, 3, "A\x00B\x00\x00x"), Request{Environ: Environ{"A", "B"}, Body: []byte("\x00\x00x")}},
		{"environ of empty key and value", requestPayload(0, 1, "\x00"), Request{Environ: Environ{"", ""}, Body: []byte{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.payload)
			if err != nil {
				t.Fatal(err)
			}
			if got.Streamed != tt.want.Streamed || !bytes.Equal(got.Body, tt.want.Body) ||
				len(got.Environ) != len(tt.want.Environ) || (len(got.Environ) > 0 && !reflect.DeepEqual(got.Environ, tt.want.Environ)) {
				t.Fatalf("ParseRequest = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseHead(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    Head // ignored when wantErr
		wantErr bool
	}{
		{name: "status and headers", payload: "200 OK\x00Content-Type\x00text/plain\x00Content-Length\x002",
			want: Head{Status: 200, Reason: "OK", Headers: []Header{{"Content-Type", "text/plain"}, {"Content-Length", "2"}}}},
		{name: "status without reason", payload: "204", want: Head{Status: 204}},
		{name: "status with empty reason", payload: "204 ", want: Head{Status: 204}},
		{name: "reason with spaces", payload: "404 Not Found", want: Head{Status: 404, Reason: "Not Found"}},
		{name: "lowest status", payload: "100 Continue", want: Head{Status: 100, Reason: "Continue"}},
		{name: "highest status", payload: "999 Odd", want: Head{Status: 999, Reason: "Odd"}},
		{name: "duplicate headers kept in order", payload: "200 OK\x00Set-Cookie\x00a=1\x00Set-Cookie\x00b=2",
			want: Head{Status: 200, Reason: "OK", Headers: []Header{{"Set-Cookie", "a=1"}, {"Set-Cookie", "b=2"}}}},
		{name: "empty value and tab", payload: "200 OK\x00X-Empty\x00\x00X-Tab\x00a\tb",
			want: Head{Status: 200, Reason: "OK", Headers: []Header{{"X-Empty", ""}, {"X-Tab", "a\tb"}}}},
		{name: "token characters", payload: "200 OK\x00X-a.b_c~d!#$%&'*+^`|\x00v",
			want: Head{Status: 200, Reason: "OK", Headers: []Header{{"X-a.b_c~d!#$%&'*+^`|", "v"}}}},

		{name: "empty", payload: "", wantErr: true},
		{name: "bad status 20x OK", payload: "20x OK", wantErr: true},
		{name: "two digits", payload: "20", wantErr: true},
		{name: "no space after code", payload: "200OK", wantErr: true},
		{name: "four digits", payload: "2000 OK", wantErr: true},
		{name: "below 100", payload: "099 Low", wantErr: true},
		{name: "signed code", payload: "+20 OK", wantErr: true},
		{name: "negative code", payload: "-99 OK", wantErr: true},
		{name: "leading space", payload: " 200 OK", wantErr: true},
		{name: "header name with space", payload: "200 OK\x00Bad Name\x00v", wantErr: true},
		{name: "header name with colon", payload: "200 OK\x00Bad:Name\x00v", wantErr: true},
		{name: "header name empty", payload: "200 OK\x00\x00v", wantErr: true},
		{name: "header name with DEL", payload: "200 OK\x00X\x7f\x00v", wantErr: true},
		{name: "header name latin-1", payload: "200 OK\x00X-\xe9\x00v", wantErr: true},
		{name: "header name with CR", payload: "200 OK\x00X\r\x00v", wantErr: true},
		{name: "value with CRLF", payload: "200 OK\x00X-A\x00a\r\nX-Injected: 1", wantErr: true},
		{name: "value with LF", payload: "200 OK\x00X-A\x00a\nb", wantErr: true},
		{name: "value with CR", payload: "200 OK\x00X-A\x00a\rb", wantErr: true},
		{name: "odd parts", payload: "200 OK\x00X-A", wantErr: true},
		{name: "odd parts after a pair", payload: "200 OK\x00X-A\x001\x00X-B", wantErr: true},
		{name: "trailing NUL", payload: "200 OK\x00", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseHead([]byte(tt.payload))
			if tt.wantErr {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("ParseHead(%q) = %+v, %v; want ErrProtocol", tt.payload, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHead(%q): %v", tt.payload, err)
			}
			if got.Status != tt.want.Status || got.Reason != tt.want.Reason ||
				len(got.Headers) != len(tt.want.Headers) || (len(got.Headers) > 0 && !reflect.DeepEqual(got.Headers, tt.want.Headers)) {
				t.Fatalf("ParseHead(%q) = %+v, want %+v", tt.payload, got, tt.want)
			}
			// AppendHead is the encoder the fake workers use: it must
			// produce a block that parses back to the same head.
			re := AppendHead(nil, strings.TrimSuffix(tt.payload[:strings.IndexByte(tt.payload+"\x00", 0)], " "), got.Headers)
			again, err := ParseHead(re)
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("AppendHead/ParseHead = %+v, %v; want %+v", again, err, got)
			}
		})
	}
}

func TestParseHello(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    Hello
		wantErr bool
	}{
		{name: "worker answer", payload: "version=1 pid=4711 threads=4", want: Hello{"version": "1", "pid": "4711", "threads": "4"}},
		{name: "proxy offer", payload: "versions=1,2", want: Hello{"versions": "1,2"}},
		{name: "empty", payload: "", want: Hello{}},
		{name: "extra spaces", payload: "  a=1   b=2 ", want: Hello{"a": "1", "b": "2"}},
		{name: "unknown keys kept", payload: "version=1 future=yes", want: Hello{"version": "1", "future": "yes"}},
		{name: "empty value", payload: "k=", want: Hello{"k": ""}},
		{name: "equals in value", payload: "k=a=b", want: Hello{"k": "a=b"}},
		{name: "last duplicate wins", payload: "k=1 k=2", want: Hello{"k": "2"}},
		{name: "field without equals", payload: "version=1 junk", wantErr: true},
		{name: "empty key", payload: "=1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseHello([]byte(tt.payload))
			if tt.wantErr {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("ParseHello(%q) = %v, %v; want ErrProtocol", tt.payload, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHello(%q): %v", tt.payload, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseHello(%q) = %v, want %v", tt.payload, got, tt.want)
			}
		})
	}
}

func TestHelloInt(t *testing.T) {
	h := Hello{"pid": "4711", "zero": "0", "neg": "-3", "plus": "+1", "word": "four", "empty": "", "huge": "99999999999999999999"}
	tests := []struct {
		key     string
		want    int
		wantErr bool
	}{
		{key: "pid", want: 4711},
		{key: "zero", want: 0},
		{key: "neg", wantErr: true},
		{key: "plus", wantErr: true},
		{key: "word", wantErr: true},
		{key: "empty", wantErr: true},
		{key: "huge", wantErr: true},
		{key: "missing", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, err := h.Int(tt.key)
			if tt.wantErr {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("Int(%q) = %d, %v; want ErrProtocol", tt.key, got, err)
				}
				if !strings.Contains(err.Error(), tt.key) {
					t.Errorf("error %q does not name the key %q", err, tt.key)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Int(%q) = %d, %v; want %d", tt.key, got, err, tt.want)
			}
		})
	}
	var nilHello Hello
	if _, err := nilHello.Int("version"); !errors.Is(err, ErrProtocol) {
		t.Errorf("nil Hello: Int err = %v, want ErrProtocol", err)
	}
}
