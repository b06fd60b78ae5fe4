package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyhost/pyhost/proxymsg"
	"github.com/pyhost/pyhost/wsgiadapter"
)

// The response body path (docs/design.md, "The body path"). A body is
// copied through one fixed buffer from a pool: read out of the worker
// socket straight into it, written from it to the client, so a response
// costs no allocation that grows with its size. While the client keeps
// up, the copy runs at its pace. When one write to the client blocks for
// stallAfter, the client is not keeping up: a second goroutine takes the
// rest of the response from the worker into a spool (memory, then an
// unlinked temporary file), so the worker's thread is free as soon as
// the app is done, and the client is served from the spool at its own
// pace. Every write to the client must finish within send_timeout.
const (
	// relayBufSize is the copy buffer a response starts with, and the
	// spooler's. bigBufSize is the buffer of a body larger than that,
	// once the client took a write at once (writeMax) and until it
	// stalls: the relay fills it with as much of the body as is at hand
	// or on its way (the rest of a BODY frame the worker is sending) and
	// writes it to the client in one write. What a large body costs goes with the
	// number of writes to the client, not with the bytes: each write
	// is a round of the client's wake-up, reads and poll, and the TCP
	// send path's per-call work. A 1 MiB body in one write instead of
	// eight cost the proxy 290-360 against 530-580 µs of CPU and the
	// load client 200-240 against 400 (docs/benchmarks.md, "Session 7").
	// Buffers of 256 and 512 KiB gained little of that, and splice(2)
	// was worse (BenchmarkUnixToTCP).
	relayBufSize = 128 << 10
	bigBufSize   = 1 << 20
	// bigBufMax bounds the big buffers out at once (a crowd of clients
	// that took one write and then stopped reading holds one each until
	// send_timeout); past it, responses go on with the small one.
	bigBufMax = 64
	// bigBufTidy is how many big buffers out at once make their release
	// worth two full collections once none is out (tidySpools): a burst
	// of large responses would otherwise leave that many MiB in the pool.
	bigBufTidy = 4
	// stallAfter is how long one write to the client may block before
	// the rest of the response is spooled (at most half of send_timeout).
	stallAfter = 500 * time.Millisecond
	// spoolChunk is the unit of a spool's memory.
	spoolChunk = 64 << 10
	// spoolMemMax is the memory one spooled response may hold before it
	// goes on in a file; spoolMemTotal bounds all of them together.
	spoolMemMax   = 1 << 20
	spoolMemTotal = 64 << 20
	// spoolFileMax bounds one response's spool file (nginx's
	// proxy_max_temp_file_size); spoolFileTotal all of them. Past
	// either, the worker is read at the client's pace again, and
	// send_timeout is what ends a client that reads nothing.
	spoolFileMax   = 1 << 30
	spoolFileTotal = 4 << 30
	// spoolTidyPeak is the spool memory whose release is worth two full
	// collections: once the spools that held this much at once are all
	// empty, the heap's free memory goes back to the system
	// (tidySpools), spoolTidyAfter later. 20 clients that never read
	// left the proxy at 3.6 times its size a minute after they were
	// gone; with this, 1.1 times.
	spoolTidyPeak  = 4 << 20
	spoolTidyAfter = 5 * time.Second
	// excessMax is how much an app may send past its Content-Length that
	// is read and dropped to keep the worker connection; past it the
	// connection is closed instead.
	excessMax = 1 << 20
)

var (
	relayBufs  = sync.Pool{New: func() any { b := make([]byte, relayBufSize); return &b }}
	bigBufs    = sync.Pool{New: func() any { b := make([]byte, bigBufSize); return &b }}
	bigOut     atomic.Int64 // big buffers taken and not given back
	bigPeak    atomic.Int64 // the most bigOut since it was last 0
	spoolBufs  = sync.Pool{New: func() any { b := make([]byte, 0, spoolChunk); return &b }}
	spoolMem   atomic.Int64 // bytes held by every spool's chunks
	spoolPeak  atomic.Int64 // the most spoolMem held since it was last 0
	spoolDisk  atomic.Int64 // bytes in every spool's file
	spoolTmpFn = os.TempDir // where spool files are made; tests replace it
)

