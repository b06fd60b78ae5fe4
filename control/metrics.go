package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// `pyctl metrics` travels as a request of its own, answered only by a
// Backend that implements MetricsBackend (an older daemon answers "no
// control endpoint", which the client reports as ErrUnsupported).
const pathMetrics = "/v1/metrics"

// contentPrometheus is the Prometheus text exposition format.
const contentPrometheus = "text/plain; version=0.0.4; charset=utf-8"

// maxMetricsText bounds what the client reads of an answer.
const maxMetricsText = 256 << 20

// MetricsBackend is implemented by a Backend that serves metrics (GET
// /v1/metrics, ?app=NAME optional).
type MetricsBackend interface {
	// Metrics returns the Prometheus text of the series of the apps c
	// may see (app, when not "", names one), as the metrics endpoint
	// shows them; root without app gets all of it. It authorizes as
	// Status does.
	Metrics(ctx context.Context, c Caller, app string) (string, error)
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request, c Caller) {
	if !allowMethod(w, r, http.MethodGet) {
		return
	}
	mb, ok := s.b.(MetricsBackend)
	if !ok {
		s.serveUnknown(w, r, c)
		return
	}
	app := r.URL.Query().Get("app")
	text, err := mb.Metrics(r.Context(), c, app)
	if err != nil {
		status, body := encodeError(err, app)
		s.logFailure(r, c, app, body, err)
		writeError(w, status, body)
		return
	}
	w.Header().Set("Content-Type", contentPrometheus)
	io.WriteString(w, text)
}

// Metrics returns the Prometheus text of the apps the caller may see
// (app names one; "" for all of them). Errors are as for Status;
// ErrUnsupported for a daemon that serves no metrics over the socket.
func (c *Client) Metrics(ctx context.Context, app string) (string, error) {
	resp, err := c.do(ctx, http.MethodGet, pathMetrics, app)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := responseError(resp)
		if resp.StatusCode == http.StatusNotFound && !errors.Is(err, ErrNoSuchApp) {
			return "", fmt.Errorf("%w: %w", ErrUnsupported, err)
		}
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxMetricsText))
	if err != nil {
		return "", fmt.Errorf("read metrics from daemon: %w", err)
	}
	return string(b), nil
}
