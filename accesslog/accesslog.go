// Package accesslog writes the proxy's access log (R11): one line per
// request in Apache's combined format, followed by the duration, the app
// and the request id. Lines are buffered and written at most every
// flushInterval, so logging costs a request a format and a copy, not a
// write(2). Reopen follows a rotated file (SIGUSR1 after logrotate).
//
// With SetPerApp the same lines are also handed on per app, a batch per
// flush, for the per-app access logs (log_dir/USER/APP.access.log):
// the proxy cannot open those (they are in directories only root and the
// app's owner may enter), so it sends them to the master, which keeps
// them like the app logs. This package does not know where they go.
package accesslog

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// flushInterval bounds how long a line waits in the buffer.
const flushInterval = 200 * time.Millisecond

// maxPerAppBatch bounds one hand-on of an app's lines: the proxy sends
// each as one channel message, which may not exceed 64 MiB once JSON
// escaped it (up to 6 bytes per byte: "<" is \u003c). Clients sending
// 64 KiB heads as fast as loopback allows made 200 ms of one app's
// lines larger than that, and the whole batch was dropped. A line is
// at most a head's worth, escaped (about 300 KiB), so a batch of 1 MiB
// always holds one.
const maxPerAppBatch = 1 << 20

// Entry is one request as the log records it.
type Entry struct {
	RemoteAddr string // client address, without the port
	Time       time.Time
	Method     string
	URI        string // as the client sent it (path and query)
	Proto      string
	Status     int
	Bytes      int64 // response body bytes sent
	Referer    string
	UserAgent  string
	Duration   time.Duration
	App        string // "user/app", or "" when no app took the request
	RequestID  string
}

// Append formats e as one line, newline included, onto b:
//
//	127.0.0.1 - - [22/Nov/2026:07:40:00 +0000] "GET /hello HTTP/1.1" 200 6 "-" "curl/8.0" 0.001234 alice/blog 9f86d081-1a
//
// The first nine fields are Apache's combined format (a body of 0 bytes
// is "-", as there); then the duration in seconds, the app ("-": none)
// and the X-Request-Id the client was given. Quotes, backslashes,
// control bytes and bytes that are not UTF-8 in client-supplied fields
// are escaped as \" \\ \xHH, so a request cannot forge a line and every
// line is valid UTF-8.
func Append(b []byte, e Entry) []byte {
	b = appendField(b, e.RemoteAddr)
	b = append(b, " - - ["...)
	b = e.Time.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, `] "`...)
	b = appendEscaped(b, e.Method)
	b = append(b, ' ')
	b = appendEscaped(b, e.URI)
	b = append(b, ' ')
	b = appendEscaped(b, e.Proto)
	b = append(b, `" `...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, ' ')
	if e.Bytes > 0 {
		b = strconv.AppendInt(b, e.Bytes, 10)
	} else {
		b = append(b, '-')
	}
	b = append(b, ` "`...)
	b = appendField(b, e.Referer)
	b = append(b, `" "`...)
	b = appendField(b, e.UserAgent)
	b = append(b, `" `...)
	b = strconv.AppendFloat(b, e.Duration.Seconds(), 'f', 6, 64)
	b = append(b, ' ')
	b = appendField(b, e.App)
	b = append(b, ' ')
	b = appendField(b, e.RequestID)
	return append(b, '\n')
}

// appendField writes s, or "-" when empty, escaped.
func appendField(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return appendEscaped(b, s)
}

func appendEscaped(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
		case c >= utf8.RuneSelf:
			// Valid UTF-8 as it is; a byte of none escaped: the per-app
			// lines travel as JSON, which would turn it into U+FFFD, so
			// the tenant's file would not say what the global one says.
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
				continue
			}
			b = append(b, s[i:i+n]...)
			i += n - 1
		default:
			b = append(b, c)
		}
	}
	return b
}

// Writer appends lines to one file and, with SetPerApp, hands each
// app's lines to whoever keeps the per-app access logs. Safe for
// concurrent use.
type Writer struct {
	path    string
	onError func(error) // told of a failed flush, from the flusher

	mu   sync.Mutex
	f    io.WriteCloser // the open file; nil: no file (per-app lines only)
	w    *bufio.Writer  // nil when f is
	line []byte
	err  error // the last write error, reported once by Flush

	// perApp, when set, gets each app's lines since the last flush.
	perApp  func(app string, lines []byte)
	pending map[string][]byte // by app, guarded by mu

	stop chan struct{}
	done chan struct{}
}

