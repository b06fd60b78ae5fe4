package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"syscall"
	"time"

	"github.com/pyhost/pyhost/wsgiadapter"
)

// maxAttempts bounds the tries of one request that fail without telling
// anything sure about their worker (a connection that could not be set up
// for another reason than a refusal, or closed with the request unread):
// each may pick the same worker again.
// Tries that cost no attempt end by themselves: a stale pooled connection
// is closed, and the pool holds at most threads of them; a worker that
// refused a connection is out of rotation. maxTries is the backstop for
// both.
const (
	maxAttempts = 3
	maxTries    = 64
)

// outcome is what one delivery attempt came to.
type outcome int

const (
	delivered  outcome = iota
	staleConn          // a pooled connection was closed: try again, free
	workerDown         // the worker's socket refused: it is out of rotation; try again, free
	dialFailed         // no connection for another reason: one attempt spent
	notRead            // the worker closed the connection with the request unread: one attempt spent
	badRequest         // the request cannot be put on the wire: 400, the connection is kept
	sendFailed         // part of the request went out: 502, no retry
	clientLeft         // the client went away meanwhile
)

// delivery is one request on its way to a worker, with what its retries
// need: the request itself and the tries spent so far.
type delivery struct {
	env   wsgiadapter.Environ
	small []byte    // the whole body, sent inline (and again on a retry)
	body  io.Reader // or this, streamed, size bytes (-1: unknown)
	size  int64
	asked time.Time // when the request first asked for a worker

	attempts, tries int
}

// resendable reports whether the request can be sent again once it left:
// only a body the proxy holds whole goes out a second time. A streamed
// body is read from the client as it is sent.
func (d *delivery) resendable() bool { return d.body == nil }

// deliver sends the request to one of app's workers: the small body
// (read already, so it can be sent again) or the streamed body of size
// bytes. It retries only while the request cannot have reached the app
// (docs/design.md): on another worker when the first turned out dead,
// else after waiting in the queue for what is left of queue_timeout. A
// 502 is for a request that no worker could take although one seemed
// ready; never for one that could wait for a worker instead. ok is false
// when the client has been answered (or has left) already; otherwise
// the lease and connection now carry the request and the caller relays
// the response. A lease of a request that may be sent again carries it
// (lease.again): the relay hands it back to resend when the worker
// closes the connection without reading it.
func (p *Proxy) deliver(w http.ResponseWriter, r *http.Request, app *appPool, env wsgiadapter.Environ, rid string, small []byte, body io.Reader, size int64) (l lease, conn *wsgiadapter.Conn, ok bool) {
	d := &delivery{env: env, small: small, body: body, size: size, asked: time.Now()}
	return p.deliverOn(w, r, app, rid, d, nil)
}

// resend delivers a request again after the worker that had it closed
// the connection without reading it (wsgiadapter.ErrNotRead): l, the
// lease it was read under, and its connection are given back first, the
// worker's idle connections closed (it most likely died: a new
// connection to it finds out at once, a refused dial takes it out of
// rotation). That costs one of the request's attempts.
func (p *Proxy) resend(w http.ResponseWriter, r *http.Request, app *appPool, rid string, l lease, conn *wsgiadapter.Conn, cause error) (lease, *wsgiadapter.Conn, bool) {
	d := l.again
	p.notReadBy(app, l, rid, cause)
	app.notRead(l, conn)
	d.attempts++
	return p.deliverOn(w, r, app, rid, d, cause)
}

func (p *Proxy) deliverOn(w http.ResponseWriter, r *http.Request, app *appPool, rid string, d *delivery, lastErr error) (l lease, conn *wsgiadapter.Conn, ok bool) {
	ctx := r.Context()
	for ; d.tries < maxTries && d.attempts < maxAttempts; d.tries++ {
		l, err := app.acquireAsked(ctx, d.asked)
		if err != nil {
			p.unavailable(w, r, app, rid, err)
			return lease{}, nil, false
		}
		conn, res, err := p.try(ctx, app, l, d)
		switch res {
		case delivered:
			if d.resendable() {
				l.again = d
			}
			return l, conn, true
		case staleConn:
		case workerDown:
			p.log.Warn("worker refused a connection; out of rotation until the master replaces it", "app", app.key, "worker", l.w.id, "pid", l.w.pid, "error", err)
		case dialFailed:
			d.attempts++
		case notRead:
			p.notReadBy(app, l, rid, err)
			d.attempts++
		case badRequest:
			p.log.Debug("request cannot be sent to a worker", "app", app.key, "request_id", rid, "error", err)
			writeError(w, http.StatusBadRequest, 0)
			return lease{}, nil, false
		case sendFailed:
			app.logs.warn(p.log, "send-failed", "sending request to worker failed", "app", app.key, "worker", l.w.id, "request_id", rid, "error", err)
			writeError(w, http.StatusBadGateway, 0)
			return lease{}, nil, false
		case clientLeft:
			return lease{}, nil, false
		}
		lastErr = err
	}
	app.logs.warn(p.log, "no-worker", "no worker could take the request", "app", app.key, "request_id", rid, "error", lastErr)
	writeError(w, http.StatusBadGateway, 0)
	return lease{}, nil, false
}

// notReadBy logs a request a worker closed unread, once a second with a
// count: a killed worker leaves up to its threads of them at once.
func (p *Proxy) notReadBy(app *appPool, l lease, rid string, err error) {
	app.logs.warn(p.log, "not-read", "worker closed the connection without reading the request; sent to another worker", "app", app.key, "worker", l.w.id, "pid", l.w.pid, "request_id", rid, "error", err)
}

// try is one delivery attempt on the thread l holds: over its pooled
// connection, or a new one. Whatever the outcome but delivered, l has
// been given back.
func (p *Proxy) try(ctx context.Context, app *appPool, l lease, d *delivery) (*wsgiadapter.Conn, outcome, error) {
	conn := l.conn
	if conn == nil {
		var err error
		conn, err = wsgiadapter.Dial(ctx, l.w.socket)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			app.dropConn(l, nil)
			return nil, clientLeft, err
		case refused(err):
			if app.workerGone(l) {
				return nil, workerDown, err
			}
			return nil, staleConn, err // taken out by another request already
		default:
			app.dropConn(l, nil)
			return nil, dialFailed, err
		}
	}
	var err error
	if d.body == nil {
		err = conn.SendBytes(d.env, d.small)
	} else {
		err = conn.Send(d.env, d.body, d.size)
	}
	switch {
	case err == nil:
		return conn, delivered, nil
	case errors.Is(err, wsgiadapter.ErrNotDelivered) && conn.Reusable():
		// Nothing was written and the connection is still clean: the
		// request itself cannot be encoded (a NUL in the environ). Any
		// other connection would refuse it too, so trying them all would
		// only close a healthy pool one connection at a time.
		app.unused(l, conn)
		return nil, badRequest, err
	case errors.Is(err, wsgiadapter.ErrNotDelivered):
		app.dropConn(l, conn)
		if l.conn == nil {
			return nil, dialFailed, err // a fresh connection, closed at once
		}
		return nil, staleConn, err
	case errors.Is(err, wsgiadapter.ErrNotRead):
		app.notRead(l, conn)
		return nil, notRead, err
	default:
		app.dropConn(l, conn)
		return nil, sendFailed, err
	}
}

// refused reports a dial error that means nobody listens on the worker's
// socket any more: its process exited (the kernel closed the socket) or
// was reaped (the master removed the file). A busy worker does not refuse:
// a connection it cannot accept yet waits in its backlog.
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}
