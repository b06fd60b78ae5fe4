package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The scenarios, each a kind of client that holds a server's resources
// while sending or taking almost nothing.
var scenarios = map[string]string{
	"slowloris":  "request headers that never end: one more byte every trickle period",
	"slowbody":   "complete headers of a small POST (body-size bytes), then one body byte every trickle period",
	"slowupload": "complete headers of a large POST (upload-size bytes), then one body byte every trickle period",
	"noread":     "a GET of a large download (download-path) on a socket with a tiny receive buffer, never read",
}

type attackConfig struct {
	Target          string
	Stack           string
	Scenario        string
	Conns           int
	Sources         int
	Baseline        time.Duration
	Hold            time.Duration
	Trickle         time.Duration
	Settle          time.Duration
	ProbeInterval   time.Duration
	ProbeTimeout    time.Duration
	ProbePath       string
	AfterProbes     time.Duration
	DownloadPath    string
	BodySize        int
	UploadSize      int
	RcvBuf          int
	DialConcurrency int
	DialTimeout     time.Duration
	Sample          time.Duration
	Groups          []procGroup
}

func runAttack(args []string) error {
	var c attackConfig
	var groups groupFlags
	var out string
	fs := flag.NewFlagSet("attack", flag.ContinueOnError)
	fs.StringVar(&c.Target, "target", "", "LOOPBACK-IP:PORT of the server")
	fs.StringVar(&c.Stack, "stack", "", "the stack's name, for the report")
	fs.StringVar(&c.Scenario, "scenario", "", "slowloris, slowbody, slowupload or noread")
	fs.IntVar(&c.Conns, "conns", 2000, "hostile connections (1 to 20000)")
	fs.IntVar(&c.Sources, "sources", 10, "hostile source addresses, 127.0.0.2 and up (1 to 250); the normal client uses 127.0.0.1")
	fs.DurationVar(&c.Baseline, "baseline", 3*time.Second, "normal client alone before the attack")
	fs.DurationVar(&c.Hold, "hold", 30*time.Second, "how long the attack lasts from its first connection (1s to 10m)")
	fs.DurationVar(&c.Trickle, "trickle", 5*time.Second, "a slow client sends one byte per this period")
	fs.DurationVar(&c.Settle, "settle", 60*time.Second, "after the attack, wait this long before the last memory reading (0 to 10m)")
	fs.DurationVar(&c.ProbeInterval, "probe-interval", 20*time.Millisecond, "the normal client starts a request this often (or when the last one ends)")
	fs.DurationVar(&c.ProbeTimeout, "probe-timeout", 5*time.Second, "a normal request slower than this failed")
	fs.StringVar(&c.ProbePath, "probe-path", "/hello", "what the normal client asks for")
	fs.DurationVar(&c.AfterProbes, "after", 2*time.Second, "normal client after the settle period")
	fs.StringVar(&c.DownloadPath, "download-path", "/stream?mib=64", "noread: what the hostile clients ask for")
	fs.IntVar(&c.BodySize, "body-size", 8192, "slowbody: the announced body (Content-Length)")
	fs.IntVar(&c.UploadSize, "upload-size", 1<<20, "slowupload: the announced body (Content-Length)")
	fs.IntVar(&c.RcvBuf, "rcvbuf", 4096, "noread: SO_RCVBUF of the hostile sockets")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", 64, "hostile connections being opened at once")
	fs.DurationVar(&c.DialTimeout, "dial-timeout", 5*time.Second, "a hostile connect slower than this failed")
	fs.DurationVar(&c.Sample, "sample", 250*time.Millisecond, "memory sampling period")
	fs.Var(&groups, "mem", "NAME=PID[,PID...][~REGEX]: processes to sample (the trees under the pids; with a regex, those whose command line matches); repeatable")
	fs.StringVar(&out, "out", "", "write the JSON result here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c.Groups = groups
	if err := c.check(); err != nil {
		return err
	}
	if out == "" {
		return errors.New("-out is required")
	}
	res := attack(c, os.Stderr)
	b, err := json.MarshalIndent(res, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(out, append(b, '\n'), 0o644)
}

func (c *attackConfig) check() error {
	if err := loopbackHostPort(c.Target); err != nil {
		return fmt.Errorf("-target: %w", err)
	}
	if _, ok := scenarios[c.Scenario]; !ok {
		return fmt.Errorf("-scenario %q: one of slowloris, slowbody, slowupload, noread", c.Scenario)
	}
	switch {
	case c.Conns < 1 || c.Conns > 20000:
		return fmt.Errorf("-conns %d: 1 to 20000", c.Conns)
	case c.Sources < 1 || c.Sources > 250:
		return fmt.Errorf("-sources %d: 1 to 250", c.Sources)
	case c.Hold < time.Second || c.Hold > 10*time.Minute:
		return fmt.Errorf("-hold %s: 1s to 10m", c.Hold)
	case c.Baseline < 0 || c.Baseline > time.Minute:
		return fmt.Errorf("-baseline %s: 0 to 1m", c.Baseline)
	case c.Settle < 0 || c.Settle > 10*time.Minute:
		return fmt.Errorf("-settle %s: 0 to 10m", c.Settle)
	case c.AfterProbes < 0 || c.AfterProbes > time.Minute:
		return fmt.Errorf("-after %s: 0 to 1m", c.AfterProbes)
	case c.Trickle < 10*time.Millisecond || c.Trickle > time.Minute:
		return fmt.Errorf("-trickle %s: 10ms to 1m", c.Trickle)
	case c.ProbeInterval < time.Millisecond || c.ProbeInterval > 10*time.Second:
		return fmt.Errorf("-probe-interval %s: 1ms to 10s", c.ProbeInterval)
	case c.ProbeTimeout <= 0 || c.ProbeTimeout > time.Minute:
		return fmt.Errorf("-probe-timeout %s: up to 1m", c.ProbeTimeout)
	case c.DialConcurrency < 1 || c.DialConcurrency > 1000:
		return fmt.Errorf("-dial-concurrency %d: 1 to 1000", c.DialConcurrency)
	case c.DialTimeout <= 0 || c.DialTimeout > time.Minute:
		return fmt.Errorf("-dial-timeout %s: up to 1m", c.DialTimeout)
	case c.Sample < 10*time.Millisecond || c.Sample > 10*time.Second:
		return fmt.Errorf("-sample %s: 10ms to 10s", c.Sample)
	case c.BodySize < 1 || c.UploadSize < 1:
		return errors.New("-body-size and -upload-size must be positive")
	case !strings.HasPrefix(c.ProbePath, "/") || !strings.HasPrefix(c.DownloadPath, "/"):
		return errors.New("-probe-path and -download-path must start with /")
	}
	return nil
}

// attackResult is the JSON an attack writes; bench/attack.sh keeps one per
// scenario and stack, and report renders them.
type attackResult struct {
	Stack      string                `json:"stack"`
	Scenario   string                `json:"scenario"`
	Target     string                `json:"target"`
	Settings   map[string]string     `json:"settings"`
	Started    time.Time             `json:"started"`
	Hostile    hostileSummary        `json:"hostile"`
	Normal     map[string]probePhase `json:"normal"` // "keepalive attack", "fresh baseline", ...
	Memory     map[string]memSummary `json:"memory"` // by group name
	Timeline   []timelinePoint       `json:"timeline"`
	AttackAtS  float64               `json:"attack_at_s"` // since Started
	HoldEndS   float64               `json:"hold_end_s"`
	SettledAtS float64               `json:"settled_at_s"`
}

type hostileSummary struct {
	Wanted     int            `json:"wanted"`
	Opened     int            `json:"opened"`
	DialErrors map[string]int `json:"dial_errors"` // by kind
	RampS      float64        `json:"ramp_s"`      // from the attack's start to the last connect
	// Connections the server closed (or reset) before the attack ended,
	// and how long after their connect it did.
	Cut     int     `json:"cut"`
	CutP50S float64 `json:"cut_p50_s"`
	CutMaxS float64 `json:"cut_max_s"`
	// The status codes the server answered them with before closing.
	Statuses  map[string]int `json:"statuses"`
	StillOpen int            `json:"still_open"`
}

type memSummary struct {
	BeforeKB    int64 `json:"before_kb"`
	PeakKB      int64 `json:"peak_kb"`
	AfterKB     int64 `json:"after_kb"`
	FDsBefore   int   `json:"fds_before"`
	FDsPeak     int   `json:"fds_peak"`
	FDsAfter    int   `json:"fds_after"`
	ProcsBefore int   `json:"procs_before"`
	ProcsAfter  int   `json:"procs_after"`
	// Processes of the group that appeared after the attack started
	// (workers recycled, a proxy restarted).
	NewProcs int `json:"new_procs"`
}

type timelinePoint struct {
	AtS    float64              `json:"at_s"`
	Groups map[string]procUsage `json:"groups"`
}

// attack runs one scenario: the normal client alone, then with the
// hostile connections for c.Hold, then the settle period and the normal
// client again. Progress goes to logw.
func attack(c attackConfig, logw io.Writer) attackResult {
	start := time.Now()
	since := func() float64 { return time.Since(start).Seconds() }
	logf := func(format string, args ...any) {
		fmt.Fprintf(logw, "    [%5.1fs] %s\n", since(), fmt.Sprintf(format, args...))
	}
	res := attackResult{
		Stack: c.Stack, Scenario: c.Scenario, Target: c.Target, Started: start.UTC(),
		Settings: map[string]string{
			"conns": strconv.Itoa(c.Conns), "sources": strconv.Itoa(c.Sources),
			"hold": c.Hold.String(), "trickle": c.Trickle.String(), "settle": c.Settle.String(),
			"baseline": c.Baseline.String(), "probe_interval": c.ProbeInterval.String(),
			"probe_timeout": c.ProbeTimeout.String(), "probe_path": c.ProbePath,
			"download_path": c.DownloadPath, "body_size": strconv.Itoa(c.BodySize),
			"upload_size": strconv.Itoa(c.UploadSize), "rcvbuf": strconv.Itoa(c.RcvBuf),
		},
		Normal: map[string]probePhase{},
	}

	smp := newSampler(c.Groups, start)
	stopSampling := smp.run(c.Sample)

	// The normal client, from now to the end of the attack.
	probeCtx, stopProbes := context.WithCancel(context.Background())
	var probeWG sync.WaitGroup
	probed := map[string]*[]probeSample{}
	for _, kind := range []string{"keepalive", "fresh"} {
		samples := new([]probeSample)
		probed[kind] = samples
		probeWG.Add(1)
		go func() {
			defer probeWG.Done()
			*samples = probe(probeCtx, c, kind == "keepalive", start)
		}()
	}
	logf("%s: normal client alone for %s", c.Scenario, c.Baseline)
	sleep(c.Baseline)

	before := smp.now()
	attackAt := time.Since(start)
	res.AttackAtS = attackAt.Seconds()
	holdEnd := time.Now().Add(c.Hold)
	logf("%s: opening %d connections from %d addresses (%s)", c.Scenario, c.Conns, c.Sources, scenarios[c.Scenario])
	h := newHorde(c, holdEnd)
	h.open()
	logf("%s: %d open (%d refused or failed) after %.1fs; holding until %.0fs",
		c.Scenario, h.opened(), c.Conns-h.opened(), h.rampS, res.AttackAtS+c.Hold.Seconds())
	sleep(time.Until(holdEnd))
	stopProbes()
	probeWG.Wait()
	res.HoldEndS = since()
	res.Hostile = h.finish()
	logf("%s: closed; the server had cut %d of %d; settling for %s",
		c.Scenario, res.Hostile.Cut, res.Hostile.Opened, c.Settle)

	sleep(c.Settle)
	after := smp.now()
	res.SettledAtS = since()
	afterCtx, stopAfter := context.WithTimeout(context.Background(), c.AfterProbes)
	afterSamples := map[string]*[]probeSample{}
	for _, kind := range []string{"keepalive", "fresh"} {
		samples := new([]probeSample)
		afterSamples[kind] = samples
		probeWG.Add(1)
		go func() {
			defer probeWG.Done()
			*samples = probe(afterCtx, c, kind == "keepalive", start)
		}()
	}
	probeWG.Wait()
	stopAfter()
	stopSampling()

	for kind, samples := range probed {
		var base, during []probeSample
		for _, s := range *samples {
			if s.AtS < res.AttackAtS {
				base = append(base, s)
			} else {
				during = append(during, s)
			}
		}
		res.Normal[kind+" baseline"] = phase(base)
		res.Normal[kind+" attack"] = phase(during)
		res.Normal[kind+" after"] = phase(*afterSamples[kind])
	}
	res.Memory = smp.summaries(before, after, attackAt)
	res.Timeline = smp.timeline(time.Second)
	n := res.Normal["keepalive attack"]
	f := res.Normal["fresh attack"]
	logf("%s: normal client during the attack: keep-alive %d requests, %d failed, p99 %.1f ms; "+
		"new connections %d requests, %d failed, p99 %.1f ms",
		c.Scenario, n.Requests, n.Failed, n.Latency.P99ms, f.Requests, f.Failed, f.Latency.P99ms)
	for _, g := range c.Groups {
		m := res.Memory[g.Name]
		logf("%s: %s RSS %.1f MiB before, %.1f at peak, %.1f after; descriptors %d, %d, %d",
			c.Scenario, g.Name, mib(m.BeforeKB), mib(m.PeakKB), mib(m.AfterKB), m.FDsBefore, m.FDsPeak, m.FDsAfter)
	}
	return res
}

func mib(kb int64) float64 { return float64(kb) / 1024 }

// sleep waits d (nothing to select on: the attack's phases are timed).
func sleep(d time.Duration) {
	if d > 0 {
		time.Sleep(d)
	}
}

// ------------------------------------------------------------ the horde

// horde is the attack's connections.
type horde struct {
	c       attackConfig
	holdEnd time.Time
	closing atomic.Bool // set before we close them: what fails after is ours
	stop    chan struct{}
	wg      sync.WaitGroup

	mu         sync.Mutex
	conns      []*hostileConn
	dialErrors map[string]int
	rampS      float64
}

type hostileConn struct {
	conn   net.Conn
	opened time.Time

	mu     sync.Mutex
	cutAt  time.Duration // since opened; 0: not cut
	status string        // the status code of the first answer, if any
}

func (hc *hostileConn) cut(closing *atomic.Bool) {
	if closing.Load() {
		return
	}
	hc.mu.Lock()
	if hc.cutAt == 0 {
		hc.cutAt = max(time.Since(hc.opened), time.Nanosecond)
	}
	hc.mu.Unlock()
}

func newHorde(c attackConfig, holdEnd time.Time) *horde {
	return &horde{c: c, holdEnd: holdEnd, stop: make(chan struct{}), dialErrors: map[string]int{}}
}

func (h *horde) opened() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// open connects c.Conns hostile clients, at most DialConcurrency at a
// time, and starts each one's behaviour; it returns when all have been
// tried or the attack's time is up.
func (h *horde) open() {
	start := time.Now()
	sem := make(chan struct{}, h.c.DialConcurrency)
	var wg sync.WaitGroup
	for i := 0; i < h.c.Conns && time.Now().Before(h.holdEnd); i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			h.openOne(i)
		}(i)
	}
	wg.Wait()
	h.rampS = time.Since(start).Seconds()
}

