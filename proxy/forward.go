package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyhost/pyhost/wsgiadapter"
)

// forward reads the request body as far as the limits let it before a
// worker thread is taken (docs/design.md, "Request bodies and client
// limits"), then delivers the request and relays the answer. A body the
// client did not deliver whole is answered here (413, 408, 400); no
// worker saw it. It reports whether it took charge of the body's
// deadline (ServeHTTP's drainDeadline otherwise).
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, rt route, env wsgiadapter.Environ, rid string) (bodyTaken bool) {
	app, maxBody, timeout := rt.app, rt.maxBody, rt.requestTimeout
	if maxBody > 0 && r.ContentLength > maxBody {
		writeError(w, http.StatusRequestEntityTooLarge, 0)
		return false
	}
	var (
		watch *bodyWatch
		small []byte    // the whole body, sent inline (and again on a retry)
		body  io.Reader // or this, streamed, size bytes (-1: unknown)
		size  = r.ContentLength
	)
	if size != 0 {
		in := r.Body
		if maxBody > 0 && size < 0 {
			// A chunked upload is cut off where it passes the limit.
			in = http.MaxBytesReader(w, in, maxBody)
		}
		watch = newBodyWatch(w, in, p.limits)
		defer watch.drainDeadline()
		rb, err := p.readAhead(watch, size)
		defer rb.release()
		if err != nil {
			p.bodyFailed(w, rid, watch, err)
			return true
		}
		switch {
		case rb.complete() && rb.spooled == 0 && len(rb.mem) <= wsgiadapter.InlineBodyMax:
			small = rb.mem
			if small == nil {
				small = []byte{}
			}
			// Sent inline, it is copied into the request frame: once the
			// response is relayed nothing refers to it (a streamed body
			// may still be read by the body's writer then).
			rb.recycle = true
			size = int64(len(small))
		case rb.complete():
			body, size = rb.reader(), rb.size()
		default:
			body = rb.reader()
		}
		if r.ContentLength < 0 {
			// A chunked body stays one to the app, even read whole: no
			// CONTENT_LENGTH, wsgi.input_terminated (R4), as it was sent.
			size = -1
		}
	}
	l, conn, ok := p.deliver(w, r, app, env, rid, small, body, size)
	if ok {
		p.relay(w, r, app, l, conn, rid, timeout, watch)
	}
	return watch != nil
}

// bodyFailed answers a request whose body the client did not deliver
// whole before a worker was taken. net/http closes the connection after
// it: what is left on the wire must not be read as another request.
func (p *Proxy) bodyFailed(w http.ResponseWriter, rid string, watch *bodyWatch, err error) {
	code := watch.failure()
	if code == 0 {
		code = http.StatusBadRequest // not the client's read: a spool write, say
	}
	p.log.Debug("request body not received", "request_id", rid, "status", code, "received", watch.received(), "error", err)
	writeError(w, code, 0)
}

// bodyWatch is a request body as the proxy reads it from the client.
// Every read waits at most client_body_timeout, less once the body falls
// behind client_body_min_rate, and the first failure is kept, so the
// answer can say what went wrong: 413 past max_body, 408 too slow, 400
// broken (a bad chunk, a body cut short). Reads come from one goroutine
// at a time (readAhead, then the worker connection's body writer);
// tooLarge and failure from any.
type bodyWatch struct {
	r       io.Reader
	rc      *http.ResponseController
	timeout time.Duration
	minRate int64 // bytes per second; <= 0: none

	n      int64         // bytes read
	waited time.Duration // time spent waiting in Read, what the rate is held to
	ended  atomic.Bool   // EOF (the deadline cleared) or an error (set past)

	total  atomic.Int64
	tooBig atomic.Bool
	failed atomic.Int32 // the status the failure calls for; 0: none
}

func newBodyWatch(w http.ResponseWriter, r io.Reader, l Limits) *bodyWatch {
	return &bodyWatch{r: r, rc: http.NewResponseController(w), timeout: l.ClientBodyTimeout, minRate: l.ClientBodyMinRate}
}

