package wsgiadapter

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrNotDelivered marks a request that no byte of reached the worker, so
// the proxy may safely try it on another worker.
var ErrNotDelivered = errors.New("request not delivered")

// ErrNotRead marks a request the worker cannot have read whole, so its
// app never saw it: a request sent in one REQUEST frame (no streamed
// body) whose write failed part-way, or whose connection the worker
// closed with bytes of it still unread before answering. A byte stream
// is read in order, so an unread byte means the frame's last byte was
// never read, and the worker calls the app only with a whole frame. The
// kernel tells the two ends of a close apart: a UNIX stream socket
// closed with data in its receive queue resets its peer (ECONNRESET),
// one closed after reading everything gives EOF. The proxy may send such
// a request to another worker, whatever its method.
var ErrNotRead = errors.New("request not read by the worker")

// errBadBody marks a request body the client did not deliver whole.
var errBadBody = errors.New("incomplete request body")

// ErrAppFailed is returned by Conn.Next when the app raised after the
// response head was sent (END 0x01): the client's response is broken.
var ErrAppFailed = errors.New("app failed mid-response")

// Conn is the proxy's end of one persistent worker connection. It carries
// one request at a time; it is not safe for concurrent use, except that
// Close may be called from any goroutine to cancel the request in flight.
type Conn struct {
	nc      net.Conn
	r       *bufio.Reader
	wbuf    []byte
	rbuf    []byte
	pid     int
	threads int
	bodyErr chan error // result of the streamed body writer, nil when none
	clean   bool       // last response ended with END and nothing is pending
	closed  atomic.Bool
	// inline: the request in flight went out in one REQUEST frame, no
	// streamed body after it (see ErrNotRead).
	inline  bool
	bodyBuf []byte      // reused for small request bodies
	iov     net.Buffers // the REQUEST frame's head and inline body, for one writev
	iovArr  [2][]byte
	// frameLeft is how much of the current response BODY frame is still
	// to be read; the response reads it straight into the caller's buffer.
	frameLeft int
	// ended is what Read returns once END was read (io.EOF or
	// ErrAppFailed); nil while the response runs.
	ended error
	// readTimeout bounds each wait for the worker; 0: none.
	readTimeout time.Duration
}

// Dial connects to a worker socket and performs the version handshake.
// The context bounds both.
func Dial(ctx context.Context, path string) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("%w: dial worker: %w", ErrNotDelivered, err)
	}
	c := &Conn{nc: nc, r: bufio.NewReaderSize(nc, 64<<10), rbuf: make([]byte, 0, 64<<10)}
	if err := c.handshake(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("%w: %w", ErrNotDelivered, err)
	}
	c.clean = true
	return c, nil
}

func (c *Conn) handshake(ctx context.Context) (err error) {
	if dl, ok := ctx.Deadline(); ok {
		c.nc.SetDeadline(dl)
	}
	cancelled := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.nc.SetDeadline(time.Unix(1, 0))
		close(cancelled)
	})
	defer func() {
		if !stop() {
			// The cancel ran (or is running): its past deadline would
			// break every later read, so the connection is unusable.
			<-cancelled
			if err == nil {
				err = ctx.Err()
			}
			return
		}
		c.nc.SetDeadline(time.Time{})
	}()
	hello := AppendFrame(nil, FrameHello, []byte("versions="+strconv.Itoa(Version)))
	if _, err := c.nc.Write(hello); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	typ, p, err := ReadFrame(c.r, c.rbuf)
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	if typ != FrameHello {
		return protoErr("worker answered the handshake with frame type %d", typ)
	}
	h, err := ParseHello(p)
	if err != nil {
		return err
	}
	v, err := h.Int("version")
	if err != nil {
		return err
	}
	if v != Version {
		return protoErr("worker speaks protocol version %d, want %d", v, Version)
	}
	if c.pid, err = h.Int("pid"); err != nil {
		return err
	}
	if c.threads, err = h.Int("threads"); err != nil {
		return err
	}
	return nil
}