// relay copies the worker's response to the client. A client that goes
// away closes the worker connection, which is how the worker learns to
// stop (docs/protocol.md, Cancelling).
func (p *Proxy) relay(w http.ResponseWriter, r *http.Request, app *appPool, l lease, conn *wsgiadapter.Conn, rid string, timeout time.Duration, watch *bodyWatch) {
	x := &relayed{p: p, w: w, r: r, app: app, l: l, conn: conn, rid: rid, timeout: timeout, start: time.Now()}
	x.hook()
	defer x.finish()

	head, err := x.readHead()
	for err != nil && errors.Is(err, wsgiadapter.ErrNotRead) && x.l.again != nil && r.Context().Err() == nil {
		// The worker closed the connection with the request unread (it
		// died): its app never saw it, so another worker gets it.
		x.stop()
		x.released.Store(true) // resend gives the lease back
		l, conn, ok := p.resend(w, r, app, rid, x.l, x.conn, err)
		if !ok {
			return // answered (or the client left)
		}
		x.l, x.conn = l, conn
		x.released.Store(false)
		x.hook()
		head, err = x.readHead()
	}
	if err != nil {
		if watch != nil && watch.failure() == 0 && r.Context().Err() != nil {
			// The client's connection failed while its body streamed
			// (closed, or shut for writing half-way): net/http cancels
			// the request as it reads the error, before the body reader
			// returns it. Wait for the body's writer to see it too, so
			// that a body cut short is answered as one (400), not taken
			// for a client that left.
			x.conn.AwaitBody(time.Second)
		}
		switch {
		case x.timedOut(err):
			writeError(w, http.StatusGatewayTimeout, 0)
		case watch.tooLarge():
			writeError(w, http.StatusRequestEntityTooLarge, 0)
		case watch.failure() != 0:
			// A streamed body the client did not deliver whole (too
			// slow, broken; past max_body above): the body writer closed
			// the connection, and the answer is the client's failure
			// (408, 400), as for a body that failed before a worker was
			// taken. net/http closes the client connection after it.
			p.log.Debug("request body not received", x.facts("status", watch.failure(), "received", watch.received(), "error", err)...)
			writeError(w, watch.failure(), 0)
		case r.Context().Err() != nil:
			// The client left; logged as 499 by the access log later.
		default:
			p.log.Warn("worker failed before answering", x.facts("error", err)...)
			writeError(w, http.StatusBadGateway, 0)
		}
		return
	}
	if head.Status < 200 {
		// net/http sends a 1xx as an interim response and would then
		// invent a 200 for the body: the app's answer cannot be relayed.
		x.conn.Close()
		p.log.Warn("app answered with an interim status as its response; 502", x.facts("status", head.Status)...)
		writeError(w, http.StatusBadGateway, 0)
		return
	}
	h := w.Header()
	var lengths []string
	for _, hv := range head.Headers {
		if strings.EqualFold(hv.Name, "Content-Length") {
			lengths = append(lengths, hv.Value)
			continue
		}
		h.Add(hv.Name, hv.Value)
	}
	f := decideFraming(head.Status, lengths)
	if f.length >= 0 {
		h["Content-Length"] = []string{strconv.FormatInt(f.length, 10)}
	}
	if f.problem != "" {
		p.log.Warn("app sent a Content-Length the proxy does not pass on: "+f.problem, x.facts("status", head.Status, "values", lengths)...)
	}
	if _, ok := h["Content-Type"]; !ok {
		// Do not let net/http sniff and invent a type the app did not send.
		h["Content-Type"] = nil
	}
	w.WriteHeader(head.Status)
	x.status = head.Status
	x.copyBody(f)
}

