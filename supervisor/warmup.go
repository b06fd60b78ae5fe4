package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/wsgiadapter"
)

// Warm-up (D3, app key warmup): a new worker counts as ready only once
// each warm-up path answered below 500 through that worker itself, so a
// framework that imports its views on the first request (Django) fails
// its start, and a reload, before it takes traffic, not after the old
// workers are gone. The App asks a Warmer between the worker's "ready"
// and evReady; the core turns a failure into the worker's death, as an
// import error is, and startup_timeout bounds the whole start.

// Warmer requests warm-up paths through one worker.
type Warmer interface {
	// Warm requests each of req.Paths, one after another, from the
	// worker listening on socket, and returns at the first failure (a
	// *WarmupError). ctx is cancelled when the worker exits.
	Warm(ctx context.Context, socket string, req WarmupRequest) error
}

// WarmupRequest is what a worker of an app is warmed up with.
type WarmupRequest struct {
	Paths  []string // URL paths as a client asks for them, with any query
	Host   string   // the Host header: the app's first domain
	Prefix string   // the app's url_prefix: SCRIPT_NAME for paths under it
}

// warmupRequest is how a worker of cfg is warmed up; paths are the app's
// warmup key. The Host is the app's first domain (a wildcard's parent:
// "*.example.com" asks as "example.com"), or "localhost" when it has
// none.
func warmupRequest(cfg config.App, paths []string) WarmupRequest {
	host := "localhost"
	if len(cfg.Domains) > 0 {
		host = strings.TrimPrefix(cfg.Domains[0], "*.")
	}
	return WarmupRequest{Paths: paths, Host: host, Prefix: cfg.URLPrefix}
}

// WarmupError is a failed warm-up: the path, and the status it answered
// with or why it got none. Traceback is the tail of the worker's output
// (the app's traceback) when the core reports it.
type WarmupError struct {
	Path      string
	Status    int   // the answer's status; 0 when there was none
	Err       error // why there was no answer (or it was cut short)
	Traceback string
}

func (e *WarmupError) Error() string {
	switch {
	case e.Status != 0 && e.Err != nil:
		return fmt.Sprintf("warm-up GET %s answered %d, then failed: %v", e.Path, e.Status, e.Err)
	case e.Status != 0:
		return fmt.Sprintf("warm-up GET %s answered %d", e.Path, e.Status)
	default:
		return fmt.Sprintf("warm-up GET %s failed: %v", e.Path, e.Err)
	}
}

func (e *WarmupError) Unwrap() error { return e.Err }

// protocolWarmer speaks the worker protocol (docs/protocol.md) over one
// connection, as the proxy would.
type protocolWarmer struct{}

func (protocolWarmer) Warm(ctx context.Context, socket string, req WarmupRequest) error {
	var conn *wsgiadapter.Conn
	stop := func() bool { return false }
	defer func() {
		stop()
		if conn != nil {
			conn.Close()
		}
	}()
	for i, path := range req.Paths {
		if conn == nil {
			c, err := wsgiadapter.Dial(ctx, socket)
			if err != nil {
				return &WarmupError{Path: path, Err: err}
			}
			conn = c
			// The worker's exit cancels a request in flight.
			stop = context.AfterFunc(ctx, func() { c.Close() })
		}
		status, err := warmOne(conn, req, path, i)
		switch {
		case ctx.Err() != nil:
			return &WarmupError{Path: path, Status: status, Err: ctx.Err()}
		case err != nil || status >= 500:
			return &WarmupError{Path: path, Status: status, Err: err}
		}
		if !conn.Reusable() {
			stop()
			conn.Close()
			conn = nil
		}
	}
	return nil
}

func first(paths []string) string {
	if len(paths) == 0 {
		return ""
	}
	return paths[0]
}

// warmOne sends GET path and reads the whole answer; status is 0 when
// none came.
func warmOne(conn *wsgiadapter.Conn, req WarmupRequest, path string, n int) (status int, err error) {
	if err := conn.SendBytes(warmupEnviron(req, path, n), nil); err != nil {
		return 0, err
	}
	head, err := conn.ReadHead()
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(io.Discard, conn); err != nil {
		if errors.Is(err, wsgiadapter.ErrAppFailed) {
			err = errors.New("the app failed mid-response")
		}
		return head.Status, err
	}
	return head.Status, nil
}

// warmupEnviron is a plain GET of path from a local client, as the proxy
// would build it (proxy/environ.go) for http://HOST/path.
func warmupEnviron(req WarmupRequest, path string, n int) wsgiadapter.Environ {
	query := ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query = path[:i], path[i+1:]
	}
	uri := path
	if query != "" {
		uri += "?" + query
	}
	script := ""
	if p := strings.TrimSuffix(req.Prefix, "/"); p != "" && (path == p || strings.HasPrefix(path, p+"/")) {
		script, path = p, path[len(p):]
	}
	return wsgiadapter.Environ{
		"REQUEST_METHOD", "GET",
		"SCRIPT_NAME", script,
		"PATH_INFO", path,
		"QUERY_STRING", query,
		"REQUEST_URI", uri,
		"SERVER_NAME", req.Host,
		"SERVER_PORT", "80",
		"SERVER_PROTOCOL", "HTTP/1.1",
		"REMOTE_ADDR", "127.0.0.1",
		"REMOTE_PORT", "0",
		"wsgi.url_scheme", "http",
		"HTTP_HOST", req.Host,
		"HTTP_USER_AGENT", "pyhost-warmup",
		"HTTP_X_REQUEST_ID", fmt.Sprintf("warmup-%d", n+1),
	}
}

// tail is the last lines the worker pid wrote (its traceback, when a
// warm-up request raised), taken once it was reaped.
func (a *App) tail(pid int) string { return a.tails.take(pid) }

// warm runs the warm-up of a worker of cfg that reported ready: nil when
// the app has none, or it passed.
func (a *App) warm(p Proc, cfg config.App) *WarmupError {
	if a.opts.WarmupPaths == nil {
		return nil
	}
	paths := a.opts.WarmupPaths(cfg)
	if len(paths) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-p.Exited():
			cancel()
		case <-ctx.Done():
		}
	}()
	err := a.warmer.Warm(ctx, p.Socket(), warmupRequest(cfg, paths))
	if err == nil {
		return nil
	}
	var we *WarmupError
	if !errors.As(err, &we) {
		we = &WarmupError{Path: first(paths), Err: err}
	}
	return we
}