func (h *horde) openOne(i int) {
	src := net.IPv4(127, 0, 0, byte(2+i%h.c.Sources))
	d := net.Dialer{
		Timeout:   h.c.DialTimeout,
		LocalAddr: &net.TCPAddr{IP: src},
	}
	if h.c.Scenario == "noread" {
		// Before connect(), so that the window is small from the handshake on.
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, h.c.RcvBuf)
			})
			return errors.Join(err, serr)
		}
	}
	conn, err := d.Dial("tcp", h.c.Target)
	if err != nil {
		h.mu.Lock()
		h.dialErrors[dialErrorKind(err)]++
		h.mu.Unlock()
		return
	}
	hc := &hostileConn{conn: conn, opened: time.Now()}
	h.mu.Lock()
	h.conns = append(h.conns, hc)
	h.mu.Unlock()

	host := h.c.Target
	var first string
	switch h.c.Scenario {
	case "slowloris":
		first = "GET " + h.c.ProbePath + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: bench-attack\r\nX-Slow: "
	case "slowbody":
		first = post(host, h.c.BodySize)
	case "slowupload":
		first = post(host, h.c.UploadSize)
	case "noread":
		first = "GET " + h.c.DownloadPath + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: bench-attack\r\n\r\n"
	}
	conn.SetWriteDeadline(time.Now().Add(h.c.DialTimeout))
	if _, err := io.WriteString(conn, first); err != nil {
		hc.cut(&h.closing)
		return
	}
	if h.c.Scenario == "noread" {
		return // it reads nothing, ever; finish looks at the socket's state
	}
	limit := 0
	switch h.c.Scenario {
	case "slowbody":
		limit = h.c.BodySize
	case "slowupload":
		limit = h.c.UploadSize
	}
	h.wg.Add(2)
	go h.read(hc)
	go h.trickle(hc, limit)
}