// framing is how the relay frames a response body. The front owns it
// (issue 17): an app's Content-Length is passed on only when it is one
// number, and the body is held to it; otherwise the body is framed by
// what is sent (chunked, or the end of the connection for HTTP/1.0).
type framing struct {
	// length is the one Content-Length the client gets; -1: none.
	length int64
	// noBody: the status allows no body (204, 304); the app's body bytes
	// are dropped, and net/http sends no Content-Length of its own.
	noBody bool
	// problem says what was wrong with the app's Content-Length headers,
	// for the log; "" when nothing was.
	problem string
}

// decideFraming decides a response's framing from its status and the
// values of the app's Content-Length headers, as they came.
func decideFraming(status int, values []string) framing {
	f := framing{length: -1, noBody: status == http.StatusNoContent || status == http.StatusNotModified || status < 200}
	if len(values) == 0 || f.noBody {
		return f
	}
	if len(values) == 1 {
		if n, ok := parseLength(strings.TrimSpace(values[0])); ok {
			f.length = n
			return f
		}
	}
	// RFC 9110 §8.6: several values, or a list, are acceptable only when
	// all are the same number; anything else is invalid.
	var n int64 = -1
	count, bad := 0, false
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			count++
			m, ok := parseLength(strings.TrimSpace(part))
			switch {
			case !ok || (n >= 0 && m != n):
				bad = true
			case n < 0:
				n = m
			}
		}
	}
	switch {
	case bad:
		f.problem = "invalid or conflicting values; dropped, the body is framed by what the app sends"
	case count > 1:
		f.length = n
		f.problem = "the same value more than once; sent once"
	default:
		f.length = n
	}
	return f
}

// parseLength parses a Content-Length value: decimal digits only.
func parseLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// relayed is one response on its way from a worker to a client.
type relayed struct {
	p       *Proxy
	w       http.ResponseWriter
	r       *http.Request
	app     *appPool
	l       lease
	conn    *wsgiadapter.Conn
	rid     string
	timeout time.Duration
	start   time.Time
	stop    func() bool // removes the hook that closes conn when the client leaves

	released atomic.Bool // l and conn are given back

	// state says who reads the worker: the relay goroutine (idle or
	// writing to the client) or, once a write stalled, the spooler.
	state atomic.Int32
	// sp is claimed by the one stall that may become the spooler, before
	// state says spooling; the relay goroutine reads it after.
	sp    atomic.Pointer[spool]
	stall *time.Timer

	// Of the relay goroutine only.
	rc       *http.ResponseController
	deadline time.Duration // send_timeout; 0 once the writer has no deadlines
	h2       bool          // the client speaks HTTP/2
	until    time.Time     // HTTP/2: the stream's write deadline as last set
	status   int
	rate     float64 // bytes a second the client took the last write at; 0 before the first
}

const (
	stateIdle int32 = iota
	stateWriting
	stateSpooling
)

// bodySource is where the relay reads the body: the worker connection,
// or the spool once it took over.
type bodySource interface {
	io.Reader
	// Buffered reports whether more is at hand, so a flush can wait.
	Buffered() bool
}

func (x *relayed) facts(kv ...any) []any {
	return append([]any{"app", x.app.key, "worker", x.l.w.id, "pid", x.l.w.pid, "request_id", x.rid}, kv...)
}

// release hands the lease and the connection back, once: the relay
// goroutine does it when it read the whole response itself, the spooler
// when it took over.
func (x *relayed) release() {
	if x.released.CompareAndSwap(false, true) {
		// The cancel hook must be gone before the connection is pooled:
		// a client leaving right after its response would otherwise
		// close a connection that is already serving someone else. If
		// it ran, Close marked the connection not reusable.
		x.stop()
		x.app.release(x.l, x.conn)
	}
}

// hook makes the client's leaving close the worker connection, which is
// how the worker learns to stop (docs/protocol.md, Cancelling).
func (x *relayed) hook() {
	conn := x.conn
	x.stop = context.AfterFunc(x.r.Context(), func() { conn.Close() })
}

