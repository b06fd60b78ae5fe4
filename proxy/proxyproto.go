package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The PROXY protocol (HAProxy's, v1 text and v2 binary): an L4 load
// balancer in front of pyhost sends, before anything else on a
// connection, a header saying who the client is ([proxy] proxy_protocol,
// T6). It is written here rather than taken from
// github.com/pires/go-proxyproto: that library reads the header lazily,
// in whichever goroutine first calls Read or RemoteAddr on the
// connection, and the connection caps (limitListener) call RemoteAddr in
// the accept loop, so one load-balancer connection slow to send its
// header would stall accepting for everyone; the caps must also count
// the real client, which is known only after the header. Reading each
// header in a goroutine of its own, under a deadline, before the
// connection is handed on, is what both need; the header itself is a
// page of code.

// proxyHeaderTimeout bounds the wait for a PROXY header: a load balancer
// sends it with the connection, at once.
const proxyHeaderTimeout = 5 * time.Second

// maxPendingHeaders bounds the connections waiting for their PROXY
// header at once; more from allowed peers are reset. The load balancer
// sends the header with its first packet, so only a peer that misbehaves
// fills this.
const maxPendingHeaders = 1024

// v2Signature opens a v2 header.
var v2Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// maxV2Payload bounds a v2 header's addresses and TLVs: the longest
// address block is 216 bytes (AF_UNIX); the TLVs a load balancer adds
// (AWS's VPC endpoint id, a TLS summary) fit well within.
const maxV2Payload = 4096

// errNotProxy is a connection from an allowed peer that did not begin
// with a PROXY header.
var errNotProxy = errors.New("no PROXY protocol header")

// readProxyHeader reads one PROXY header (v1 or v2) from r and returns
// the client it names. An invalid AddrPort with a nil error is a header
// that names none (v1 UNKNOWN, v2 LOCAL, a family other than TCP over
// IPv4 or IPv6): the connection's own peer is the client then, as the
// specification says (a load balancer's health check). Exactly the
// header is consumed; what follows stays in r.
func readProxyHeader(r *bufio.Reader) (netip.AddrPort, error) {
	first, err := r.Peek(1)
	if err != nil {
		return netip.AddrPort{}, err
	}
	switch first[0] {
	case 'P':
		return readProxyV1(r)
	case '\r':
		return readProxyV2(r)
	}
	return netip.AddrPort{}, errNotProxy
}

// readProxyV1 reads "PROXY TCP4 SRC DST SPORT DPORT\r\n" (at most 107
// bytes in all).
func readProxyV1(r *bufio.Reader) (netip.AddrPort, error) {
	const maxV1 = 107
	var line []byte
	for {
		b, err := r.ReadByte()
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("PROXY v1 header: %w", noEOF(err))
		}
		line = append(line, b)
		if b == '\n' {
			break
		}
		if len(line) >= maxV1 {
			return netip.AddrPort{}, errors.New("PROXY v1 header: longer than 107 bytes")
		}
	}
	s, ok := strings.CutSuffix(string(line), "\r\n")
	if !ok {
		return netip.AddrPort{}, errors.New("PROXY v1 header: not ended by CRLF")
	}
	f := strings.Split(s, " ")
	if f[0] != "PROXY" || len(f) < 2 {
		return netip.AddrPort{}, errNotProxy
	}
	if f[1] == "UNKNOWN" {
		return netip.AddrPort{}, nil // the rest of the line is to be ignored
	}
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return netip.AddrPort{}, fmt.Errorf("PROXY v1 header: %q is not TCP4 or TCP6 with two addresses and two ports", s)
	}
	src, err := netip.ParseAddr(f[2])
	if err != nil || src.Zone() != "" || src.Is4() != (f[1] == "TCP4") {
		return netip.AddrPort{}, fmt.Errorf("PROXY v1 header: %q is not an %s address", f[2], f[1])
	}
	if dst, err := netip.ParseAddr(f[3]); err != nil || dst.Is4() != src.Is4() {
		return netip.AddrPort{}, fmt.Errorf("PROXY v1 header: %q is not an %s address", f[3], f[1])
	}
	var ports [2]uint16
	for i, p := range f[4:] {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || (len(p) > 1 && p[0] == '0') {
			return netip.AddrPort{}, fmt.Errorf("PROXY v1 header: %q is not a port", p)
		}
		ports[i] = uint16(n)
	}
	return netip.AddrPortFrom(src, ports[0]), nil
}

