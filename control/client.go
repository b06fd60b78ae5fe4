package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// maxErrorBody bounds how much of an error response is read.
	maxErrorBody = 1 << 20
	// maxStreamLine bounds one line of a reload stream; a final error
	// line carries a whole traceback.
	maxStreamLine = 4 << 20
)

// Client talks to a daemon's control socket. Its methods may be called
// concurrently. The zero value is not usable; call NewClient.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client for the control socket at socketPath. It
// does not connect until a method is called.
func NewClient(socketPath string) *Client {
	c := &Client{path: socketPath}
	c.hc = &http.Client{Transport: &http.Transport{
		DialContext:        func(ctx context.Context, _, _ string) (net.Conn, error) { return c.dial(ctx) },
		DisableCompression: true,
		MaxIdleConns:       1,
		IdleConnTimeout:    30 * time.Second,
	}}
	return c
}

// Status returns the apps named by app that the caller may see, all of
// them when app is "". Errors from the daemon match ErrNoSuchApp or
// ErrAccessDenied with errors.Is; an error matching ErrNoDaemon means
// nothing listens at the socket.
func (c *Client) Status(ctx context.Context, app string) ([]AppStatus, error) {
	resp, err := c.do(ctx, http.MethodGet, pathStatus, app)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, responseError(resp)
	}
	var sr statusResponse
	if err := json.NewDecoder(resp.Body).Decode(&sr); err != nil {
		return nil, fmt.Errorf("read status from daemon: %w", err)
	}
	return sr.Apps, nil
}

// Reload asks the daemon to reload app and blocks until it is done,
// calling progress (when not nil) with each progress line as it arrives,
// in order, from the calling goroutine. A refused or aborted reload is a
// *ReloadError; other errors are as for Status. Cancelling ctx drops the
// connection; what the daemon then does with the reload is its business.
func (c *Client) Reload(ctx context.Context, app string, progress func(msg string)) error {
	return c.stream(ctx, http.MethodPost, pathReload, url.Values{"app": {app}}, "reload "+app, progress)
}

// Act asks the daemon to restart, stop or start app and blocks until it
// is done, calling progress like Reload. Errors are as for Reload;
// ErrNothingToDo means the daemon succeeded and did nothing (pyctl start
// of a running app).
func (c *Client) Act(ctx context.Context, action Action, app string, progress func(msg string)) error {
	return c.stream(ctx, http.MethodPost, pathAct+string(action), url.Values{"app": {app}}, string(action)+" "+app, progress)
}

// Check asks the daemon to validate the app file at path (absolute) for
// the calling user, as it would load it.
func (c *Client) Check(ctx context.Context, path string) error {
	return c.stream(ctx, http.MethodPost, pathCheck, url.Values{"path": {path}}, "check "+path, nil)
}

// ReloadConfig asks the daemon (as root) to re-read its config and every
// app file, calling progress with each step.
func (c *Client) ReloadConfig(ctx context.Context, progress func(msg string)) error {
	return c.stream(ctx, http.MethodPost, pathConfig, nil, "reload-config", progress)
}

// ReopenLogs asks the daemon (as root, or as the user it runs as) to
// reopen its app logs and access log, and returns once it has.
func (c *Client) ReopenLogs(ctx context.Context) error {
	return c.stream(ctx, http.MethodPost, pathReopen, nil, "reopen-logs", nil)
}

// Logs calls out with the last n lines of app's log and, with follow,
// every later line until ctx ends (then it returns nil).
func (c *Client) Logs(ctx context.Context, app string, n int, follow bool, out func(line string)) error {
	q := url.Values{"app": {app}, "n": {strconv.Itoa(n)}}
	if follow {
		q.Set("follow", "1")
	}
	err := c.stream(ctx, http.MethodGet, pathLogs, q, "logs "+app, out)
	if follow && ctx.Err() != nil {
		return nil
	}
	return err
}

// stream runs a request answered with NDJSON progress lines and a final
// ok or error line.
func (c *Client) stream(ctx context.Context, method, path string, q url.Values, what string, progress func(string)) error {
	resp, err := c.doQuery(ctx, method, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return responseError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxStreamLine)
	for sc.Scan() {
		var l reloadLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("%s: bad line from daemon: %w", what, err)
		}
		switch {
		case l.Code != "":
			return l.errorBody().decode()
		case l.OK && l.NothingToDo:
			return ErrNothingToDo
		case l.OK:
			return nil
		case progress != nil:
			progress(l.Progress)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: the daemon closed the connection before it finished", what)
}

func (c *Client) do(ctx context.Context, method, path, app string) (*http.Response, error) {
	var q url.Values
	if app != "" {
		q = url.Values{"app": {app}}
	}
	return c.doQuery(ctx, method, path, q)
}

func (c *Client) doQuery(ctx context.Context, method, path string, q url.Values) (*http.Response, error) {
	u := "http://local-pyhost" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, fmt.Errorf("control request: %w", err)
	}
	req.Header.Set("User-Agent", "pyhost-control/1")
	resp, err := c.hc.Do(req)
	if err != nil {
		// Unwrap url.Error's `Get "http://local-pyhost/...":` prefix,
		// which would only confuse.
		var de *dialError
		if errors.As(err, &de) {
			return nil, de.err
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("control request %s: %w", path, ctxErr)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("control request %s: %w", path, err)
	}
	return resp, nil
}

// dialError marks an error of ours from the transport's dial, so do can
// find it again under net/http's wrapping.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	switch {
	case err == nil:
		return conn, nil
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return nil, &dialError{fmt.Errorf("%w at %s (is it running?)", ErrNoDaemon, c.path)}
	case errors.Is(err, fs.ErrPermission):
		return nil, &dialError{fmt.Errorf("connect to pyhost daemon at %s: %w", c.path, fs.ErrPermission)}
	case ctx.Err() != nil:
		return nil, err // do reports the context's error
	default:
		return nil, &dialError{fmt.Errorf("connect to pyhost daemon at %s: %w", c.path, err)}
	}
}

// responseError turns a non-200 answer into the error the daemon meant.
func responseError(resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return fmt.Errorf("daemon answered %s; reading its body: %w", resp.Status, err)
	}
	var eb errorBody
	if json.Unmarshal(body, &eb) == nil && eb.Code != "" {
		return eb.decode()
	}
	msg, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	return fmt.Errorf("unexpected answer from daemon: %s: %s", resp.Status, msg)
}