// readHead waits up to request_timeout for the response head.
func (x *relayed) readHead() (wsgiadapter.Head, error) {
	x.conn.SetReadTimeout(x.timeout)
	return x.conn.ReadHead()
}

// finish runs when the handler returns, normally or by panic. A spool is
// given up; if the spooler is still reading the worker, the connection
// is closed under it (the worker stops at its next write), and the
// spooler releases.
func (x *relayed) finish() {
	if x.stall != nil {
		x.stall.Stop()
	}
	if x.state.Load() == stateSpooling {
		if !x.sp.Load().close() {
			x.conn.Close()
		}
		return
	}
	x.release()
}

// timedOut handles a worker silent past request_timeout (S5): the request
// is cancelled, the worker taken out of rotation and the master told.
func (x *relayed) timedOut(err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	x.conn.Close()
	x.app.timedOut(x.l)
	detail := fmt.Sprintf("request %s %s %s exceeded request_timeout %v", x.rid, x.r.Method, x.r.URL.Path, x.timeout)
	x.p.log.Warn("request timed out; the worker will be recycled", x.facts("after", time.Since(x.start).Round(time.Millisecond))...)
	x.p.events(proxymsg.Event{Kind: proxymsg.EventTimeout, App: x.app.key, WorkerID: x.l.w.id, Detail: detail})
	return true
}

// workerFailed logs why reading the worker failed mid-body, unless the
// client's leaving caused it or it was already said.
func (x *relayed) workerFailed(err error) {
	if x.timedOut(err) || errors.Is(err, wsgiadapter.ErrAppFailed) || x.r.Context().Err() != nil {
		return
	}
	x.p.log.Warn("worker failed mid-response", x.facts("error", err)...)
}