func post(host string, size int) string {
	return "POST /echo HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: bench-attack\r\n" +
		"Content-Type: application/octet-stream\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n"
}

// read takes whatever the server answers and notes when it closes.
func (h *horde) read(hc *hostileConn) {
	defer h.wg.Done()
	buf := make([]byte, 512)
	var head []byte
	for {
		n, err := hc.conn.Read(buf)
		if len(head) < 16 {
			head = append(head, buf[:n]...)
			if code := statusCode(head); code != "" {
				hc.mu.Lock()
				if hc.status == "" {
					hc.status = code
				}
				hc.mu.Unlock()
			}
		}
		if err != nil {
			hc.cut(&h.closing)
			return
		}
	}
}

// statusCode returns NNN from the start of "HTTP/1.x NNN ...", or "".
func statusCode(b []byte) string {
	s := string(b)
	if !strings.HasPrefix(s, "HTTP/") {
		return ""
	}
	_, rest, ok := strings.Cut(s, " ")
	if !ok || len(rest) < 3 {
		return ""
	}
	if _, err := strconv.Atoi(rest[:3]); err != nil {
		return ""
	}
	return rest[:3]
}

// trickle sends one byte per Trickle period, the first at a random point
// of the first period so that the horde does not write in bursts; a body
// stops at its announced length (limit; 0: headers, which never end).
func (h *horde) trickle(hc *hostileConn, limit int) {
	defer h.wg.Done()
	t := time.NewTimer(rand.N(h.c.Trickle))
	defer t.Stop()
	for sent := 0; limit == 0 || sent < limit; sent++ {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		hc.conn.SetWriteDeadline(time.Now().Add(h.c.Trickle))
		if _, err := hc.conn.Write([]byte{'a'}); err != nil {
			hc.cut(&h.closing)
			return
		}
		t.Reset(h.c.Trickle)
	}
}