func (b *bodyWatch) Read(p []byte) (int, error) {
	start := time.Now()
	if b.timeout > 0 && !b.ended.Load() {
		// net/http's body reads the connection itself, so its deadline
		// bounds this read; between reads (the worker taking what was
		// read) no clock runs against the client.
		b.rc.SetReadDeadline(bodyDeadline(start, b.timeout, b.minRate, b.n, b.waited))
	}
	n, err := b.r.Read(p)
	b.waited += time.Since(start)
	b.n += int64(n)
	b.total.Store(b.n)
	if err != nil && !b.ended.Load() {
		b.ended.Store(true)
		if err == io.EOF {
			// A deadline left behind would fire in net/http's own read
			// that watches for the client going away, and cancel the
			// request.
			b.rc.SetReadDeadline(time.Time{})
		} else {
			// net/http reads on to discard the rest of the body before it
			// answers; what is left of a failed one must fail at once.
			b.rc.SetReadDeadline(time.Unix(1, 0))
			b.fail(err)
		}
	}
	return n, err
}

// drainDeadline gives what is left of a body nobody read to the end (an
// app that answered first) client_body_timeout for net/http, which reads
// and drops it after the answer: the per-read deadline of the last read
// could be long gone, or never set. A body that ended keeps its deadline:
// cleared after EOF, past after a failure (so net/http closes at once).
func (b *bodyWatch) drainDeadline() {
	if !b.ended.Load() {
		b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	}
}

func (b *bodyWatch) fail(err error) {
	var mbe *http.MaxBytesError
	code := http.StatusBadRequest
	switch {
	case errors.As(err, &mbe):
		b.tooBig.Store(true)
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, os.ErrDeadlineExceeded):
		code = http.StatusRequestTimeout
	}
	b.failed.CompareAndSwap(0, int32(code))
}

// bodyDeadline is when a read that starts at now must have returned: at
// most timeout from now, and, with a minimum rate, no later than the
// time the bytes received so far have bought: timeout plus one second
// per rate bytes, less the time already spent waiting for them.
func bodyDeadline(now time.Time, timeout time.Duration, rate, received int64, waited time.Duration) time.Time {
	d := now.Add(timeout)
	if rate <= 0 {
		return d
	}
	bought := time.Duration(received/rate)*time.Second + time.Duration(received%rate)*time.Second/time.Duration(rate)
	if bought < 0 || bought > 1000*time.Hour {
		return d // no overflow, and far past any timeout anyway
	}
	if left := timeout + bought - waited; left < timeout {
		return now.Add(max(left, 0))
	}
	return d
}

// tooLarge reports whether the body passed max_body; nil means no watch.
func (b *bodyWatch) tooLarge() bool { return b != nil && b.tooBig.Load() }

// failure is the status a failed body calls for (413, 408, 400), 0 while
// it has not failed; nil means no watch.
func (b *bodyWatch) failure() int {
	if b == nil {
		return 0
	}
	return int(b.failed.Load())
}

// received is how much of the body has been read.
func (b *bodyWatch) received() int64 { return b.total.Load() }

// requestBody is what of a body the proxy read before taking a worker
// thread: the first bytes in memory, the next in a spool file, and, when
// the limits stopped it before the end, the rest still to be read from
// the client while the worker takes it.
type requestBody struct {
	mem     []byte
	memHeld int64 // cap(mem), reserved against the memory budget
	spool   *os.File
	spooled int64     // bytes in spool, reserved against request_spool_limit
	tail    []byte    // bytes read after the spool could take no more
	rest    io.Reader // nil when the body is complete
	// recycle: mem may go back to inlineBufs on release (it came from
	// there, and nothing refers to it after the request).
	recycle bool

	memCounter, spoolCounter *atomic.Int64 // the proxy's totals
	memBudget                int64
}

func (b *requestBody) complete() bool { return b.rest == nil }

// size is the length of a complete body.
func (b *requestBody) size() int64 { return int64(len(b.mem)) + b.spooled + int64(len(b.tail)) }

