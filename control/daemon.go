package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The daemon's own facts (version, uptime, config, last reload) and the
// per-app access logs travel as requests of their own, answered only by
// a Backend that implements the optional interfaces below: the app list
// of GET /v1/status, which `pyctl status --json` prints as it is, keeps
// its shape, and an older daemon answers "no control endpoint", which
// pyctl shows as "unknown" instead of failing.
const (
	pathDaemon = "/v1/daemon"
)

// ErrUnsupported means the daemon does not know the request: it is older
// than pyctl, or keeps no such thing (per-app access logs turned off).
var ErrUnsupported = errors.New("not supported by this daemon")

// DaemonInfo describes the running daemon. The JSON field names are part
// of the contract of `pyctl version --json`: add fields, never rename.
type DaemonInfo struct {
	Version   string    `json:"version"`    // pyhostd's build version ("dev" untagged)
	GoVersion string    `json:"go_version"` // the Go release it was built with
	Mode      string    `json:"mode"`       // "system" (pyhostd run) or "serve"
	PID       int       `json:"pid"`        // the master's pid
	StartedAt time.Time `json:"started_at"`
	// UptimeSeconds is at the time of the call.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// ConfigFile is the admin config the daemon reads (system mode), the
	// app file or directory it serves (serve); "" when none.
	ConfigFile string `json:"config_file"`
	// LastReload is the last config reload (SIGHUP or pyctl
	// reload-config); nil when there was none since the start.
	LastReload *ReloadInfo `json:"last_reload,omitempty"`
}

// ReloadInfo is the outcome of one config reload.
type ReloadInfo struct {
	At time.Time `json:"at"`
	OK bool      `json:"ok"`
	// Error is why it failed, to root only (it may name other users'
	// files); others see OK false and an empty Error.
	Error string `json:"error,omitempty"`
}

// DaemonBackend is implemented by a Backend that can describe the daemon
// (GET /v1/daemon). Every caller may ask: version and uptime are no
// secret; the implementation leaves out what the caller may not know.
type DaemonBackend interface {
	Daemon(ctx context.Context, c Caller) (DaemonInfo, error)
}

// AccessLogBackend is implemented by a Backend that keeps per-app access
// logs: GET /v1/logs with access=1 asks it instead of Backend.Logs,
// with the same authorization and the same stream.
type AccessLogBackend interface {
	AccessLogs(ctx context.Context, c Caller, app string, n int, follow bool, out func(line string) error) error
}

func (s *Server) serveDaemon(w http.ResponseWriter, r *http.Request, c Caller) {
	if !allowMethod(w, r, http.MethodGet) {
		return
	}
	db, ok := s.b.(DaemonBackend)
	if !ok {
		s.serveUnknown(w, r, c)
		return
	}
	info, err := db.Daemon(r.Context(), c)
	if err != nil {
		status, body := encodeError(err, "")
		s.logFailure(r, c, "", body, err)
		writeError(w, status, body)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// accessLogs picks the backend call of GET /v1/logs: the app log, or the
// access log when access=1 and the backend keeps them.
func (s *Server) accessLogs(q url.Values) (func(ctx context.Context, c Caller, app string, n int, follow bool, out func(string) error) error, bool) {
	if q.Get("access") != "1" {
		return s.b.Logs, true
	}
	ab, ok := s.b.(AccessLogBackend)
	if !ok {
		return nil, false
	}
	return ab.AccessLogs, true
}

// Daemon asks the daemon about itself. A daemon too old to answer gives
// an error matching ErrUnsupported.
func (c *Client) Daemon(ctx context.Context) (DaemonInfo, error) {
	resp, err := c.do(ctx, http.MethodGet, pathDaemon, "")
	if err != nil {
		return DaemonInfo{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return DaemonInfo{}, fmt.Errorf("%w: %w", ErrUnsupported, responseError(resp))
	}
	if resp.StatusCode != http.StatusOK {
		return DaemonInfo{}, responseError(resp)
	}
	var info DaemonInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return DaemonInfo{}, fmt.Errorf("read daemon info: %w", err)
	}
	return info, nil
}

// AccessLogs is Logs for app's access log (log_dir/USER/APP.access.log),
// kept when the admin turned per-app access logs on.
func (c *Client) AccessLogs(ctx context.Context, app string, n int, follow bool, out func(line string)) error {
	q := url.Values{"app": {app}, "n": {strconv.Itoa(n)}, "access": {"1"}}
	if follow {
		q.Set("follow", "1")
	}
	err := c.stream(ctx, http.MethodGet, pathLogs, q, "access logs "+app, out)
	if follow && ctx.Err() != nil {
		return nil
	}
	return err
}