// PID is the worker process's pid as it reported in the handshake.
func (c *Conn) PID() int { return c.pid }

// Close closes the connection; a request in flight is cancelled. It may
// be called from any goroutine, also while another uses the Conn.
func (c *Conn) Close() error {
	c.closed.Store(true)
	return c.nc.Close()
}

// Reusable reports whether the last request finished cleanly and the
// connection was not closed, so it can carry another one.
func (c *Conn) Reusable() bool { return c.clean && c.bodyErr == nil && !c.closed.Load() }

// Send writes a request. body may be nil for no body. size is the body's
// length when known (Content-Length) and -1 otherwise. Small known bodies
// are inlined; others are streamed by a goroutine concurrently with the
// caller reading the response, so an app that answers before reading its
// body cannot deadlock. An error wrapping ErrNotDelivered means no byte of
// the request reached the worker.
func (c *Conn) Send(env Environ, body io.Reader, size int64) error {
	switch {
	case body == nil || size == 0:
		return c.SendBytes(env, nil)
	case size > 0 && size <= InlineBodyMax:
		if !c.clean {
			return fmt.Errorf("%w: connection is not idle", ErrNotDelivered)
		}
		if cap(c.bodyBuf) < int(size) {
			c.bodyBuf = make([]byte, size)
		}
		inline := c.bodyBuf[:size]
		if _, err := io.ReadFull(body, inline); err != nil {
			return fmt.Errorf("%w: read request body: %w", ErrNotDelivered, err)
		}
		return c.SendBytes(env, inline)
	}
	if err := c.sendFrame(env, true, nil); err != nil {
		return err
	}
	c.bodyErr = make(chan error, 1)
	go func(ch chan<- error) {
		err := c.streamBody(body, size)
		if errors.Is(err, errBadBody) {
			// The worker would wait forever for the rest of a body that
			// will not come; closing ends the request (502). A failed
			// write needs nothing: the worker closed its end, and what it
			// sent before is still read.
			c.nc.Close()
		}
		ch <- err
	}(c.bodyErr)
	return nil
}

// SendBytes writes a request whose whole body the caller already holds
// (at most InlineBodyMax bytes; nil for none), in one frame and one
// write. The proxy uses it for small bodies it keeps for a retry, so they
// are not copied again.
func (c *Conn) SendBytes(env Environ, body []byte) error {
	if len(body) > InlineBodyMax {
		return fmt.Errorf("%w: inline body of %d bytes exceeds %d", ErrNotDelivered, len(body), InlineBodyMax)
	}
	return c.sendFrame(env, false, body)
}

// sendFrame writes the REQUEST frame. An error wrapping ErrNotDelivered
// means no byte of it reached the worker.
func (c *Conn) sendFrame(env Environ, streamed bool, inline []byte) error {
	if !c.clean {
		return fmt.Errorf("%w: connection is not idle", ErrNotDelivered)
	}
	// The environ goes into wbuf; an inline body of some size is not
	// copied after it but written from where it is, in the same
	// writev: at thousands of 64 KiB uploads a second the copy showed
	// in the proxy's profile.
	gather := len(inline) >= gatherMin
	head := inline
	if gather {
		head = nil
	}
	var err error
	c.wbuf, err = AppendRequest(c.wbuf[:0], env, streamed, head)
	if err == nil && gather {
		c.wbuf, err = extendFrame(c.wbuf, len(inline))
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotDelivered, err)
	}
	c.clean = false
	c.inline = !streamed
	var n int64
	if gather {
		// WriteTo consumes the slice; its array is the Conn's, so
		// no request allocates one.
		c.iovArr = [2][]byte{c.wbuf, inline}
		c.iov = c.iovArr[:]
		n, err = c.iov.WriteTo(c.nc)
		c.iovArr = [2][]byte{}
	} else {
		var m int
		m, err = c.nc.Write(c.wbuf)
		n = int64(m)
	}
	if err != nil {
		c.nc.Close()
		if n == 0 {
			return fmt.Errorf("%w: %w", ErrNotDelivered, err)
		}
		if c.inline {
			// The frame's end never went out: the app cannot have run.
			return fmt.Errorf("%w: send request: %w", ErrNotRead, err)
		}
		return fmt.Errorf("send request: %w", err)
	}
	return nil
}

