package proxy

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pyhost/pyhost/config"
)

// Limits protect the proxy and the workers from slow or hostile clients.
// They are the [proxy] keys of the admin config (docs/config.md), sent
// down in the channel's Setup. The zero value of a field means its
// default (DefaultLimits), applied once by WithDefaults; a negative
// size, rate or count turns that limit off.
type Limits struct {
	// BufferRequestBody: a request body up to this many bytes is read
	// whole, in memory, before a worker thread is taken.
	BufferRequestBody int64
	// RequestSpoolLimit: a larger body is read whole into an unnamed
	// temporary file before a worker thread is taken, while all spooled
	// bodies together stay under this many bytes.
	RequestSpoolLimit int64
	// SpoolDir is where spool files are made (O_TMPFILE: they have no
	// name, so nothing else can open them, and they vanish with the
	// proxy); "" tries /var/tmp, then os.TempDir().
	SpoolDir string
	// ClientBodyTimeout bounds each wait for the next bytes of a request
	// body, like nginx's client_body_timeout.
	ClientBodyTimeout time.Duration
	// ClientBodyMinRate is the average a body must keep up, in bytes per
	// second, once ClientBodyTimeout has passed (mod_reqtimeout's
	// MinRate): each byte received buys 1/rate s more.
	ClientBodyMinRate int64
	// SendTimeout bounds each write of a response to the client, like
	// nginx's send_timeout.
	SendTimeout time.Duration
	// MaxConns caps open client connections, in all and per client
	// address (IPv6: per /64; trusted proxies exempt).
	MaxConns, MaxConnsPerIP int
	// KeepAliveTimeout closes an idle keep-alive connection.
	KeepAliveTimeout time.Duration
}

// DefaultLimits are the limits a field left zero takes: the admin
// file's defaults.
var DefaultLimits = Limits{
	BufferRequestBody: config.DefaultBufferRequestBody,
	RequestSpoolLimit: config.DefaultRequestSpoolLimit,
	ClientBodyTimeout: config.DefaultClientBodyTimeout,
	ClientBodyMinRate: config.DefaultClientBodyMinRate,
	SendTimeout:       config.DefaultSendTimeout,
	MaxConns:          config.DefaultMaxConnections,
	MaxConnsPerIP:     config.DefaultMaxConnectionsPerIP,
	KeepAliveTimeout:  config.DefaultKeepaliveTimeout,
}

// WithDefaults is l with every zero field set from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits
	if l.BufferRequestBody == 0 {
		l.BufferRequestBody = d.BufferRequestBody
	}
	if l.RequestSpoolLimit == 0 {
		l.RequestSpoolLimit = d.RequestSpoolLimit
	}
	if l.ClientBodyTimeout == 0 {
		l.ClientBodyTimeout = d.ClientBodyTimeout
	}
	if l.ClientBodyMinRate == 0 {
		l.ClientBodyMinRate = d.ClientBodyMinRate
	}
	if l.SendTimeout == 0 {
		l.SendTimeout = d.SendTimeout
	}
	if l.MaxConns == 0 {
		l.MaxConns = d.MaxConns
	}
	if l.MaxConnsPerIP == 0 {
		l.MaxConnsPerIP = d.MaxConnsPerIP
	}
	if l.KeepAliveTimeout == 0 {
		l.KeepAliveTimeout = d.KeepAliveTimeout
	}
	return l
}

// fdReserve are the descriptors kept out of max_connections' reach: the
// worker connections, static files, spooled bodies, the channel and the
// listeners.
const fdReserve = 1024

// connCap is the connection cap the proxy can keep with nofile
// descriptors: max, or less when the descriptor limit is lower. A cap the
// descriptors cannot back turns an attack into EMFILE on accept, which
// refuses nothing cheaply and everything alike. (A spooled body costs a
// descriptor more; when none is left, that body streams instead.)
func connCap(max int, nofile uint64) int {
	if nofile == 0 || nofile > 1<<30 {
		return max
	}
	fit := int(nofile / 2)
	if nofile > 2*fdReserve {
		fit = int(nofile - fdReserve)
	}
	return min(max, fit)
}