// reader reads the body from its first byte.
func (b *requestBody) reader() io.Reader {
	var parts []io.Reader
	if len(b.mem) > 0 {
		parts = append(parts, bytes.NewReader(b.mem))
	}
	if b.spooled > 0 {
		parts = append(parts, io.NewSectionReader(b.spool, 0, b.spooled))
	}
	if len(b.tail) > 0 {
		parts = append(parts, bytes.NewReader(b.tail))
	}
	if b.rest != nil {
		parts = append(parts, b.rest)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return io.MultiReader(parts...)
}

// release gives back the memory, the spool file and their shares of
// the budgets.
func (b *requestBody) release() {
	b.dropMem()
	if b.spool != nil {
		b.spool.Close()
		b.spoolCounter.Add(-b.spooled)
	}
}

// grow reserves n more bytes of memory for the body, if the budget has
// them.
func (b *requestBody) grow(n int64) bool {
	if !reserve(b.memCounter, n, b.memBudget) {
		return false
	}
	b.memHeld += n
	return true
}

func (b *requestBody) dropMem() {
	b.memCounter.Add(-b.memHeld)
	if b.recycle && cap(b.mem) == wsgiadapter.InlineBodyMax {
		m := b.mem[:0] // its own slice header: b.mem is cleared below
		inlineBufs.Put(&m)
	}
	b.mem, b.memHeld = nil, 0
}

// inlineBufs hold the memory of bodies read whole that go to the worker
// inline (over half of wsgiadapter.InlineBodyMax): a 64 KiB upload
// allocated 64 KiB per request, and at thousands of uploads a second
// the collector's work showed in the proxy's profile (docs/benchmarks.md).
var inlineBufs = sync.Pool{New: func() any { b := make([]byte, wsgiadapter.InlineBodyMax); return &b }}

// uploadMemTotal bounds the memory all request bodies held in memory
// take together (or 4 x buffer_request_body, if more): past it, bodies
// go to the spool file from their first byte. A crowd of clients that
// each send most of a buffer's worth and stall costs memory up to this,
// not max_connections x buffer_request_body.
const uploadMemTotal = 64 << 20

// uploadChunk is how much of a body is read from the client at a time
// on its way to the spool file.
const uploadChunk = 64 << 10

var uploadBufs = sync.Pool{New: func() any { b := make([]byte, uploadChunk); return &b }}

// readAhead reads in (a body of declared bytes, -1 for chunked) before a
// worker thread is taken: into memory when it fits buffer_request_body,
// else into a spool file while request_spool_limit allows. What the
// limits leave unread is the result's rest. An error is the client's
// (in has recorded it); the result holds what must be released even
// then.
func (p *Proxy) readAhead(in io.Reader, declared int64) (*requestBody, error) {
	lim := p.limits
	memMax := max(lim.BufferRequestBody, 0)
	rb := &requestBody{memCounter: &p.uploadMem, spoolCounter: &p.uploadSpooled, memBudget: max(uploadMemTotal, 4*memMax)}
	if memMax > 0 && declared <= memMax {
		want := memMax
		if declared >= 0 {
			want = declared
		}
		var eof bool
		var err error
		// A small body whose length is known is read in one go while
		// bodies hold little of the budget: net/http has the body's
		// first bytes of a fast client in hand already, and a first read
		// of only 4 KiB costs a 64 KiB upload a second read system call
		// (docs/benchmarks.md, "Where uploads wait"). Past that share,
		// as in a crowd of slow bodies, memory again grows with the bytes.
		eager := declared > 0 && declared <= wsgiadapter.InlineBodyMax &&
			p.uploadMem.Load() < rb.memBudget/eagerShare
		rb.mem, eof, err = readUpTo(in, want, eager, rb.grow)
		if err != nil || eof {
			return rb, err
		}
		if int64(len(rb.mem)) == declared {
			// The declared length is read; net/http says EOF on the
			// next read without touching the connection.
			var one [1]byte
			n, err := in.Read(one[:])
			if n == 0 && err == io.EOF {
				return rb, nil
			}
			if err == nil {
				err = fmt.Errorf("body longer than its Content-Length")
			}
			return rb, err
		}
		// Past buffer_request_body (chunked), or the memory budget is
		// spent: on to the spool.
	}
	if lim.RequestSpoolLimit <= 0 || p.uploadSpoolDir() == "" {
		rb.rest = in
		return rb, nil
	}
	bp := uploadBufs.Get().(*[]byte)
	defer uploadBufs.Put(bp)
	buf := *bp
	if len(rb.mem) > 0 && !p.toSpool(rb, rb.mem) {
		rb.rest = in
		return rb, nil
	}
	rb.dropMem() // in the file now; memory held per upload stays small
	for {
		n, err := in.Read(buf)
		if n > 0 && !p.toSpool(rb, buf[:n]) {
			rb.tail = bytes.Clone(buf[:n])
			rb.rest = in
			return rb, nil
		}
		if err == io.EOF {
			return rb, nil
		}
		if err != nil {
			return rb, err
		}
	}
}

// eagerShare: small bodies are read whole from their first byte while
// bodies in memory hold less than 1/eagerShare of the upload memory
// budget (4 MiB of the default 64), so a crowd of slow ones is back to
// growing with the bytes long before the budget runs out.
const eagerShare = 16

// readUpTo reads in until EOF or limit bytes, growing the buffer only as
// bytes arrive: a client that announces a megabyte and sends a byte
// costs a few kilobytes, not a megabyte. Each growth by n bytes must be
// granted by grow first; when it is not, readUpTo returns what it has.
// eager (for a limit of at most wsgiadapter.InlineBodyMax) takes the
// whole limit before the first read instead, one read for a body sent
// at once.
func readUpTo(in io.Reader, limit int64, eager bool, grow func(n int64) bool) (buf []byte, eof bool, err error) {
	const first = 4 << 10
	for int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			size := min(limit, max(first, int64(2*cap(buf))))
			if (cap(buf) > 0 || eager) && limit <= wsgiadapter.InlineBodyMax {
				// Its first bytes came: a small body goes to its full
				// size at once, one copy, as before buffering.
				size = limit
			}
			if !grow(size - int64(cap(buf))) {
				return buf, false, nil
			}
			var grown []byte
			if size > wsgiadapter.InlineBodyMax/2 && size <= wsgiadapter.InlineBodyMax {
				// Whole and inline: one of the pooled buffers, given
				// back once the request is done (requestBody.dropMem).
				// The budget counts what was asked for.
				grown = (*inlineBufs.Get().(*[]byte))[:len(buf):wsgiadapter.InlineBodyMax]
			} else {
				grown = make([]byte, len(buf), size)
			}
			copy(grown, buf)
			buf = grown
		}
		n, err := in.Read(buf[len(buf):min(int64(cap(buf)), limit)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, true, nil
		}
		if err != nil {
			return buf, false, err
		}
	}
	return buf, false, nil
}