// gatherMin is the size from which an inline body is written from its
// own buffer (writev) rather than copied into the frame's: below it the
// copy is cheaper than a second iovec.
const gatherMin = 4 << 10

// extendFrame makes the single frame at the start of frame announce n
// more payload bytes, to be written after it.
func extendFrame(frame []byte, n int) ([]byte, error) {
	total := len(frame) - headerLen + n
	if total > MaxPayload {
		return frame[:0], fmt.Errorf("request frame of %d bytes exceeds the %d byte limit", total, MaxPayload)
	}
	binary.BigEndian.PutUint32(frame[1:], uint32(total))
	return frame, nil
}

// streamBody copies the request body as BODY frames and ends it with an
// empty one. A known size that the reader does not meet is an error: the
// worker would otherwise see a shorter body as complete.
func (c *Conn) streamBody(body io.Reader, size int64) error {
	bp := uploadBufs.Get().(*[]byte)
	defer uploadBufs.Put(bp)
	buf := *bp
	var sent int64
	for {
		n, rerr := body.Read(buf[headerLen:])
		if n > 0 {
			AppendFrameHeader(buf[:0], FrameBody, n)
			if _, err := c.nc.Write(buf[:headerLen+n]); err != nil {
				return fmt.Errorf("stream request body: %w", err)
			}
			sent += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("%w: %w", errBadBody, rerr)
		}
	}
	if size >= 0 && sent != size {
		return fmt.Errorf("%w: %d bytes, want %d", errBadBody, sent, size)
	}
	if _, err := c.nc.Write(AppendFrameHeader(buf[:0], FrameBody, 0)); err != nil {
		return fmt.Errorf("end request body: %w", err)
	}
	return nil
}

// uploadBufs hold a BODY frame header and up to 64 KiB of a streamed
// request body: an upload costs no allocation of its own, whatever its size.
var uploadBufs = sync.Pool{New: func() any { b := make([]byte, headerLen+64<<10); return &b }}

// SetReadTimeout makes every later ReadHead or Next fail with an error
// wrapping os.ErrDeadlineExceeded when the worker stays silent for d; 0
// means no limit. Each successful read restarts the clock, so a response
// that keeps streaming is never cut off.
func (c *Conn) SetReadTimeout(d time.Duration) {
	c.readTimeout = d
	if d <= 0 {
		c.nc.SetReadDeadline(time.Time{})
	}
}

func (c *Conn) armReadDeadline() {
	if c.readTimeout > 0 {
		c.nc.SetReadDeadline(time.Now().Add(c.readTimeout))
	}
}

// ReadHead reads the response head. Any error means the connection is
// unusable and the request failed; one wrapping ErrNotRead means the
// worker closed it with the request unread, before any byte of an
// answer.
func (c *Conn) ReadHead() (Head, error) {
	c.armReadDeadline()
	if _, err := c.r.Peek(1); err != nil {
		// Nothing of the answer came. The kernel reports the reset only
		// once the bytes the worker sent before closing are read, so an
		// answer cut short is never taken for an unread request.
		switch {
		case c.inline && errors.Is(err, syscall.ECONNRESET):
			return Head{}, fmt.Errorf("%w: read response head: %w", ErrNotRead, err)
		case errors.Is(err, io.EOF):
			err = io.ErrUnexpectedEOF
		}
		return Head{}, fmt.Errorf("read response head: %w", err)
	}
	typ, p, err := ReadFrame(c.r, c.rbuf)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Head{}, fmt.Errorf("read response head: %w", err)
	}
	if typ != FrameHeaders {
		return Head{}, protoErr("expected HEADERS, got frame type %d", typ)
	}
	c.frameLeft, c.ended = 0, nil
	return ParseHead(p)
}