// connLimiter counts the open client connections of every listener of
// the proxy, in all and per client address, and decides whether a new
// one may stay. Safe for concurrent use.
type connLimiter struct {
	max    int            // > 0
	perIP  int            // <= 0: no per-address cap
	exempt []netip.Prefix // trusted proxies: many clients behind one address

	mu    sync.Mutex
	open  int                  // guarded by mu
	peak  int                  // guarded by mu: the most open since the last drop
	byKey map[netip.Prefix]int // guarded by mu; only counted addresses

	// dropped gets a token when the open connections fell to a quarter
	// of a peak of at least dropPeak: a crowd (an attack) has gone, and
	// the memory it held can go back to the system (Run's tidyMemory).
	dropped chan struct{}

	// released, when set, is called after each release; tests wait on it.
	released func()
}

// dropPeak is the least crowd whose leaving is worth giving memory back
// for.
const dropPeak = 64

func newConnLimiter(max, perIP int, exempt []netip.Prefix) *connLimiter {
	return &connLimiter{max: max, perIP: perIP, exempt: exempt, byKey: map[netip.Prefix]int{}, dropped: make(chan struct{}, 1)}
}

// refusal says why a connection was refused; "" admits it.
type refusal string

const (
	refusedTotal refusal = "max_connections"
	refusedPerIP refusal = "max_connections_per_ip"
)

// clientKey is what a per-address cap counts: the address, or its /64
// for IPv6, where one subscriber commonly holds the whole /64 (so a cap
// per address would cap nothing). ok is false for an address not
// counted per address (not IP, or a trusted proxy).
func clientKey(a netip.Addr, exempt []netip.Prefix) (netip.Prefix, bool) {
	a = a.Unmap()
	if !a.IsValid() || isTrusted(a, exempt) {
		return netip.Prefix{}, false
	}
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p, true
}

// admit counts a new connection from addr, or refuses it. An admitted
// connection must be released exactly once.
func (c *connLimiter) admit(addr netip.Addr) (key netip.Prefix, why refusal) {
	key, counted := clientKey(addr, c.exempt)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open >= c.max {
		return key, refusedTotal
	}
	if counted && c.perIP > 0 {
		if c.byKey[key] >= c.perIP {
			return key, refusedPerIP
		}
		c.byKey[key]++
	}
	c.open++
	c.peak = max(c.peak, c.open)
	return key, ""
}

// release forgets a connection admit admitted with key.
func (c *connLimiter) release(key netip.Prefix) {
	c.mu.Lock()
	c.open--
	if n, ok := c.byKey[key]; ok {
		if n <= 1 {
			delete(c.byKey, key) // the map shrinks back after an attack
		} else {
			c.byKey[key] = n - 1
		}
	}
	if c.peak >= dropPeak && c.open*4 <= c.peak {
		c.peak = c.open
		select {
		case c.dropped <- struct{}{}:
		default: // one pending is enough
		}
	}
	c.mu.Unlock()
	if c.released != nil {
		c.released()
	}
}

// count is the open connections, in all and from key.
func (c *connLimiter) count(key netip.Prefix) (total, fromKey int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open, c.byKey[key]
}

// limitListener refuses, at accept, the connections the limiter will
// not have: closed at once with a reset, before any goroutine, buffer or
// TLS handshake is spent on them, while the connections already open are
// served on. An admitted connection gives its place back when closed.
type limitListener struct {
	net.Listener
	lim     *connLimiter
	refused func(why refusal, addr netip.Addr) // called for each refusal; may be nil
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := netip.Addr{}
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			addr = ta.AddrPort().Addr()
		}
		key, why := l.lim.admit(addr)
		if why != "" {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // RST: no TIME_WAIT left behind per refusal
			}
			c.Close()
			if l.refused != nil {
				l.refused(why, addr)
			}
			continue
		}
		release := func() { l.lim.release(key) }
		if tc, ok := c.(*net.TCPConn); ok {
			// Embedding *net.TCPConn keeps its ReadFrom (sendfile,
			// splice) and CloseWrite, which net/http looks for.
			return &limitedTCPConn{TCPConn: tc, release: release}, nil
		}
		return &limitedConn{Conn: c, release: release}, nil
	}
}

type limitedTCPConn struct {
	*net.TCPConn
	once    sync.Once
	release func()
}

func (c *limitedTCPConn) Close() error {
	err := c.TCPConn.Close()
	c.once.Do(c.release)
	return err
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
