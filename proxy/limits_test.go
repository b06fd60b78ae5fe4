package proxy

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestWithDefaults(t *testing.T) {
	if got := (Limits{}).WithDefaults(); got != DefaultLimits {
		t.Errorf("zero: %+v, want the defaults %+v", got, DefaultLimits)
	}
	off := Limits{BufferRequestBody: -1, RequestSpoolLimit: -1, ClientBodyMinRate: -1, MaxConnsPerIP: -1, SendTimeout: time.Second}
	got := off.WithDefaults()
	if got.BufferRequestBody != -1 || got.RequestSpoolLimit != -1 || got.ClientBodyMinRate != -1 || got.MaxConnsPerIP != -1 {
		t.Errorf("off turned on: %+v", got)
	}
	if got.SendTimeout != time.Second || got.ClientBodyTimeout != DefaultLimits.ClientBodyTimeout {
		t.Errorf("set kept, unset defaulted: %+v", got)
	}
}

func TestConnCap(t *testing.T) {
	cases := []struct {
		max    int
		nofile uint64
		want   int
	}{
		{10000, 65536, 10000},
		{10000, 0, 10000},       // unknown: as configured
		{10000, 1 << 40, 10000}, // unlimited
		{10000, 20000, 10000},   // the proxy: 20,000 descriptors ran out
		{10000, 8192, 7168},
		{10000, 1024, 512},
		{10000, 32, 16},
		{5, 1024, 5},
	}
	for _, c := range cases {
		if got := connCap(c.max, c.nofile); got != c.want {
			t.Errorf("connCap(%d, %d) = %d, want %d", c.max, c.nofile, got, c.want)
		}
	}
}

func TestConnLimiter(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	lb := netip.MustParseAddr("10.0.0.1")
	c := newConnLimiter(5, 2, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	admit := func(addr netip.Addr, want refusal) netip.Prefix {
		t.Helper()
		k, why := c.admit(addr)
		if why != want {
			t.Fatalf("admit %v: %q, want %q", addr, why, want)
		}
		return k
	}
	ka := admit(a, "")
	admit(a, "")
	admit(a, refusedPerIP)
	admit(netip.MustParseAddr("::ffff:192.0.2.1"), refusedPerIP) // the same client, v4-mapped
	admit(b, "")
	admit(lb, "") // a trusted proxy is held to the total only
	admit(lb, "")
	admit(b, refusedTotal)
	c.release(ka)
	admit(a, "")
	if total, from := c.count(ka); total != 5 || from != 2 {
		t.Errorf("count: %d in all, %d from a; want 5 and 2", total, from)
	}
}

func TestClientKeyIPv6PerSlash64(t *testing.T) {
	k1, _ := clientKey(netip.MustParseAddr("2001:db8:1:2::1"), nil)
	k2, _ := clientKey(netip.MustParseAddr("2001:db8:1:2:ffff::9"), nil)
	k3, _ := clientKey(netip.MustParseAddr("2001:db8:1:3::1"), nil)
	if k1 != k2 || k1 == k3 {
		t.Errorf("keys %v %v %v: one /64 is one client", k1, k2, k3)
	}
	if _, ok := clientKey(netip.Addr{}, nil); ok {
		t.Error("no address is counted per address")
	}
}

// At the cap, a new connection is refused at once (not left waiting in
// the backlog), those open are served on, and a closed one frees its
// place.
func TestLimitListenerRefusesAtTheCap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := newConnLimiter(2, 0, nil)
	released := make(chan struct{}, 10)
	lim.released = func() { released <- struct{}{} }
	var mu sync.Mutex
	var refused []refusal
	lln := &limitListener{Listener: ln, lim: lim, refused: func(why refusal, _ netip.Addr) {
		mu.Lock()
		refused = append(refused, why)
		mu.Unlock()
	}}
	srv := newServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), DefaultLimits, hclog.NewNullLogger())
	go srv.Serve(lln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	c1, c2 := dialRaw(t, addr), dialRaw(t, addr)
	for _, c := range []*rawConn{c1, c2} {
		c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := c.response("GET"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	if c3, err := net.Dial("tcp", addr); err == nil { // or reset before connect returned
		c3.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c3, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // may meet the reset already
		if _, err := c3.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("a third connection over a cap of 2 was not refused: %v", err)
		}
		c3.Close()
	}
	c1.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := c1.response("GET"); resp.StatusCode != 200 {
		t.Errorf("an open connection is not served on: %d", resp.StatusCode)
	}
	c2.c.Close()
	// The server notices c2's close on its own read; then its place is
	// free again.
	select {
	case <-released:
	case <-time.After(10 * time.Second):
		t.Fatal("a closed connection kept its place")
	}
	c4 := dialRaw(t, addr)
	c4.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := c4.response("GET"); resp.StatusCode != 200 {
		t.Errorf("a connection after one closed: %d", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(refused) != 1 || refused[0] != refusedTotal {
		t.Errorf("refusals reported: %v", refused)
	}
}
