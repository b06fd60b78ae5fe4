package proxy

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pyhost/pyhost/wsgiadapter"
)

func TestRefuse(t *testing.T) {
	cases := []struct {
		method, target string
		want           int
	}{
		{"GET", "/", 0},
		{"POST", "/a%20b?q=%00", 0}, // an encoded NUL in the query is the app's to decode
		{"OPTIONS", "*", 0},
		{"CONNECT", "example.com:443", 501},
		{"TRACE", "/", 501},
		{"PRI", "*", 501},
		{"GET", "/anything/a%00b", 400},
		{"GET", "/" + strings.Repeat("a", maxRequestURI-1), 0},
		{"GET", "/" + strings.Repeat("a", maxRequestURI), 414},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, "http://site.test/", nil)
		if c.method != "CONNECT" && c.target != "*" {
			r = httptest.NewRequest(c.method, c.target, nil)
		}
		r.RequestURI = c.target
		if got := refuse(r); got != c.want {
			t.Errorf("%s %.40s: %d, want %d", c.method, c.target, got, c.want)
		}
	}
}

func TestMustClose(t *testing.T) {
	cases := []struct {
		name         string
		major, minor int
		te           []string
		length       int64
		want         bool
	}{
		{"HTTP/1.1", 1, 1, nil, 5, false},
		{"HTTP/1.1 chunked (a Content-Length beside it is gone by now)", 1, 1, []string{"chunked"}, -1, true},
		{"HTTP/1.0 with a body (net/http dropped any Transfer-Encoding)", 1, 0, nil, 5, true},
		{"HTTP/1.0 without a body", 1, 0, nil, 0, false},
		{"HTTP/2", 2, 0, nil, -1, false},
	}
	for _, c := range cases {
		r := httptest.NewRequest("POST", "/", nil)
		r.ProtoMajor, r.ProtoMinor, r.TransferEncoding, r.ContentLength = c.major, c.minor, c.te, c.length
		if got := mustClose(r); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestConnectionListed(t *testing.T) {
	conn := []string{"keep-alive, X-Secret", " Upgrade ,x-other"}
	for name, want := range map[string]bool{"X-Secret": true, "X-Other": true, "Upgrade": true, "Keep-Alive": true, "X-Sec": false, "Cookie": false} {
		if got := connectionListed(conn, name); got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	if connectionListed(nil, "X") {
		t.Error("no Connection header lists something")
	}
}

func TestHasNUL(t *testing.T) {
	if hasNUL(wsgiadapter.Environ{"PATH_INFO", "/a", "QUERY_STRING", "q=%00"}) {
		t.Error("an environ without a NUL refused")
	}
	if !hasNUL(wsgiadapter.Environ{"PATH_INFO", "/a\x00b"}) {
		t.Error("a NUL in a value passed")
	}
}

// What the client may not tell the app: Proxy (httpoxy), headers its
// Connection header calls hop-by-hop, its own X-Real-Ip.
func TestBuildEnvironDropsWhatTheClientMayNotSay(t *testing.T) {
	r := httptest.NewRequest("GET", "http://site.test/", nil)
	r.Header.Set("Proxy", "http://evil.test:3128")
	r.Header.Set("Connection", "keep-alive, X-Hop")
	r.Header.Set("X-Hop", "for this hop only")
	r.Header.Set("X-Real-Ip", "6.6.6.6")
	r.Header.Set("X-Kept", "yes")
	m := envMap(t, r, reqInfo{prefix: "/", scheme: "http", remoteAddr: "192.0.2.1", forwardedFor: "192.0.2.1"})
	for _, k := range []string{"HTTP_PROXY", "HTTP_X_HOP", "HTTP_CONNECTION"} {
		if v, ok := m[k]; ok {
			t.Errorf("%s = %q passed to the app", k, v)
		}
	}
	if m["HTTP_X_REAL_IP"] != "192.0.2.1" {
		t.Errorf("HTTP_X_REAL_IP = %q, want the resolved client 192.0.2.1", m["HTTP_X_REAL_IP"])
	}
	if m["HTTP_X_KEPT"] != "yes" {
		t.Errorf("HTTP_X_KEPT = %q", m["HTTP_X_KEPT"])
	}
}

// Issue 17 item 2: HTTP/1.0 without Host.
func TestBuildEnvironWithoutHost(t *testing.T) {
	for _, c := range []struct {
		addr, want string
	}{
		{"127.0.0.1", "127.0.0.1"},
		{"::ffff:10.1.2.3", "10.1.2.3"},
		{"2001:db8::5", "[2001:db8::5]"},
		{"", "localhost"},
	} {
		r := httptest.NewRequest("GET", "/get", nil)
		r.Host, r.Proto, r.ProtoMinor = "", "HTTP/1.0", 0
		ri := reqInfo{prefix: "/", scheme: "http", serverPort: "8000"}
		if c.addr != "" {
			ri.serverAddr = netip.MustParseAddr(c.addr)
		}
		m := envMap(t, r, ri)
		if v, ok := m["HTTP_HOST"]; ok {
			t.Errorf("%s: HTTP_HOST = %q; the client sent none", c.addr, v)
		}
		if m["SERVER_NAME"] != c.want || m["SERVER_PORT"] != "8000" {
			t.Errorf("%s: SERVER_NAME %q SERVER_PORT %q, want %q 8000", c.addr, m["SERVER_NAME"], m["SERVER_PORT"], c.want)
		}
	}
	// A Host wins over the listener's address.
	r := httptest.NewRequest("GET", "http://blog.test:8080/", nil)
	m := envMap(t, r, reqInfo{prefix: "/", serverAddr: netip.MustParseAddr("127.0.0.1"), serverPort: "8080"})
	if m["SERVER_NAME"] != "blog.test" || m["HTTP_HOST"] != "blog.test:8080" {
		t.Errorf("with Host: SERVER_NAME %q HTTP_HOST %q", m["SERVER_NAME"], m["HTTP_HOST"])
	}
}

// Through the proxy, each request the proxy answers itself reaches no
// worker; each one whose framing cannot be trusted closes its connection.
func TestHygieneThroughTheProxy(t *testing.T) {
	cases := []struct {
		name, req string
		status    int
		closed    bool
		reached   bool // the worker got the request
	}{
		{"plain", "GET / HTTP/1.1\r\nHost: site.test\r\n\r\n", 200, false, true},
		{"NUL in the path", "GET /anything/a%00b HTTP/1.1\r\nHost: site.test\r\n\r\n", 400, false, false},
		{"TRACE", "TRACE / HTTP/1.1\r\nHost: site.test\r\n\r\n", 501, false, false},
		{"CONNECT", "CONNECT site.test:443 HTTP/1.1\r\nHost: site.test:443\r\n\r\n", 501, false, false},
		{"PRI", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 501, true, false},
		{"URI over 8 KiB", "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: site.test\r\n\r\n", 414, false, false},
		{"HTTP/1.1, Content-Length and chunked: chunked wins, then close",
			"POST / HTTP/1.1\r\nHost: site.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200, true, true},
		{"HTTP/1.0 keep-alive without a body: kept", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, false, true},
		{"HTTP/1.0 keep-alive, Content-Length and chunked: closed after",
			"POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newEchoWorker(t)
			_, addr := frontProxy(t, w, Limits{}, 0)
			rc := dialRaw(t, addr)
			rc.send(c.req)
			resp, _ := rc.response(strings.Fields(c.req)[0])
			if resp.StatusCode != c.status {
				t.Errorf("status %d, want %d", resp.StatusCode, c.status)
			}
			if c.closed && !rc.closed() {
				t.Error("the connection stays open")
			}
			if !c.closed {
				// Kept alive: the next request on it is served.
				rc.send("GET /next HTTP/1.1\r\nHost: site.test\r\n\r\n")
				if resp, _ := rc.response("GET"); resp.StatusCode != 200 {
					t.Errorf("the next request on the connection: %d", resp.StatusCode)
				}
				w.mu.Lock()
				w.seen = w.seen[:len(w.seen)-1]
				w.mu.Unlock()
			}
			if got := w.requests() == 1; got != c.reached {
				t.Errorf("worker reached: %v, want %v", got, c.reached)
			}
		})
	}
}

// A body nobody reads (the proxy answered first) is still drained under
// client_body_timeout: a slow one does not hold the connection.
func TestUnreadBodyIsDrainedUnderTheTimeout(t *testing.T) {
	w := newEchoWorker(t)
	_, addr := frontProxy(t, w, Limits{ClientBodyTimeout: 300 * time.Millisecond}, 0)
	rc := dialRaw(t, addr)
	rc.send("TRACE / HTTP/1.1\r\nHost: site.test\r\nContent-Length: 100\r\n\r\nx")
	if resp, _ := rc.response("TRACE"); resp.StatusCode != 501 {
		t.Errorf("status %d", resp.StatusCode)
	}
	if !rc.closed() {
		t.Error("a body that stopped keeps the connection after the answer")
	}
}
