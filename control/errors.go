package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

var (
	// ErrAccessDenied means the caller may not see or act on what it
	// named. Backends wrap it; clients get an error that matches it with
	// errors.Is.
	ErrAccessDenied = errors.New("access denied")

	// ErrNoSuchApp means no app of that name is visible to the caller.
	// Backends wrap it; clients get an error that matches it with
	// errors.Is.
	ErrNoSuchApp = errors.New("no such app")

	// ErrNoDaemon is returned by the Client when nothing listens at the
	// socket path: no file there, or a stale socket left by a daemon that
	// is gone.
	ErrNoDaemon = errors.New("no pyhost daemon")

	// ErrNothingToDo is a Backend's answer to an action that found
	// nothing to do (pyctl start of an app that runs): it succeeded, and
	// the reply's last line says ok with nothing_to_do, so that pyctl
	// does not claim it did something. The Client returns it, matching
	// errors.Is; a daemon older than it says plain ok.
	ErrNothingToDo = errors.New("nothing to do")
)

// ReloadError is a reload that was refused or aborted: the new code failed
// to import, the app file is invalid, a policy limit was hit. The old
// workers keep serving. It crosses the socket intact, so a client gets a
// *ReloadError back with errors.As.
type ReloadError struct {
	App    string // the app's name
	Reason string // one line, e.g. "worker 3 failed to import the app"
	Detail string // optional, multi-line: a Python traceback, say
	// Op is what failed ("start", "check"); "" means reload. Not sent
	// over the wire: the client knows what it asked for.
	Op string
}

func (e *ReloadError) Error() string {
	op := e.Op
	if op == "" {
		op = "reload"
	}
	return fmt.Sprintf("%s %s failed: %s", op, e.App, e.Reason)
}

// Error codes of the wire's error body, and the HTTP status each is sent
// with when the status line has not been sent yet.
const (
	codeAccessDenied = "access_denied" // 403
	codeNoSuchApp    = "no_such_app"   // 404
	codeReloadFailed = "reload_failed" // 409
	codeBadRequest   = "bad_request"   // 400, also 404 for an unknown endpoint
	codeInternal     = "internal"      // 500
)

// errorBody is the JSON form of an error, both as a whole response body
// and as the last line of a reload stream.
//
// For reload_failed, Error holds ReloadError.Reason and App its App, so
// the client can rebuild the *ReloadError field by field.
type errorBody struct {
	Error  string `json:"error"`
	Code   string `json:"code"`
	Detail string `json:"detail,omitempty"`
	App    string `json:"app,omitempty"`
}

// encodeError maps an error from a Backend to its wire form and status.
// app is the app the request named, used when a ReloadError leaves App
// empty.
func encodeError(err error, app string) (int, errorBody) {
	var re *ReloadError
	switch {
	case errors.As(err, &re):
		if re.App != "" {
			app = re.App
		}
		return http.StatusConflict, errorBody{Error: re.Reason, Code: codeReloadFailed, Detail: re.Detail, App: app}
	case errors.Is(err, ErrAccessDenied):
		return http.StatusForbidden, errorBody{Error: err.Error(), Code: codeAccessDenied}
	case errors.Is(err, ErrNoSuchApp):
		return http.StatusNotFound, errorBody{Error: err.Error(), Code: codeNoSuchApp}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The client is gone or the daemon is stopping; whoever still
		// reads this wants to know that the operation did not finish.
		return http.StatusServiceUnavailable, errorBody{Error: err.Error(), Code: codeInternal}
	default:
		return http.StatusInternalServerError, errorBody{Error: err.Error(), Code: codeInternal}
	}
}

// remoteError is an error the daemon sent. It prints the daemon's message
// and matches the sentinel its code stands for.
type remoteError struct {
	msg  string
	kind error // ErrAccessDenied, ErrNoSuchApp or nil
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

// decode rebuilds the error a Backend returned from its wire form.
func (b errorBody) decode() error {
	switch b.Code {
	case codeReloadFailed:
		return &ReloadError{App: b.App, Reason: b.Error, Detail: b.Detail}
	case codeAccessDenied:
		return &remoteError{msg: b.Error, kind: ErrAccessDenied}
	case codeNoSuchApp:
		return &remoteError{msg: b.Error, kind: ErrNoSuchApp}
	case codeInternal:
		return &remoteError{msg: "daemon error: " + b.Error}
	default:
		// bad_request, and codes from a newer daemon.
		return &remoteError{msg: b.Error}
	}
}