// finish reads the state of every connection, closes them all and sums up.
func (h *horde) finish() hostileSummary {
	h.mu.Lock()
	conns := slices.Clone(h.conns)
	s := hostileSummary{Wanted: h.c.Conns, Opened: len(conns), DialErrors: h.dialErrors,
		RampS: h.rampS, Statuses: map[string]int{}}
	h.mu.Unlock()
	if h.c.Scenario == "noread" {
		var wg sync.WaitGroup
		for _, hc := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if closedByServer(hc.conn) {
					hc.cut(&h.closing) // when is unknown: by the attack's end
				}
			}()
		}
		wg.Wait()
	}
	h.closing.Store(true)
	close(h.stop)
	for _, hc := range conns {
		hc.conn.Close()
	}
	h.wg.Wait()
	var cuts []time.Duration
	for _, hc := range conns {
		hc.mu.Lock()
		if hc.cutAt > 0 {
			cuts = append(cuts, hc.cutAt)
		}
		if hc.status != "" {
			s.Statuses[hc.status]++
		}
		hc.mu.Unlock()
	}
	s.Cut = len(cuts)
	s.StillOpen = s.Opened - s.Cut
	if len(cuts) > 0 {
		l := summarize(cuts)
		s.CutP50S, s.CutMaxS = l.P50ms/1000, l.MaxMs/1000
	}
	return s
}

