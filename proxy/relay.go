package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/pyhost/pyhost/channel"
	"github.com/pyhost/pyhost/wsgiadapter"
)

// relay copies the worker's response to the client. A client that goes
// away closes the worker connection, which is how the worker learns to
// stop (docs/protocol.md, Cancelling).
func (p *Proxy) relay(w http.ResponseWriter, r *http.Request, app *appPool, l lease, conn *wsgiadapter.Conn, rid string, timeout time.Duration, watch *bodyWatch) {
	start := time.Now()
	stop := context.AfterFunc(r.Context(), func() { conn.Close() })
	defer func() {
		// The cancel hook must be gone before the connection is pooled:
		// a client leaving right after its response would otherwise
		// close a connection that is already serving someone else. If
		// it ran, Close marked the connection not reusable.
		stop()
		app.release(l, conn)
	}()

	timedOut := func(err error) bool {
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return false
		}
		conn.Close()
		detail := fmt.Sprintf("request %s %s %s exceeded request_timeout %v", rid, r.Method, r.URL.Path, timeout)
		p.log.Warn("request timed out; the worker will be recycled", "app", app.key, "worker", l.w.id, "pid", l.w.pid, "request_id", rid, "after", time.Since(start).Round(time.Millisecond))
		p.events(channel.Event{Kind: channel.EventTimeout, App: app.key, WorkerID: l.w.id, Detail: detail})
		return true
	}
	conn.SetReadTimeout(timeout)
	head, err := conn.ReadHead()
	if err != nil {
		switch {
		case timedOut(err):
			writeError(w, http.StatusGatewayTimeout, 0)
		case watch.tooLarge():
			writeError(w, http.StatusRequestEntityTooLarge, 0)
		case r.Context().Err() != nil:
			// The client left; logged as 499 by the access log later.
		default:
			p.log.Warn("worker failed before answering", "app", app.key, "worker", l.w.id, "pid", l.w.pid, "request_id", rid, "error", err)
			writeError(w, http.StatusBadGateway, 0)
		}
		return
	}
	h := w.Header()
	for _, hv := range head.Headers {
		h.Add(hv.Name, hv.Value)
	}
	if _, ok := h["Content-Type"]; !ok {
		// Do not let net/http sniff and invent a type the app did not send.
		h["Content-Type"] = nil
	}
	w.WriteHeader(head.Status)
	flusher, _ := w.(http.Flusher)
	for {
		chunk, err := conn.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			if timedOut(err) {
				panic(http.ErrAbortHandler)
			}
			if !errors.Is(err, wsgiadapter.ErrAppFailed) && r.Context().Err() == nil {
				p.log.Warn("worker failed mid-response", "app", app.key, "worker", l.w.id, "pid", l.w.pid, "request_id", rid, "error", err)
			}
			// Abort the client's response: it must not look complete.
			panic(http.ErrAbortHandler)
		}
		if _, err := w.Write(chunk); err != nil {
			conn.Close()
			panic(http.ErrAbortHandler)
		}
		if flusher != nil && !conn.Buffered() {
			flusher.Flush()
		}
	}
}
