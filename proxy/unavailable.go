package proxy

import (
	"errors"
	"net/http"
)

func (p *Proxy) unavailable(w http.ResponseWriter, r *http.Request, app *appPool, rid string, err error) {
	switch {
	case r.Context().Err() != nil:
		return
	case errors.Is(err, errFailing):
		writeError(w, http.StatusServiceUnavailable, 30)
	case errors.Is(err, errQueueTimeout):
		p.log.Warn("request waited too long for a free thread", "app", app.key, "request_id", rid)
		writeError(w, http.StatusServiceUnavailable, 5)
	case errors.Is(err, errQueueFull):
		p.log.Warn("queue full; request refused", "app", app.key, "request_id", rid)
		writeError(w, http.StatusServiceUnavailable, 5)
	default:
		writeError(w, http.StatusServiceUnavailable, 5)
	}
}
