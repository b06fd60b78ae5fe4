package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// v2 builds a v2 header: command (0 LOCAL, 1 PROXY), family byte and
// the payload (addresses, then TLVs).
func v2(cmd, fam byte, payload []byte) []byte {
	b := append([]byte{}, v2Signature...)
	b = append(b, 0x20|cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	return append(b, payload...)
}

func v2TCP4(src, dst string, sport, dport uint16) []byte {
	p := append(netip.MustParseAddr(src).AsSlice(), netip.MustParseAddr(dst).AsSlice()...)
	p = binary.BigEndian.AppendUint16(p, sport)
	return binary.BigEndian.AppendUint16(p, dport)
}

func v2TCP6(src, dst string, sport, dport uint16) []byte {
	p := append(netip.MustParseAddr(src).AsSlice(), netip.MustParseAddr(dst).AsSlice()...)
	p = binary.BigEndian.AppendUint16(p, sport)
	return binary.BigEndian.AppendUint16(p, dport)
}

func TestReadProxyHeader(t *testing.T) {
	const rest = "GET / HTTP/1.1\r\n"
	tlv := []byte{0x04, 0x00, 0x03, 'a', 'b', 'c'} // PP2_TYPE_NOOP, 3 bytes
	for _, c := range []struct {
		name   string
		in     []byte
		client string // "" for none named; "error" for a refusal
	}{
		{"v1 TCP4", []byte("PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\n"), "198.51.100.7:51234"},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n"), "[2001:db8::7]:51234"},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), ""},
		{"v1 UNKNOWN with addresses", []byte("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), ""},
		{"v2 TCP4", v2(1, 0x11, v2TCP4("198.51.100.7", "10.0.0.1", 51234, 443)), "198.51.100.7:51234"},
		{"v2 TCP6 with a TLV", v2(1, 0x21, append(v2TCP6("2001:db8::7", "2001:db8::1", 51234, 443), tlv...)), "[2001:db8::7]:51234"},
		{"v2 TCP6 v4-mapped", v2(1, 0x21, v2TCP6("::ffff:198.51.100.7", "::ffff:10.0.0.1", 1, 2)), "198.51.100.7:1"},
		{"v2 LOCAL", v2(0, 0x00, nil), ""},
		{"v2 LOCAL with addresses", v2(0, 0x11, v2TCP4("1.2.3.4", "5.6.7.8", 1, 2)), ""},
		{"v2 UDP", v2(1, 0x12, v2TCP4("1.2.3.4", "5.6.7.8", 1, 2)), ""},
		{"v2 UNSPEC", v2(1, 0x00, nil), ""},

		{"no header", []byte(rest), "error"},
		{"TLS first", []byte{0x16, 0x03, 0x01, 0, 5}, "error"},
		{"v1 no CRLF", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), "error"},
		{"v1 too long", []byte("PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n"), "error"},
		{"v1 cut short", []byte("PROXY TCP4 1.2.3.4"), "error"},
		{"v1 family mismatch", []byte("PROXY TCP4 2001:db8::7 2001:db8::1 1 2\r\n"), "error"},
		{"v1 mixed families", []byte("PROXY TCP4 1.2.3.4 2001:db8::1 1 2\r\n"), "error"},
		{"v1 bad port", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), "error"},
		{"v1 leading zero", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"), "error"},
		{"v1 five fields", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), "error"},
		{"v1 UDP4", []byte("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), "error"},
		{"v1 lower case", []byte("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), "error"},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n"), "error"},
		{"v2 version 1", append(append([]byte{}, v2Signature...), 0x11, 0x11, 0, 0), "error"},
		{"v2 command 2", v2(2, 0x11, v2TCP4("1.2.3.4", "5.6.7.8", 1, 2)), "error"},
		{"v2 short addresses", v2(1, 0x11, []byte{1, 2, 3, 4}), "error"},
		{"v2 cut short", v2(1, 0x11, v2TCP4("1.2.3.4", "5.6.7.8", 1, 2))[:20], "error"},
		{"v2 over the payload bound", append(append([]byte{}, v2Signature...), 0x21, 0x11, 0xff, 0xff), "error"},
		{"v2 bad signature", append([]byte("\r\n\r\n\x00\r\nQUIT!"), 0x21, 0x11, 0, 0), "error"},
	} {
		in := append([]byte{}, c.in...)
		if !strings.Contains(c.name, "cut short") {
			in = append(in, rest...)
		}
		r := bufio.NewReader(bytes.NewReader(in))
		got, err := readProxyHeader(r)
		switch {
		case c.client == "error":
			if err == nil {
				t.Errorf("%s: accepted, client %v", c.name, got)
			}
			continue
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
			continue
		case c.client == "" && got.IsValid(), c.client != "" && got.String() != c.client:
			t.Errorf("%s: client %v, want %q", c.name, got, c.client)
		}
		// Exactly the header is consumed.
		if after, _ := io.ReadAll(r); string(after) != rest {
			t.Errorf("%s: %q left after the header, want %q", c.name, after, rest)
		}
	}
}

func FuzzReadProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\nGET"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(v2(1, 0x11, v2TCP4("198.51.100.7", "10.0.0.1", 1, 2)))
	f.Add(v2(1, 0x21, v2TCP6("2001:db8::1", "2001:db8::2", 1, 2)))
	f.Add(v2(0, 0, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		src, err := readProxyHeader(r)
		if err != nil {
			return
		}
		if src.IsValid() && (src.Addr().Zone() != "" || src.Addr().Is4In6()) {
			t.Errorf("client %v", src)
		}
		// What was consumed is a whole header: at most 107 bytes of v1,
		// or 16 plus the length v2 states.
		used := len(in) - r.Buffered()
		if rest, _ := io.ReadAll(r); used+len(rest) > len(in) {
			t.Errorf("consumed %d of %d", used, len(in))
		}
		if in[0] == 'P' && used > 107 {
			t.Errorf("a v1 header of %d bytes", used)
		}
	})
}

// ppServe serves h on a loopback listener behind a proxyListener
// allowing allowed; it returns the address and the refusals so far.
func ppServe(t *testing.T, listen string, allowed []string, h http.Handler) (addr string, refused func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Skip(err)
	}
	pp := &ProxyProtocol{}
	if err := setProxyProtocol(pp, allowed); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var why []string
	pl := newProxyListener(ln, pp, func(peer netip.Addr, err error) {
		mu.Lock()
		defer mu.Unlock()
		why = append(why, peer.String()+": "+err.Error())
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(pl)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), why...)
	}
}

var remoteHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RemoteAddr) })

// exchange dials addr from local (nil: any), sends pre then a GET, and
// returns the response body, or the error that ended the exchange.
func exchange(addr string, local net.Addr, pre []byte) (string, error) {
	d := net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(append(pre, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"...))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", errors.New(resp.Status)
	}
	return string(b), nil
}

// T6 over a real socket: an allowed peer's header names the client; an
// allowed peer without one, or with a malformed one, is refused and
// logged while a connection beside it is served; any other peer's
// connection is served as it is, and a header from it is refused.
func TestProxyListener(t *testing.T) {
	addr, refused := ppServe(t, "127.0.0.1:0", []string{"127.0.0.1/32"}, remoteHandler)
	if got, err := exchange(addr, nil, []byte("PROXY TCP4 198.51.100.7 127.0.0.1 51234 443\r\n")); err != nil || got != "198.51.100.7:51234" {
		t.Errorf("v1: %q %v", got, err)
	}
	if got, err := exchange(addr, nil, v2(1, 0x21, v2TCP6("2001:db8::7", "2001:db8::1", 4000, 443))); err != nil || got != "[2001:db8::7]:4000" {
		t.Errorf("v2: %q %v", got, err)
	}
	if got, err := exchange(addr, nil, v2(0, 0, nil)); err != nil || !strings.HasPrefix(got, "127.0.0.1:") {
		t.Errorf("v2 LOCAL (a health check): %q %v", got, err)
	}
	// A malformed header costs its connection only: one held open
	// beside it, waiting for its header, is served after.
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if got, err := exchange(addr, nil, []byte("PROXY TCP4 1.2.3.4\r\n")); err == nil {
		t.Errorf("a malformed header was served: %q", got)
	}
	if got, err := exchange(addr, nil, nil); err == nil {
		t.Errorf("no header from an allowed peer was served: %q", got)
	}
	held.SetDeadline(time.Now().Add(10 * time.Second))
	held.Write([]byte("PROXY TCP4 203.0.113.9 127.0.0.1 7 443\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(held), nil)
	if err != nil {
		t.Fatalf("the held connection: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "203.0.113.9:7" {
		t.Errorf("the held connection: %q", b)
	}
	if r := refused(); len(r) != 2 || !strings.Contains(r[0], "127.0.0.1: PROXY v1 header") || !strings.Contains(r[1], "no PROXY protocol header") {
		t.Errorf("refusals: %q", r)
	}

	// Another peer: 127.0.0.2 (all of 127/8 is loopback on Linux).
	other := &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}
	if got, err := exchange(addr, other, nil); err != nil || !strings.HasPrefix(got, "127.0.0.2:") {
		t.Errorf("another peer without a header: %q %v", got, err)
	}
	if got, err := exchange(addr, other, []byte("PROXY TCP4 198.51.100.7 127.0.0.1 51234 443\r\n")); err == nil {
		t.Errorf("another peer's header was believed: %q", got)
	}
	if got, err := exchange(addr, other, v2(1, 0x11, v2TCP4("198.51.100.7", "127.0.0.1", 1, 2))); err == nil {
		t.Errorf("another peer's v2 header was believed: %q", got)
	}
}

// A peer that sends no header within proxyHeaderTimeout does not hold
// the accept loop: others are served meanwhile (the timeout itself is
// the deadline's, not waited for here).
func TestProxyListenerSlowHeader(t *testing.T) {
	addr, _ := ppServe(t, "127.0.0.1:0", []string{"127.0.0.0/8"}, remoteHandler)
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("PROXY TCP4 1.2")) // and nothing more
	}
	if got, err := exchange(addr, nil, []byte("PROXY TCP4 198.51.100.8 127.0.0.1 1 2\r\n")); err != nil || got != "198.51.100.8:1" {
		t.Errorf("beside three stalled headers: %q %v", got, err)
	}
}