// copyBody copies the body from the worker (or the spool) to the client,
// held to the framing f, and ends the client's response as broken
// (http.ErrAbortHandler) when the app failed, the worker went away or the
// client did not read for send_timeout.
func (x *relayed) copyBody(f framing) {
	x.rc = http.NewResponseController(x.w)
	x.deadline = x.p.limits.SendTimeout
	x.h2 = x.r.ProtoMajor == 2
	// Every response starts with the small buffer. A body over it
	// moves to a big one once the client took a write at once (see
	// writeMax), and back when the client stalls: a crowd of slow or
	// never-reading clients holds 128 KiB each, not 1 MiB.
	buf, put := relayBuf(false)
	defer func() { put() }()
	swap := func(big bool) {
		if big != (len(buf) > relayBufSize) {
			put()
			buf, put = relayBuf(big)
		}
	}
	mayGrow := f.length > relayBufSize
	var src bodySource = x.conn
	var sent, dropped int64
	unflushed := false
	// follow switches to the spool once a stalled write handed it the
	// worker.
	follow := func() {
		if src == bodySource(x.conn) && x.state.Load() == stateSpooling {
			src = x.sp.Load()
			mayGrow = false
			swap(false)
		}
	}
	for {
		n, err := src.Read(buf)
		// More of the body on its way (the rest of a frame, bytes
		// already read ahead) joins this write: fewer, larger writes to
		// the client. Nothing is waited for that the worker has not
		// started sending, so streamed chunks go out as promptly (R6).
		for err == nil && n < len(buf) && src.Buffered() {
			var m int
			m, err = src.Read(buf[n:])
			n += m
		}
		if n > 0 {
			data := buf[:n]
			switch {
			case f.noBody:
				if dropped == 0 {
					x.p.log.Warn("app sent a body with a response that has none; dropped", x.facts("status", x.status)...)
				}
				dropped += int64(n)
				data = nil
			case f.length >= 0 && sent+int64(n) > f.length:
				if dropped == 0 {
					x.p.log.Warn("app sent more than its Content-Length; the rest is dropped", x.facts("content_length", f.length)...)
				}
				keep := f.length - sent
				dropped += int64(n) - keep
				data = data[:keep]
			}
			for rest := data; len(rest) > 0; {
				k := min(len(rest), x.writeMax())
				start := time.Now()
				if err := x.write(rest[:k], false); err != nil {
					x.clientFailed(err)
				}
				x.rate = clientRate(k, time.Since(start))
				rest = rest[k:]
			}
			if len(data) > 0 {
				sent += int64(len(data))
				unflushed = true
				follow()
				if mayGrow && x.writeMax() > relayBufSize {
					swap(true)
					mayGrow = false // grown, or none to be had
				}
			}
			if dropped > excessMax {
				// Not worth reading on to keep a pooled connection.
				if src == bodySource(x.conn) {
					x.conn.Close()
				}
				break
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if src == bodySource(x.conn) && !errors.Is(err, wsgiadapter.ErrAppFailed) {
				x.workerFailed(err)
				x.conn.Close()
			}
			// Abort the client's response: it must not look complete.
			panic(http.ErrAbortHandler)
		}
		if unflushed && !src.Buffered() {
			if err := x.write(nil, true); err != nil {
				x.clientFailed(err)
			}
			unflushed = false
			follow()
		}
	}
	if unflushed && !x.h2 {
		if err := x.write(nil, true); err != nil {
			x.clientFailed(err)
		}
	}
	// Over HTTP/2 the end is left to net/http, which sends what is
	// buffered with END_STREAM as the handler returns: flushed here, it
	// would go as one DATA frame more, an empty one with END_STREAM, and
	// the connection's writer flushes (a TLS record and a write) once per
	// frame when no other stream has one queued. The stream's write
	// deadline stays armed for that last write, and dies with the stream.
	// (HTTP/1's is per connection, and the last write below clears it.)
	if f.length >= 0 && sent < f.length && !f.noBody && x.r.Method != http.MethodHead {
		// net/http closes the connection after a response shorter than
		// its Content-Length, so the client sees it broken.
		x.p.log.Warn("app sent less than its Content-Length; the client's connection is closed", x.facts("content_length", f.length, "sent", sent)...)
	}
	if x.deadline > 0 && !x.h2 && x.state.Load() != stateSpooling {
		// A later response on this connection must not meet this
		// deadline. (A spooled one keeps it: its client was slow, and
		// net/http's last write, the chunked terminator, follows.)
		x.rc.SetWriteDeadline(time.Time{})
	}
}

// relayBuf takes a copy buffer, big or small, and returns the function
// that gives it back.
func relayBuf(big bool) ([]byte, func()) {
	if !big {
		bp := relayBufs.Get().(*[]byte)
		return *bp, func() { relayBufs.Put(bp) }
	}
	out := bigOut.Add(1)
	if out > bigBufMax {
		bigOut.Add(-1)
		return relayBuf(false)
	}
	raisePeak(&bigPeak, out)
	bp := bigBufs.Get().(*[]byte)
	return *bp, func() {
		bigBufs.Put(bp)
		if bigOut.Add(-1) == 0 && bigPeak.Swap(0) >= bigBufTidy {
			tidySpools()
		}
	}
}

// writeMax is the most the next write to the client may carry. Each
// write has send_timeout to finish, so a large write would hold a slow
// client to a higher rate than send_timeout's promise (a client that
// takes more of the response now and then keeps its connection): the
// first write of a response carries relayBufSize at most, as every
// write did before, and a later one as much as the client's last write
// shows it can take in an eighth of send_timeout, up to bigBufSize
// (relayBufSize at least). A client that took 128 KiB in a millisecond
// gets the rest of a 1 MiB body in one write; one that took it at
// 10 KB/s goes on at 128 KiB a write.
func (x *relayed) writeMax() int {
	budget := x.rate * x.p.limits.SendTimeout.Seconds() / 8
	return int(max(relayBufSize, min(bigBufSize, budget)))
}

// clientRate is the rate of a write of n bytes that took d.
func clientRate(n int, d time.Duration) float64 {
	return float64(n) / max(d.Seconds(), 1e-6)
}

// write sends data to the client, or flushes, under send_timeout. While
// the relay reads the worker itself, a write that blocks for stallAfter
// hands the worker to the spooler.
func (x *relayed) write(data []byte, flush bool) error {
	if x.deadline > 0 {
		if err := x.setDeadline(); err != nil {
			x.deadline = 0 // the writer has none (a test recorder)
		}
	}
	direct := x.state.CompareAndSwap(stateIdle, stateWriting)
	if direct {
		if x.stall == nil {
			x.stall = time.AfterFunc(x.stallAfter(), x.stalled)
		} else {
			x.stall.Reset(x.stallAfter())
		}
	}
	var err error
	if flush {
		err = x.rc.Flush()
	} else {
		_, err = x.w.Write(data)
	}
	if direct {
		x.stall.Stop()
		x.state.CompareAndSwap(stateWriting, stateIdle) // fails once spooling
	}
	return err
}

// setDeadline gives the next write send_timeout. Over HTTP/1 that is a
// deadline on the connection, cheap to move, so each write sets its own.
// Over HTTP/2 each SetWriteDeadline is a message to the connection's
// serve goroutine and a timer of its own, which cost a hello response
// more than its one DATA frame: the stream's deadline is set one and a
// half send_timeouts ahead and moved only when less than one is left, so
// a write still gets send_timeout at least (and 1.5 times it at most).
func (x *relayed) setDeadline() error {
	now := time.Now()
	if !x.h2 {
		return x.rc.SetWriteDeadline(now.Add(x.deadline))
	}
	if x.until.Sub(now) >= x.deadline {
		return nil
	}
	x.until = now.Add(x.deadline + x.deadline/2)
	return x.rc.SetWriteDeadline(x.until)
}

func (x *relayed) stallAfter() time.Duration {
	if d := x.p.limits.SendTimeout / 2; d > 0 && d < stallAfter {
		return d
	}
	return stallAfter
}

// stalled runs when a write to the client blocked for stallAfter: the
// client is not keeping up, so the rest of the response is taken from the
// worker into a spool. It runs on the timer's goroutine and becomes the
// spooler.
func (x *relayed) stalled() {
	sp := newSpool()
	if !x.sp.CompareAndSwap(nil, sp) {
		return // another stall became the spooler
	}
	if !x.state.CompareAndSwap(stateWriting, stateSpooling) {
		x.sp.Store(nil)
		return // the write finished meanwhile
	}
	x.p.log.Debug("client not keeping up; spooling the rest of the response", x.facts()...)
	bp := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(bp)
	buf := *bp
	for {
		n, err := x.conn.Read(buf)
		if n > 0 && !sp.put(buf[:n], x.p) {
			break // the client side is gone and closed the connection
		}
		if err != nil {
			if err != io.EOF && !sp.closed() {
				x.workerFailed(err)
				x.conn.Close()
			}
			// The cancel hook goes before the relay can see the end and
			// return: its client leaving then must not close a
			// connection that ended cleanly.
			x.stop()
			sp.end(err)
			break
		}
	}
	x.release()
}

// clientFailed ends a response whose client write failed: the client
// left, or read nothing for send_timeout. Such a client's connection is
// reset, as nginx's reset_timedout_connection does: a plain close would
// leave the kernel delivering megabytes of queued response into a window
// the client keeps shut, for as long as it likes.
func (x *relayed) clientFailed(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		x.p.log.Warn("client read nothing for send_timeout; connection reset", x.facts("send_timeout", x.p.limits.SendTimeout)...)
		resetClient(x.rc)
	}
	if x.state.Load() != stateSpooling {
		x.conn.Close() // the worker stops at its next write
	}
	panic(http.ErrAbortHandler)
}