// Read reads the response body (after ReadHead) into p: the bytes of the
// BODY frames, never their headers. A frame's payload is read straight
// into p, through the connection's read buffer only when p is smaller
// than it, so a body costs no allocation and no copy beyond the one out
// of the socket, however large its frames. Read returns what is at hand
// and does not wait to fill p, so each chunk an app yields reaches the
// caller at once. At a complete END it returns io.EOF; when the app failed
// mid-body, ErrAppFailed; both again on every later call.
func (c *Conn) Read(p []byte) (int, error) {
	for c.frameLeft == 0 {
		if c.ended != nil {
			return 0, c.ended
		}
		if err := c.nextFrame(); err != nil {
			return 0, err
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > c.frameLeft {
		p = p[:c.frameLeft]
	}
	if c.r.Buffered() == 0 {
		c.armReadDeadline()
	}
	n, err := c.r.Read(p)
	c.frameLeft -= n
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return n, fmt.Errorf("read response body: %w", err)
	}
	return n, nil
}

// nextFrame reads the header of the next response frame: a BODY sets
// frameLeft, an END sets ended.
func (c *Conn) nextFrame() error {
	if c.r.Buffered() == 0 {
		c.armReadDeadline()
	}
	typ, n, err := readFrameHeader(c.r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read response body: %w", err)
	}
	switch typ {
	case FrameBody:
		if n == 0 {
			return protoErr("empty BODY frame in a response")
		}
		c.frameLeft = n
		return nil
	case FrameEnd:
		if n != 1 {
			return protoErr("malformed END frame")
		}
		end, err := c.r.ReadByte()
		if err != nil {
			return fmt.Errorf("read response end: %w", io.ErrUnexpectedEOF)
		}
		if end > 1 {
			return protoErr("malformed END frame")
		}
		c.clean = c.finishBody() == nil
		c.ended = io.EOF
		if end == 1 {
			c.ended = ErrAppFailed
		}
		return nil
	default:
		return protoErr("unexpected frame type %d in a response", typ)
	}
}

// Next returns the next chunk of the response body, at most 64 KiB and
// valid until the next call; chunks need not match the worker's frames.
// At a complete END it returns io.EOF; when the app failed mid-body,
// ErrAppFailed. It is Read into a buffer the Conn keeps.
func (c *Conn) Next() ([]byte, error) {
	n, err := c.Read(c.rbuf[:cap(c.rbuf)])
	if err != nil {
		return nil, err
	}
	return c.rbuf[:n], nil
}

// Buffered reports whether more of the response is already at hand or
// on its way: bytes in the read buffer, or the rest of a BODY frame the
// worker is sending (it writes a frame's header and payload together).
// The proxy skips a flush to the client while it is true.
func (c *Conn) Buffered() bool { return c.frameLeft > 0 || c.r.Buffered() > 0 }

// errBodyPending: the streamed body's writer had not finished in time.
var errBodyPending = errors.New("request body still being sent")

// AwaitBody waits up to d for the writer of a streamed request body to
// finish and returns its error: nil for an inline body or one sent
// whole. The proxy uses it when a request failed before any answer, to
// learn whether the body's client failed first. The connection is not
// reused after a failure.
func (c *Conn) AwaitBody(d time.Duration) error {
	if c.bodyErr == nil {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-c.bodyErr:
		c.bodyErr = nil
		if err != nil {
			c.nc.Close()
		}
		return err
	case <-t.C:
		return errBodyPending
	}
}

// bodyGrace bounds how long a finished response waits for its request
// body writer. The worker has answered already; a writer still blocked on
// a slow client is not worth a pooled connection, which is closed instead.
const bodyGrace = 200 * time.Millisecond

// finishBody waits for the body writer after END and reports whether the
// connection is clean.
func (c *Conn) finishBody() error {
	err := c.AwaitBody(bodyGrace)
	if errors.Is(err, errBodyPending) {
		c.nc.Close()
		return fmt.Errorf("%w after the response ended", err)
	}
	return err
}
