package proxy

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/pyhost/pyhost/wsgiadapter"
)

func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, rt route, env wsgiadapter.Environ, rid string) {
	app, maxBody, timeout := rt.app, rt.maxBody, rt.requestTimeout
	var watch *bodyWatch
	if maxBody > 0 {
		if r.ContentLength > maxBody {
			writeError(w, http.StatusRequestEntityTooLarge, 0)
			return
		}
		if r.ContentLength < 0 {
			// A chunked upload is cut off where it passes the limit.
			watch = &bodyWatch{r: http.MaxBytesReader(w, r.Body, maxBody)}
			r.Body = watch
		}
	}
	// A small body is read up front so a retry can send it again; a
	// streamed one is never retried after its first byte was read, and
	// only read after the REQUEST frame went out.
	var body io.Reader
	size := r.ContentLength
	var small []byte
	if size > 0 && size <= wsgiadapter.InlineBodyMax {
		small = make([]byte, size)
		if _, err := io.ReadFull(r.Body, small); err != nil {
			p.log.Debug("client body incomplete", "request_id", rid, "error", err)
			return
		}
	} else if size != 0 {
		body = r.Body
	}
	l, conn, ok := p.deliver(w, r, app, env, rid, small, body, size)
	if !ok {
		return
	}
	p.relay(w, r, app, l, conn, rid, timeout, watch)
}

// bodyWatch remembers whether a chunked upload was cut off at max_body,
// so the failure can be answered 413 instead of 502.
type bodyWatch struct {
	r      io.ReadCloser
	tooBig atomic.Bool
}

func (b *bodyWatch) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		b.tooBig.Store(true)
	}
	return n, err
}

func (b *bodyWatch) Close() error { return b.r.Close() }

// tooLarge reports whether the body passed max_body; nil means no watch.
func (b *bodyWatch) tooLarge() bool { return b != nil && b.tooBig.Load() }
