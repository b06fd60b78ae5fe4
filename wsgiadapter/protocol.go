package wsgiadapter

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Frame types of protocol version 1 (docs/protocol.md).
const (
	FrameHello   byte = 0x01
	FrameRequest byte = 0x02
	FrameBody    byte = 0x03
	FrameHeaders byte = 0x04
	FrameEnd     byte = 0x05
)

// Protocol limits shared by both sides.
const (
	// Version is the protocol version this package speaks.
	Version = 1
	// MaxPayload is the largest frame payload either side accepts.
	MaxPayload = 16 << 20
	// MaxBodyFrame is the largest BODY payload a sender produces.
	MaxBodyFrame = 1 << 20
	// InlineBodyMax is the largest known-length body sent inside REQUEST.
	InlineBodyMax = 64 << 10
	headerLen     = 5
)

// FlagStreamed in a REQUEST frame says the body follows in BODY frames.
const FlagStreamed byte = 0x01

// ErrProtocol is wrapped by every error caused by a peer that does not
// follow the protocol. The connection that produced it must be closed.
var ErrProtocol = errors.New("protocol error")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// AppendFrameHeader appends the 5-byte header of a frame to dst.
func AppendFrameHeader(dst []byte, typ byte, length int) []byte {
	return binary.BigEndian.AppendUint32(append(dst, typ), uint32(length))
}

// AppendFrame appends a whole frame to dst.
func AppendFrame(dst []byte, typ byte, payload []byte) []byte {
	return append(AppendFrameHeader(dst, typ, len(payload)), payload...)
}

// ReadFrame reads one frame. The payload is read into buf when it fits and
// freshly allocated otherwise, so callers may pass a reusable buffer and
// must not keep the payload across calls. io.EOF is returned only for a
// clean end before the first byte of a frame. Response bodies do not come
// through here: Conn.Read streams BODY frames into the caller's buffer
// whatever their size; only HELLO and HEADERS frames over the buffer
// (64 KiB on a Conn) are allocated.
func ReadFrame(r *bufio.Reader, buf []byte) (typ byte, payload []byte, err error) {
	typ, n, err := readFrameHeader(r)
	if err != nil {
		return 0, nil, err
	}
	if n <= cap(buf) {
		payload = buf[:n]
	} else {
		payload = make([]byte, n)
	}
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("read frame payload: %w", err)
	}
	return typ, payload, nil
}

// readFrameHeader reads a frame's type and payload length, refusing a
// length over MaxPayload. io.EOF is returned only for a clean end before
// the first byte.
func readFrameHeader(r *bufio.Reader) (typ byte, n int, err error) {
	// Peek, not io.ReadFull into an array: that would escape to the heap,
	// an allocation per frame.
	head, err := r.Peek(headerLen)
	if err != nil {
		if len(head) > 0 && errors.Is(err, io.EOF) {
			return 0, 0, fmt.Errorf("read frame header: %w", io.ErrUnexpectedEOF)
		}
		return 0, 0, err
	}
	typ, length := head[0], binary.BigEndian.Uint32(head[1:])
	r.Discard(headerLen)
	if length > MaxPayload {
		return 0, 0, protoErr("frame length %d exceeds the %d byte limit", length, MaxPayload)
	}
	return typ, int(length), nil
}

// Environ is the CGI part of a WSGI environ as alternating keys and
// values, in the order they are sent. Values are raw bytes (Go strings);
// Python decodes them as latin-1.
type Environ []string

// Add appends one key and value.
func (e *Environ) Add(key, value string) { *e = append(*e, key, value) }

// AppendEnviron appends the NUL-separated environ block to dst. It refuses
// keys or values that contain NUL (they would shift every later pair) and
// a key list of odd length.
func AppendEnviron(dst []byte, env Environ) ([]byte, error) {
	if len(env)%2 != 0 {
		return dst, errors.New("environ has a key without a value")
	}
	start := len(dst)
	for i, s := range env {
		if strings.IndexByte(s, 0) >= 0 {
			return dst[:start], fmt.Errorf("environ %s contains a NUL byte", env[i-i%2])
		}
		if i > 0 {
			dst = append(dst, 0)
		}
		dst = append(dst, s...)
	}
	return dst, nil
}

// ParseEnviron splits an environ block into keys and values. It is the
// inverse of AppendEnviron, used by tests and by the fuzzer.
func ParseEnviron(block []byte) (Environ, error) {
	if len(block) == 0 {
		return nil, nil
	}
	parts := strings.Split(string(block), "\x00")
	if len(parts)%2 != 0 {
		return nil, protoErr("environ block has %d fields, want an even number", len(parts))
	}
	return Environ(parts), nil
}