// Reading a never-read download at the attack's end: a server that has
// closed it sends what its socket still held, then its FIN, within
// noreadCheckTime; one still serving sends more than noreadCheckBytes.
const (
	noreadCheckBytes = 16 << 20
	noreadCheckTime  = 2 * time.Second
)

// closedByServer tells whether the server has closed or reset a
// connection whose answer was never read. Its TCP state alone cannot
// tell: a server that closes it gracefully queues its FIN behind the
// data the client never took, so the client sees the FIN only once it
// reads.
func closedByServer(conn net.Conn) bool {
	if !established(conn) {
		return true
	}
	conn.SetReadDeadline(time.Now().Add(noreadCheckTime))
	buf := make([]byte, 256<<10)
	for n := 0; n < noreadCheckBytes; {
		k, err := conn.Read(buf)
		n += k
		if err != nil {
			var ne net.Error
			return !(errors.As(err, &ne) && ne.Timeout())
		}
	}
	return false
}

// tcpEstablished is Linux's TCP_ESTABLISHED (include/net/tcp_states.h).
const tcpEstablished = 1

// established tells whether the server has not closed or reset conn: its
// TCP state is still ESTABLISHED (a FIN received makes it CLOSE_WAIT).
func established(conn net.Conn) bool {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	var state uint8
	cerr := rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			state = info.State
		}
	})
	return cerr == nil && state == tcpEstablished
}

func dialErrorKind(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no local port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "client out of descriptors"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "other"
}