// resetClient closes an HTTP/1 client connection with a reset (SO_LINGER
// 0), dropping what is queued for it. Over HTTP/2 the stream is reset by
// the abort instead.
func resetClient(rc *http.ResponseController) {
	nc, _, err := rc.Hijack()
	if err != nil {
		return
	}
	if tc, ok := nc.(interface{ NetConn() net.Conn }); ok { // TLS
		if tcp, ok := tc.NetConn().(*net.TCPConn); ok {
			tcp.SetLinger(0)
		}
	} else if tcp, ok := nc.(*net.TCPConn); ok {
		tcp.SetLinger(0)
	}
	nc.Close()
}

// spool holds the part of a response that the worker sent and the
// client has not taken yet: in memory up to spoolMemMax (and while all
// spools together hold less than spoolMemTotal), then in a temporary
// file. Memory always holds older bytes than the file: once the file is
// in use, everything goes there until the client has read it empty. The
// spooler puts, the relay goroutine reads; either waits for the other.
type spool struct {
	mu   sync.Mutex
	cond sync.Cond // on mu: data arrived, room was made, or the end

	chunks [][]byte // *spoolBufs, oldest first; chunks[0][off:] is unread
	off    int
	mem    int64 // capacity of chunks, counted in spoolMem too

	file       *os.File // nil until needed
	noFile     bool     // making or writing it failed: memory only
	rOff, wOff int64    // unread bytes of the file; wOff is its size too

	ended error // the worker's part is over: io.EOF, or why not
	gone  bool  // closed by the relay: nothing more is kept
}