// AppendRequest appends a REQUEST frame: flags, environ and inline body.
func AppendRequest(dst []byte, env Environ, streamed bool, inline []byte) ([]byte, error) {
	if streamed && len(inline) > 0 {
		return dst, errors.New("a streamed request cannot carry an inline body")
	}
	start := len(dst)
	dst = AppendFrameHeader(dst, FrameRequest, 0)
	var flags byte
	if streamed {
		flags = FlagStreamed
	}
	dst = append(dst, flags, 0, 0, 0, 0)
	envStart := len(dst)
	dst, err := AppendEnviron(dst, env)
	if err != nil {
		return dst[:start], err
	}
	binary.BigEndian.PutUint32(dst[envStart-4:], uint32(len(dst)-envStart))
	dst = append(dst, inline...)
	n := len(dst) - start - headerLen
	if n > MaxPayload {
		return dst[:start], fmt.Errorf("request frame of %d bytes exceeds the %d byte limit", n, MaxPayload)
	}
	binary.BigEndian.PutUint32(dst[start+1:], uint32(n))
	return dst, nil
}

// Request is a decoded REQUEST payload.
type Request struct {
	Streamed bool
	Environ  Environ
	Body     []byte
}

// ParseRequest decodes a REQUEST payload (the worker's job; Go uses it in
// tests and fuzzing so both sides agree on the format).
func ParseRequest(p []byte) (Request, error) {
	if len(p) < 5 {
		return Request{}, protoErr("request frame of %d bytes is too short", len(p))
	}
	flags := p[0]
	if flags&^FlagStreamed != 0 {
		return Request{}, protoErr("reserved request flags %#x", flags)
	}
	n := binary.BigEndian.Uint32(p[1:5])
	if uint64(n) > uint64(len(p)-5) {
		return Request{}, protoErr("environ length %d exceeds the frame", n)
	}
	env, err := ParseEnviron(p[5 : 5+n])
	if err != nil {
		return Request{}, err
	}
	body := p[5+n:]
	streamed := flags&FlagStreamed != 0
	if streamed && len(body) > 0 {
		return Request{}, protoErr("streamed request carries %d inline bytes", len(body))
	}
	return Request{Streamed: streamed, Environ: env, Body: body}, nil
}

// Header is one response header as the app sent it.
type Header struct{ Name, Value string }

// Head is a decoded HEADERS payload.
type Head struct {
	Status  int
	Reason  string
	Headers []Header
}

// ParseHead decodes a HEADERS payload: "NNN Reason\0Name\0Value...".
// It validates what the proxy will hand to net/http: a three-digit status
// and header names and values without line breaks.
func ParseHead(p []byte) (Head, error) {
	parts := strings.Split(string(p), "\x00")
	if len(parts)%2 != 1 {
		return Head{}, protoErr("headers block has a name without a value")
	}
	status := parts[0]
	if len(status) < 3 || (len(status) > 3 && status[3] != ' ') {
		return Head{}, protoErr("malformed status %q", status)
	}
	code, err := strconv.Atoi(status[:3])
	if err != nil || code < 100 || code > 999 {
		return Head{}, protoErr("malformed status %q", status)
	}
	h := Head{Status: code, Reason: strings.TrimPrefix(status[3:], " ")}
	if n := (len(parts) - 1) / 2; n > 0 {
		h.Headers = make([]Header, 0, n)
	}
	for i := 1; i < len(parts); i += 2 {
		name, value := parts[i], parts[i+1]
		if !validHeaderName(name) {
			return Head{}, protoErr("invalid header name %q", name)
		}
		if strings.ContainsAny(value, "\r\n") {
			return Head{}, protoErr("header %s has a line break in its value", name)
		}
		h.Headers = append(h.Headers, Header{Name: name, Value: value})
	}
	return h, nil
}

// AppendHead encodes a HEADERS payload (used by tests and fake workers).
func AppendHead(dst []byte, status string, headers []Header) []byte {
	dst = append(dst, status...)
	for _, h := range headers {
		dst = append(dst, 0)
		dst = append(dst, h.Name...)
		dst = append(dst, 0)
		dst = append(dst, h.Value...)
	}
	return dst
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		// RFC 9110 token characters.
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte("\"(),/:;<=>?@[\\]{}"), c) >= 0 {
			return false
		}
	}
	return true
}

// Hello is a decoded HELLO payload: space-separated key=value pairs.
type Hello map[string]string

// ParseHello decodes a HELLO payload. Unknown keys are kept and ignored by
// callers, so later versions can add facts.
func ParseHello(p []byte) (Hello, error) {
	h := Hello{}
	for _, f := range strings.Fields(string(p)) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return nil, protoErr("malformed hello field %q", f)
		}
		h[k] = v
	}
	return h, nil
}

// Int returns the integer value of key, or an error naming it.
func (h Hello) Int(key string) (int, error) {
	v, ok := h[key]
	if !ok {
		return 0, protoErr("hello lacks %s", key)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || v[0] < '0' || v[0] > '9' {
		return 0, protoErr("hello %s=%q is not a non-negative number", key, v)
	}
	return n, nil
}