// readProxyV2 reads the binary header: the signature, version and
// command, family and protocol, a length, then the addresses and TLVs.
func readProxyV2(r *bufio.Reader) (netip.AddrPort, error) {
	var head [16]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("PROXY v2 header: %w", noEOF(err))
	}
	if !bytes.Equal(head[:12], v2Signature) {
		return netip.AddrPort{}, errNotProxy
	}
	if head[12]>>4 != 2 {
		return netip.AddrPort{}, fmt.Errorf("PROXY v2 header: version %d", head[12]>>4)
	}
	cmd, fam := head[12]&0xf, head[13]
	n := int(binary.BigEndian.Uint16(head[14:]))
	if cmd > 1 {
		return netip.AddrPort{}, fmt.Errorf("PROXY v2 header: command %d", cmd)
	}
	if n > maxV2Payload {
		return netip.AddrPort{}, fmt.Errorf("PROXY v2 header: %d bytes of addresses and TLVs, at most %d", n, maxV2Payload)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return netip.AddrPort{}, fmt.Errorf("PROXY v2 header: %w", noEOF(err))
	}
	if cmd == 0 {
		return netip.AddrPort{}, nil // LOCAL: the balancer's own connection
	}
	var addrLen int
	switch fam {
	case 0x11: // TCP over IPv4
		addrLen = 12
	case 0x21: // TCP over IPv6
		addrLen = 36
	default:
		// UNSPEC, UDP, AF_UNIX: nothing this TCP front can use.
		return netip.AddrPort{}, nil
	}
	if n < addrLen {
		return netip.AddrPort{}, fmt.Errorf("PROXY v2 header: %d bytes, too short for its addresses", n)
	}
	ipLen := (addrLen - 4) / 2
	src, _ := netip.AddrFromSlice(payload[:ipLen])
	port := binary.BigEndian.Uint16(payload[2*ipLen:])
	return netip.AddrPortFrom(src.Unmap(), port), nil
}

// noEOF is err, with a header cut short said as such.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ProxyProtocol is the set of peers that must send a PROXY header
// ([proxy] proxy_protocol), shared by every listener and replaced whole
// on a config reload. The zero value allows none.
type ProxyProtocol struct {
	allowed atomic.Pointer[[]netip.Prefix]
}

// Set makes allowed the peers that must send a header from the next
// connection on.
func (p *ProxyProtocol) Set(allowed []netip.Prefix) { p.allowed.Store(&allowed) }

// from reports whether a connection from peer must begin with a header.
func (p *ProxyProtocol) from(peer netip.Addr) bool {
	a := p.allowed.Load()
	return a != nil && isTrusted(peer.Unmap(), *a)
}

// proxyListener hands on the connections of its listener: those from
// allowed peers once their PROXY header was read, with the client it
// names as their RemoteAddr; the others as they are. A header from any
// other peer is no HTTP request line and no TLS record, so net/http
// answers it 400 or fails its handshake and closes: refused, at no cost
// to the connections that do not carry one (which keep the *net.TCPConn
// and with it sendfile).
type proxyListener struct {
	net.Listener
	pp *ProxyProtocol
	// refused is told of each connection refused (a missing, malformed or
	// late header, too many pending); may be nil.
	refused func(peer netip.Addr, err error)

	start   sync.Once
	conns   chan acceptResult
	pending chan struct{} // a slot per connection whose header is being read
	done    chan struct{}
	close   sync.Once
}

type acceptResult struct {
	c   net.Conn
	err error
}

func newProxyListener(ln net.Listener, pp *ProxyProtocol, refused func(netip.Addr, error)) *proxyListener {
	return &proxyListener{Listener: ln, pp: pp, refused: refused, conns: make(chan acceptResult),
		pending: make(chan struct{}, maxPendingHeaders), done: make(chan struct{})}
}

func (l *proxyListener) Accept() (net.Conn, error) {
	l.start.Do(func() { go l.acceptLoop() })
	select {
	case r := <-l.conns:
		return r.c, r.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *proxyListener) Close() error {
	l.close.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// acceptLoop accepts until the listener is closed: a connection from an
// allowed peer gets a goroutine that reads its header; any other, and
// every error but the close (net/http backs off on those), is handed on.
func (l *proxyListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !l.deliver(acceptResult{nil, err}) || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		peer := peerAddr(c)
		if !l.pp.from(peer) {
			if !l.deliver(acceptResult{c, nil}) {
				c.Close()
			}
			continue
		}
		select {
		case l.pending <- struct{}{}:
		default:
			l.refuse(c, peer, fmt.Errorf("more than %d connections waiting for their PROXY header", maxPendingHeaders))
			continue
		}
		go func() {
			defer func() { <-l.pending }()
			pc, err := readHeader(c)
			if err != nil {
				l.refuse(c, peer, err)
				return
			}
			if !l.deliver(acceptResult{pc, nil}) {
				c.Close()
			}
		}()
	}
}

// deliver hands r to Accept; false once the listener is closed.
func (l *proxyListener) deliver(r acceptResult) bool {
	select {
	case l.conns <- r:
		return true
	case <-l.done:
		return false
	}
}

// refuse reports the refusal before closing, so that whoever sees the
// connection end (a test, an operator's probe) finds it already logged.
func (l *proxyListener) refuse(c net.Conn, peer netip.Addr, err error) {
	if l.refused != nil {
		l.refused(peer, err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// readHeader reads c's PROXY header within proxyHeaderTimeout.
func readHeader(c net.Conn) (net.Conn, error) {
	c.SetReadDeadline(time.Now().Add(proxyHeaderTimeout))
	br := bufio.NewReaderSize(c, 256)
	src, err := readProxyHeader(br)
	if err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Time{})
	pc := &proxiedConn{Conn: c, r: br}
	if src.IsValid() {
		pc.remote = net.TCPAddrFromAddrPort(src)
	}
	return pc, nil
}

func peerAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// proxiedConn is a connection whose PROXY header was read: RemoteAddr is
// the client it named, and the bytes read past the header come first.
type proxiedConn struct {
	net.Conn
	r      *bufio.Reader // nil once drained; one reader at a time, as net.Conn's
	remote net.Addr      // nil: the peer's own (a header naming no client)
}

func (c *proxiedConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}

func (c *proxiedConn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}