func newSpool() *spool {
	s := &spool{}
	s.cond.L = &s.mu
	return s
}

// put keeps data, waiting while memory and file are full. It returns
// false once the spool was closed.
func (s *spool) put(data []byte, p *Proxy) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(data) > 0 {
		if s.gone {
			return false
		}
		if s.rOff == s.wOff {
			// The file is empty: memory first.
			if k := len(s.chunks); k > 0 {
				last := s.chunks[k-1]
				if room := cap(last) - len(last); room > 0 {
					n := min(room, len(data))
					s.chunks[k-1] = append(last, data[:n]...)
					data = data[n:]
					s.cond.Broadcast()
					continue
				}
			}
			if s.mem+spoolChunk <= spoolMemMax {
				// A spool holding no memory gets a chunk whatever the
				// others hold: without a file it could wait forever.
				if now := spoolMem.Add(spoolChunk); now <= spoolMemTotal || s.mem == 0 {
					raisePeak(&spoolPeak, now)
					s.chunks = append(s.chunks, (*spoolBufs.Get().(*[]byte))[:0])
					s.mem += spoolChunk
					continue
				}
				spoolMem.Add(-spoolChunk)
			}
		}
		if s.writeFile(data, p) {
			s.cond.Broadcast()
			return true
		}
		s.cond.Wait() // full: the client has to take some first
	}
	return true
}

// writeFile appends data to the file, making it first; false when it
// cannot take data now (full, or no file to be had).
func (s *spool) writeFile(data []byte, p *Proxy) bool {
	n := int64(len(data))
	if s.noFile || s.wOff+n > spoolFileMax {
		return false
	}
	if spoolDisk.Add(n) > spoolFileTotal {
		spoolDisk.Add(-n)
		return false
	}
	if s.file == nil {
		f, err := openSpoolFile(spoolTmpFn())
		if err != nil {
			spoolDisk.Add(-n)
			s.noFile = true
			p.log.Warn("cannot make a spool file; a slow client's response is held in memory only", "error", err)
			return false
		}
		s.file = f
	}
	if _, err := s.file.WriteAt(data, s.wOff); err != nil {
		// What the file has is still read; nothing more goes there.
		spoolDisk.Add(-n)
		s.noFile = true
		p.log.Warn("spool file write failed; a slow client's response is held in memory only", "error", err)
		return false
	}
	s.wOff += n
	return true
}

