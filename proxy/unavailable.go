package proxy

import (
	"errors"
	"net/http"
)

// unavailable answers a request that got no worker thread (R10, S8): 503
// with Retry-After. The per-request warnings go through the app's
// rateLog: under a flood they would otherwise be a line per request.
func (p *Proxy) unavailable(w http.ResponseWriter, r *http.Request, app *appPool, rid string, err error) {
	switch {
	case r.Context().Err() != nil:
		return
	case errors.Is(err, errFailing):
		writeError(w, http.StatusServiceUnavailable, 30)
	case errors.Is(err, errQueueTimeout):
		app.logs.warn(p.log, "queue-timeout", "request waited too long for a free thread", "app", app.key, "request_id", rid)
		writeError(w, http.StatusServiceUnavailable, 5)
	case errors.Is(err, errQueueFull):
		app.logs.warn(p.log, "queue-full", "queue full; request refused", "app", app.key, "request_id", rid)
		writeError(w, http.StatusServiceUnavailable, 5)
	default:
		writeError(w, http.StatusServiceUnavailable, 5)
	}
}