// Open opens path for appending (creating it 0640 if needed; a symlink is
// refused) and starts the flusher, which reports a failed write to
// onError (may be nil).
func Open(path string, onError func(error)) (*Writer, error) {
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	return newWriter(path, f, onError), nil
}

func newWriter(path string, f io.WriteCloser, onError func(error)) *Writer {
	w := &Writer{path: path, onError: onError, f: f, stop: make(chan struct{}), done: make(chan struct{})}
	if f != nil {
		w.w = bufio.NewWriterSize(f, 64<<10)
	}
	go w.flusher()
	return w
}

// NewPerAppOnly returns a Writer with no file of its own, for when the
// admin wants per-app access logs but no global one: give it SetPerApp.
func NewPerAppOnly() *Writer { return newWriter("", nil, nil) }

// SetPerApp makes w hand the lines of each app (Entry.App, not "") to
// send: at every flush, at most every flushInterval, the app's lines
// since the last, whole and in order, in calls of at most
// maxPerAppBatch bytes (unless one line alone is longer). send is called
// from the flusher with no lock held and must not block for long (the
// proxy queues them for the master). Call it before the first Log.
func (w *Writer) SetPerApp(send func(app string, lines []byte)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.perApp = send
	w.pending = map[string][]byte{}
}

func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	return f, nil
}

// Log appends one line.
func (w *Writer) Log(e Entry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.line = Append(w.line[:0], e)
	if w.w != nil {
		if _, err := w.w.Write(w.line); err != nil && w.err == nil {
			w.err = err
		}
	}
	if w.perApp != nil && e.App != "" {
		w.pending[e.App] = append(w.pending[e.App], w.line...)
	}
}

// Flush writes buffered lines to the file, and hands the per-app lines
// on.
func (w *Writer) Flush() error {
	w.mu.Lock()
	err := w.flushLocked()
	pending := w.takePendingLocked()
	send := w.perApp
	w.mu.Unlock()
	for app, lines := range pending {
		for len(lines) > 0 {
			n := batchEnd(lines, maxPerAppBatch)
			send(app, lines[:n])
			lines = lines[n:]
		}
	}
	return err
}

// batchEnd is where the first batch of lines ends: after the last whole
// line within max bytes, or after the first line if that alone is
// longer.
func batchEnd(lines []byte, max int) int {
	if len(lines) <= max {
		return len(lines)
	}
	if i := bytes.LastIndexByte(lines[:max], '\n'); i >= 0 {
		return i + 1
	}
	if i := bytes.IndexByte(lines, '\n'); i >= 0 {
		return i + 1
	}
	return len(lines)
}

// takePendingLocked returns the per-app lines since the last call, and
// forgets them.
func (w *Writer) takePendingLocked() map[string][]byte {
	if len(w.pending) == 0 {
		return nil
	}
	p := w.pending
	w.pending = make(map[string][]byte, len(p))
	return p
}

func (w *Writer) flushLocked() error {
	if w.w == nil {
		return nil
	}
	err := w.w.Flush()
	if err == nil {
		err, w.err = w.err, nil
	}
	if err != nil {
		// bufio keeps a write error for good: drop what is buffered (it
		// could not be written) and try afresh with the next lines, so a
		// disk that was full for a minute does not end logging.
		w.w.Reset(w.f)
	}
	return err
}

// Reopen flushes and opens the path anew: after logrotate moved the file
// away, new lines go to the new file. A Writer with no file has nothing
// to reopen (the per-app logs are their keeper's to reopen).
func (w *Writer) Reopen() error {
	if w.path == "" {
		return nil
	}
	f, err := openFile(w.path)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	ferr := w.flushLocked()
	w.f.Close()
	w.f = f
	w.w.Reset(f)
	return ferr
}

// Close flushes, hands the last per-app lines on and closes the file.
func (w *Writer) Close() error {
	close(w.stop)
	<-w.done
	err := w.Flush()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		if cerr := w.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

func (w *Writer) flusher() {
	defer close(w.done)
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-t.C:
			// Told once per failing stretch, not five times a second.
			err := w.Flush()
			if err != nil && !failing && w.onError != nil {
				w.onError(err)
			}
			failing = err != nil
		case <-w.stop:
			return
		}
	}
}