// Read gives the relay the oldest bytes kept, waiting for some; after
// the last, the end the spooler saw (io.EOF when the response is whole).
func (s *spool) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if len(s.chunks) > 0 {
			c := s.chunks[0]
			n := copy(p, c[s.off:])
			s.off += n
			if s.off == len(c) {
				s.freeChunk()
			}
			if n > 0 {
				s.cond.Broadcast()
				return n, nil
			}
		}
		if s.rOff < s.wOff {
			n, err := s.file.ReadAt(p[:min(int64(len(p)), s.wOff-s.rOff)], s.rOff)
			s.rOff += int64(n)
			if s.rOff == s.wOff {
				// Read empty: start over, so the file holds what is
				// unread, not the whole response.
				spoolDisk.Add(-s.wOff)
				s.rOff, s.wOff = 0, 0
				s.file.Truncate(0)
			}
			if n > 0 {
				s.cond.Broadcast()
				return n, nil
			}
			return 0, fmt.Errorf("read spool file: %w", err)
		}
		if s.ended != nil && len(s.chunks) == 0 {
			return 0, s.ended
		}
		s.cond.Wait()
	}
}

// freeChunk drops chunks[0]; called with mu held.
func (s *spool) freeChunk() {
	c := s.chunks[0][:0]
	s.chunks[0] = nil
	s.chunks = s.chunks[1:]
	s.off = 0
	s.mem -= spoolChunk
	if spoolMem.Add(-spoolChunk) == 0 && spoolPeak.Swap(0) >= spoolTidyPeak {
		tidySpools()
	}
	spoolBufs.Put(&c)
}

// tidySpools gives the memory of emptied spools back to the system,
// spoolTidyAfter from now (more spools may empty meanwhile). Without it
// the chunks and copy buffers stay resident: they sit in their pools,
// which keep what they hold through one collection, and the collector
// would not run again until the heap doubled. Two collections free the
// pools; FreeOSMemory returns the pages.
func tidySpools() {
	spoolTidies.Add(1)
	spoolTidyOnce.Do(func() {
		go func() {
			for range spoolTidy {
				time.Sleep(spoolTidyAfter) // a delay, not a wait for anything
				runtime.GC()
				debug.FreeOSMemory()
			}
		}()
	})
	select {
	case spoolTidy <- struct{}{}:
	default: // one pending is enough
	}
}

var (
	spoolTidy     = make(chan struct{}, 1)
	spoolTidyOnce sync.Once
	spoolTidies   atomic.Int64 // tidies asked for (tests)
)

// raisePeak makes peak at least now.
func raisePeak(peak *atomic.Int64, now int64) {
	for {
		p := peak.Load()
		if now <= p || peak.CompareAndSwap(p, now) {
			return
		}
	}
}

// Buffered reports whether bytes are kept.
func (s *spool) Buffered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.chunks) > 0 || s.rOff < s.wOff
}

// end records that the spooler is done: err is io.EOF for a whole
// response.
func (s *spool) end(err error) {
	s.mu.Lock()
	s.ended = err
	s.cond.Broadcast()
	s.mu.Unlock()
}

// closed reports whether the relay closed the spool.
func (s *spool) closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gone
}

// close frees what the spool holds and makes put fail from now on. It
// reports whether the spooler had ended, that is whether it no longer
// reads the worker.
func (s *spool) close() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gone = true
	for len(s.chunks) > 0 {
		s.freeChunk()
	}
	if s.file != nil {
		spoolDisk.Add(-s.wOff)
		s.file.Close()
		s.file, s.rOff, s.wOff = nil, 0, 0
	}
	s.cond.Broadcast()
	return s.ended != nil
}

// openSpoolFile makes a file in dir that no one else can open: with
// O_TMPFILE it never has a name; where the file system lacks it, it is
// unlinked at once. Either way nothing is left behind, even if the proxy
// is killed.
func openSpoolFile(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), filepath.Join(dir, "(spool)")), nil
	}
	f, err := os.CreateTemp(dir, "pyhost-spool-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}