// toSpool appends b to rb's spool file, opening it first if need be. It
// reports false, having written nothing, when the spool limit or the
// file system will not take b: the body then streams from there.
func (p *Proxy) toSpool(rb *requestBody, b []byte) bool {
	n := int64(len(b))
	if !reserve(&p.uploadSpooled, n, p.limits.RequestSpoolLimit) {
		return false
	}
	if rb.spool == nil {
		f, err := openUploadSpool(p.uploadSpoolDir())
		if err != nil {
			p.uploadSpooled.Add(-n)
			p.log.Warn("cannot spool a request body; it streams to the worker", "error", err)
			return false
		}
		rb.spool = f
	}
	if _, err := rb.spool.WriteAt(b, rb.spooled); err != nil {
		p.uploadSpooled.Add(-n)
		p.log.Warn("cannot spool a request body; it streams to the worker", "error", err)
		return false
	}
	rb.spooled += n
	return true
}

// reserve adds n to *total unless that passes limit.
func reserve(total *atomic.Int64, n, limit int64) bool {
	for {
		cur := total.Load()
		if cur+n > limit {
			return false
		}
		if total.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// uploadSpoolDir is the directory spool files are made in, found on first use:
// the first of Limits.SpoolDir (or /var/tmp, then the temp directory)
// where an unnamed file can be made; "" when none can, and bodies over
// buffer_request_body then stream.
func (p *Proxy) uploadSpoolDir() string {
	p.uploadSpoolOnce.Do(func() {
		dirs := []string{p.limits.SpoolDir}
		if p.limits.SpoolDir == "" {
			dirs = []string{"/var/tmp", os.TempDir()}
		}
		var errs []error
		for _, d := range dirs {
			f, err := openUploadSpool(d)
			if err == nil {
				f.Close()
				p.uploadSpoolAt = d
				return
			}
			errs = append(errs, err)
		}
		p.log.Warn("request bodies over buffer_request_body cannot be spooled; they stream to the worker", "error", errors.Join(errs...))
	})
	return p.uploadSpoolAt
}

// openUploadSpool makes an unnamed file in dir (O_TMPFILE): nobody can open it
// by name, nothing is left behind when the proxy dies, and no name can
// be planted for it in a shared directory.
func openUploadSpool(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool file in %s: %w", dir, err)
	}
	return os.NewFile(uintptr(fd), dir+"/(spooled request body)"), nil
}
