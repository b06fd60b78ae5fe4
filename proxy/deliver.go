package proxy

import (
	"errors"
	"io"
	"net/http"

	"github.com/pyhost/pyhost/wsgiadapter"
)

// maxAttempts bounds the fresh connections tried for one request when
// workers cannot be reached (a worker died between its last request and
// this one).
const maxAttempts = 3

// deliver sends the request to one of app's workers: the small body
// (read already, so it can be sent again) or the streamed body of size
// bytes. It retries only while nothing was delivered (docs/design.md).
// ok is false when the client has been answered (or has left) already;
// otherwise the lease and connection now carry the request and the
// caller relays the response.
func (p *Proxy) deliver(w http.ResponseWriter, r *http.Request, app *appPool, env wsgiadapter.Environ, rid string, small []byte, body io.Reader, size int64) (l lease, conn *wsgiadapter.Conn, ok bool) {
	ctx := r.Context()
	var lastErr error
	for attempt := 0; attempt < maxAttempts; {
		l, err := app.acquire(ctx)
		if err != nil {
			p.unavailable(w, r, app, rid, err)
			return lease{}, nil, false
		}
		conn := l.conn
		pooled := conn != nil
		if !pooled {
			attempt++
			conn, err = wsgiadapter.Dial(ctx, l.w.socket)
			if err != nil {
				app.dropConn(l, nil)
				lastErr = err
				if ctx.Err() != nil {
					return lease{}, nil, false // the client left while we dialled
				}
				continue
			}
		}
		if body == nil {
			err = conn.SendBytes(env, small)
		} else {
			err = conn.Send(env, body, size)
		}
		if err != nil {
			app.dropConn(l, conn)
			if errors.Is(err, wsgiadapter.ErrNotDelivered) {
				// A stale pooled connection (its worker died or closed
				// it) costs no attempt: the pool holds at most threads
				// of them, so this ends, with a fresh dial at the latest.
				lastErr = err
				continue
			}
			p.log.Warn("sending request to worker failed", "app", app.key, "worker", l.w.id, "request_id", rid, "error", err)
			writeError(w, http.StatusBadGateway, 0)
			return lease{}, nil, false
		}
		return l, conn, true
	}
	p.log.Warn("no worker could take the request", "app", app.key, "request_id", rid, "error", lastErr)
	writeError(w, http.StatusBadGateway, 0)
	return lease{}, nil, false
}
