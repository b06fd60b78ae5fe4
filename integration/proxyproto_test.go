package integration

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ppV2 is a PROXY v2 header for a TCP over IPv4 client src:sport.
func ppV2(src string, sport uint16) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c")
	b = append(b, netip.MustParseAddr(src).AsSlice()...)
	b = append(b, 127, 0, 0, 1)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, 80)
}

// ppGet connects to addr from local (nil: any loopback address), sends
// pre, then (over TLS with sni when sni is set) a GET of / for host, and
// returns what the app saw, or the error or status that ended it.
func ppGet(addr string, local net.Addr, pre []byte, host string, tlsConf *tls.Config) (map[string]*string, error) {
	d := net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := raw.Write(pre); err != nil {
		return nil, err
	}
	c := raw
	if tlsConf != nil {
		tc := tls.Client(raw, tlsConf)
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		c = tc
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	var seen map[string]*string
	err = json.Unmarshal(b, &seen)
	return seen, err
}

// TestProxyProtocol (T6): with proxy_protocol = ["127.0.0.1/32"], a
// connection from 127.0.0.1 must send a PROXY header (v1 or v2), on the
// plain and on the TLS listener (before the handshake), and the client
// it names is REMOTE_ADDR and the access log's; from 127.0.0.2 (another
// peer: all of 127/8 is loopback on Linux) none may be sent, and a
// connection without one is served as it is; a malformed header is
// refused while a connection beside it is served.
func TestProxyProtocol(t *testing.T) {
	t.Parallel()
	const ann = "pyh-pp-ann"
	users := fmt.Sprintf("[users.%s]\ndomains = [\"pp.test\"]\n", ann)
	u := makeUser(t, ann)
	d := newSysd(t, users)
	deployNamed(t, u, "site", "ann", `"pp.test"`, "")
	writeOwned(t, u, filepath.Join(u.home, "site", "wsgi.py"), tlsApp("ann"), 0o644)
	ca := newTestCA(t)
	tlsDir := filepath.Join(d.base, "tls")
	os.MkdirAll(tlsDir, 0o700)
	cert, key := ca.issue(t, tlsDir, "pp", "pp.test")
	tlsAddr := freePort(t)
	d.writeTLSAdmin(tlsAddr, [][2]string{{cert, key}},
		fmt.Sprintf("proxy_protocol = [\"127.0.0.1/32\"]\naccess_log = %q\n", filepath.Join(d.base, "access.log")), users)
	d.start()

	remote := func(seen map[string]*string) string { return str(seen["REMOTE_ADDR"]) }
	seen, err := ppGet(d.addr, nil, []byte("PROXY TCP4 198.51.100.7 127.0.0.1 51234 80\r\n"), "pp.test", nil)
	if err != nil || remote(seen) != "198.51.100.7" {
		t.Errorf("v1 from an allowed peer: %v %v", strOf(seen), err)
	}
	seen, err = ppGet(d.addr, nil, ppV2("203.0.113.5", 4000), "pp.test", nil)
	if err != nil || remote(seen) != "203.0.113.5" {
		t.Errorf("v2 from an allowed peer: %v %v", strOf(seen), err)
	}
	tlsConf := &tls.Config{RootCAs: ca.pool, ServerName: "pp.test"}
	seen, err = ppGet(tlsAddr, nil, ppV2("203.0.113.6", 4001), "pp.test", tlsConf)
	if err != nil || remote(seen) != "203.0.113.6" || str(seen["wsgi.url_scheme"]) != "https" {
		t.Errorf("v2 then TLS from an allowed peer: %v %v", strOf(seen), err)
	}
	if seen, err := ppGet(d.addr, nil, nil, "pp.test", nil); err == nil {
		t.Errorf("an allowed peer without a header was served: %v", strOf(seen))
	}

	// A malformed header is refused; a connection opened before it and
	// still in its header is served after.
	held, err := net.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	held.Write([]byte("PROXY TCP4 192.0.2.1 "))
	if seen, err := ppGet(d.addr, nil, []byte("PROXY TCP4 not-an-address 127.0.0.1 1 80\r\n"), "pp.test", nil); err == nil {
		t.Errorf("a malformed header was served: %v", strOf(seen))
	}
	held.SetDeadline(time.Now().Add(10 * time.Second))
	held.Write([]byte("127.0.0.1 9 80\r\nGET / HTTP/1.1\r\nHost: pp.test\r\nConnection: close\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(held), nil)
	if err != nil {
		t.Fatalf("the connection beside the malformed one: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"REMOTE_ADDR": "192.0.2.1"`) {
		t.Errorf("the connection beside the malformed one: %d %s", resp.StatusCode, b)
	}

	// Another peer: no header is fine, a header is refused.
	other := &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}
	seen, err = ppGet(d.addr, other, nil, "pp.test", nil)
	if err != nil || remote(seen) != "127.0.0.2" {
		t.Errorf("another peer without a header: %v %v", strOf(seen), err)
	}
	if seen, err := ppGet(d.addr, other, []byte("PROXY TCP4 198.51.100.7 127.0.0.1 51234 80\r\n"), "pp.test", nil); err == nil {
		t.Errorf("another peer's v1 header was believed: %v", strOf(seen))
	}
	if seen, err := ppGet(tlsAddr, other, ppV2("198.51.100.7", 1), "pp.test", tlsConf); err == nil {
		t.Errorf("another peer's v2 header before TLS was believed: %v", strOf(seen))
	}

	// The access log names the clients the headers named.
	eventually(t, 5*time.Second, "the access log to name the proxied clients", func() bool {
		log, _ := os.ReadFile(filepath.Join(d.base, "access.log"))
		return strings.Contains(string(log), "198.51.100.7 ") && strings.Contains(string(log), "203.0.113.6 ")
	})
}
