package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Wire paths.
const (
	pathStatus = "/v1/status"
	pathReload = "/v1/reload"
	pathLogs   = "/v1/logs"
	pathConfig = "/v1/reload-config"
	pathCheck  = "/v1/check"
	pathReopen = "/v1/reopen-logs"
	// pathAct + action: /v1/restart, /v1/stop, /v1/start.
	pathAct = "/v1/"
)

const (
	// shutdownGrace bounds how long Serve waits, once its context is
	// cancelled, for requests in flight to write their last line.
	shutdownGrace = 5 * time.Second

	// streamWriteTimeout bounds each write of a reload stream, so a
	// client that stops reading cannot stall the reload behind it.
	streamWriteTimeout = 10 * time.Second

	contentJSON   = "application/json"
	contentNDJSON = "application/x-ndjson"
)

// statusResponse is the body of a successful GET /v1/status.
type statusResponse struct {
	Apps []AppStatus `json:"apps"`
}

// reloadLine is one line of a reload stream: progress, or the final ok,
// or the final error (the fields of errorBody).
type reloadLine struct {
	Progress string `json:"progress,omitempty"`
	OK       bool   `json:"ok,omitempty"`
	// NothingToDo, with OK: the request succeeded and changed nothing.
	NothingToDo bool   `json:"nothing_to_do,omitempty"`
	Error       string `json:"error,omitempty"`
	Code        string `json:"code,omitempty"`
	Detail      string `json:"detail,omitempty"`
	App         string `json:"app,omitempty"`
}

func (l reloadLine) errorBody() errorBody {
	return errorBody{Error: l.Error, Code: l.Code, Detail: l.Detail, App: l.App}
}

// Server answers control requests on behalf of a Backend. Create it with
// NewServer.
type Server struct {
	b   Backend
	log hclog.Logger
	h   http.Handler
}

// NewServer returns a server that asks b. A nil log discards the server's
// logs.
func NewServer(b Backend, log hclog.Logger) *Server {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &Server{b: b, log: log}
	mux := http.NewServeMux()
	mux.Handle(pathStatus, s.authenticated(s.serveStatus))
	mux.Handle(pathReload, s.authenticated(s.serveReload))
	mux.Handle(pathLogs, s.authenticated(s.serveLogs))
	mux.Handle(pathConfig, s.authenticated(s.serveReloadConfig))
	mux.Handle(pathCheck, s.authenticated(s.serveCheck))
	mux.Handle(pathReopen, s.authenticated(s.serveReopenLogs))
	mux.Handle(pathDaemon, s.authenticated(s.serveDaemon))
	mux.Handle(pathMetrics, s.authenticated(s.serveMetrics))
	for _, a := range []Action{ActionRestart, ActionStop, ActionStart} {
		mux.Handle(pathAct+string(a), s.authenticated(func(w http.ResponseWriter, r *http.Request, c Caller) {
			s.serveAct(w, r, c, a)
		}))
	}
	mux.Handle("/", s.authenticated(s.serveUnknown))
	s.h = mux
	return s
}

// Serve accepts connections on ln until ctx is cancelled, then shuts down
// gracefully and returns nil. It closes ln (a UNIX listener from Listen
// then removes its socket file). ln should yield *net.UnixConn: any
// connection whose peer credentials cannot be read is closed unanswered.
//
// Requests' contexts derive from ctx, so a Backend call in flight learns
// that the server is stopping; Serve gives them shutdownGrace to finish
// and then closes their connections without waiting for them further.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnContext:       s.connContext,
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("control server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		s.log.Warn("control server: requests still running at shutdown, closing them", "error", err)
		_ = hs.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("control server: %w", err)
	}
	return nil
}

type callerKey struct{}

// connContext runs once per accepted connection: it records who is on the
// other end, or refuses the connection by closing it.
func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	caller, err := peerCaller(c)
	if err != nil {
		s.log.Warn("refusing control connection", "remote", c.RemoteAddr().String(), "error", err)
		_ = c.Close()
		return ctx
	}
	return context.WithValue(ctx, callerKey{}, caller)
}

func callerFromContext(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// authenticated passes the request's Caller to h. It refuses requests
// without one; connContext already closed their connections, so this is
// defence in depth.
func (s *Server) authenticated(h func(http.ResponseWriter, *http.Request, Caller)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := callerFromContext(r.Context())
		if !ok {
			writeError(w, http.StatusForbidden, errorBody{Error: "caller credentials unknown: " + ErrAccessDenied.Error(), Code: codeAccessDenied})
			return
		}
		s.log.Debug("control request", "method", r.Method, "path", r.URL.Path, "app", r.URL.Query().Get("app"),
			"uid", c.UID, "gid", c.GID, "pid", c.PID)
		h(w, r, c)
	})
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request, c Caller) {
	if !allowMethod(w, r, http.MethodGet) {
		return
	}
	app := r.URL.Query().Get("app")
	apps, err := s.b.Status(r.Context(), c, app)
	if err != nil {
		status, body := encodeError(err, app)
		s.logFailure(r, c, app, body, err)
		writeError(w, status, body)
		return
	}
	writeJSON(w, http.StatusOK, statusResponse{Apps: withEmptySlices(apps)})
}

// serveStreamed answers a POST that runs one operation and streams its
// progress (reload, restart/stop/start, check, reload-config). param
// names the query value the operation needs ("" for none); run gets it
// and the progress sink.
func (s *Server) serveStreamed(w http.ResponseWriter, r *http.Request, c Caller, what, param string, run func(arg string, progress func(string)) error) {
	if !allowMethod(w, r, http.MethodPost) {
		return
	}
	arg := ""
	if param != "" {
		arg = r.URL.Query().Get(param)
		if arg == "" {
			noun := map[string]string{"app": "an app name", "path": "a file path"}[param]
			writeError(w, http.StatusBadRequest, errorBody{Error: what + " needs " + noun, Code: codeBadRequest})
			return
		}
	}
	app := ""
	if param == "app" {
		app = arg
	}
	st := &reloadStream{w: w, rc: http.NewResponseController(w)}
	err := run(arg, st.progress)
	if err != nil && !errors.Is(err, ErrNothingToDo) {
		_, body := encodeError(err, app)
		s.logFailure(r, c, app, body, err)
	}
	st.finish(err, app)
}

func (s *Server) serveReload(w http.ResponseWriter, r *http.Request, c Caller) {
	s.serveStreamed(w, r, c, "reload", "app", func(app string, progress func(string)) error {
		return s.b.Reload(r.Context(), c, app, progress)
	})
}

func (s *Server) serveAct(w http.ResponseWriter, r *http.Request, c Caller, a Action) {
	s.serveStreamed(w, r, c, string(a), "app", func(app string, progress func(string)) error {
		return s.b.Act(r.Context(), c, a, app, progress)
	})
}

func (s *Server) serveCheck(w http.ResponseWriter, r *http.Request, c Caller) {
	s.serveStreamed(w, r, c, "check", "path", func(path string, _ func(string)) error {
		return s.b.Check(r.Context(), c, path)
	})
}

func (s *Server) serveReloadConfig(w http.ResponseWriter, r *http.Request, c Caller) {
	s.serveStreamed(w, r, c, "reload-config", "", func(_ string, progress func(string)) error {
		return s.b.ReloadConfig(r.Context(), c, progress)
	})
}

func (s *Server) serveReopenLogs(w http.ResponseWriter, r *http.Request, c Caller) {
	s.serveStreamed(w, r, c, "reopen-logs", "", func(string, func(string)) error {
		return s.b.ReopenLogs(r.Context(), c)
	})
}

// serveLogs streams log lines as NDJSON: {"progress": line} per line
// (the reload stream's shape, so one reader serves both), then ok.
func (s *Server) serveLogs(w http.ResponseWriter, r *http.Request, c Caller) {
	if !allowMethod(w, r, http.MethodGet) {
		return
	}
	q := r.URL.Query()
	app := q.Get("app")
	if app == "" {
		writeError(w, http.StatusBadRequest, errorBody{Error: "logs needs an app name", Code: codeBadRequest})
		return
	}
	n, err := strconv.Atoi(q.Get("n"))
	if err != nil || n < 0 {
		writeError(w, http.StatusBadRequest, errorBody{Error: "n must be a number of lines", Code: codeBadRequest})
		return
	}
	logs, ok := s.accessLogs(q)
	if !ok {
		writeError(w, http.StatusNotFound, errorBody{Error: "this daemon keeps no per-app access logs", Code: codeBadRequest})
		return
	}
	st := &reloadStream{w: w, rc: http.NewResponseController(w)}
	err = logs(r.Context(), c, app, n, q.Get("follow") == "1", func(line string) error {
		st.progress(line)
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.werr
	})
	if err != nil {
		_, body := encodeError(err, app)
		s.logFailure(r, c, app, body, err)
	}
	st.finish(err, app)
}

func (s *Server) serveUnknown(w http.ResponseWriter, r *http.Request, _ Caller) {
	writeError(w, http.StatusNotFound, errorBody{
		Error: fmt.Sprintf("no control endpoint %s %s (is the daemon older than pyctl?)", r.Method, r.URL.Path),
		Code:  codeBadRequest,
	})
}

// logFailure logs a Backend error at a level that matches its meaning.
func (s *Server) logFailure(r *http.Request, c Caller, app string, body errorBody, err error) {
	args := []any{"path", r.URL.Path, "app", app, "uid", c.UID, "pid", c.PID, "error", err}
	switch body.Code {
	case codeInternal:
		s.log.Error("control request failed", args...)
	case codeAccessDenied, codeReloadFailed:
		s.log.Info("control request refused", args...)
	default:
		s.log.Debug("control request refused", args...)
	}
}

// reloadStream writes a reload's progress as NDJSON. The status line is
// sent with the first line, so a reload that fails before any progress
// (no such app, access denied) still gets its own HTTP status.
type reloadStream struct {
	rc *http.ResponseController
	w  http.ResponseWriter

	mu      sync.Mutex
	started bool  // status line sent
	done    bool  // Reload returned; drop late progress
	werr    error // first write error; the client is gone
}

func (st *reloadStream) progress(msg string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.done {
		return
	}
	st.writeLine(reloadLine{Progress: msg})
}

func (st *reloadStream) finish(err error, app string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.done = true
	if err == nil || errors.Is(err, ErrNothingToDo) {
		st.writeLine(reloadLine{OK: true, NothingToDo: err != nil})
		return
	}
	status, body := encodeError(err, app)
	if !st.started {
		writeError(st.w, status, body)
		return
	}
	st.writeLine(reloadLine{Error: body.Error, Code: body.Code, Detail: body.Detail, App: body.App})
}

// writeLine must be called with st.mu held.
func (st *reloadStream) writeLine(l reloadLine) {
	if st.werr != nil {
		return
	}
	if !st.started {
		st.started = true
		st.w.Header().Set("Content-Type", contentNDJSON)
		st.w.Header().Set("X-Content-Type-Options", "nosniff")
		st.w.WriteHeader(http.StatusOK)
	}
	_ = st.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if err := json.NewEncoder(st.w).Encode(l); err != nil {
		st.werr = err
		return
	}
	if err := st.rc.Flush(); err != nil {
		st.werr = err
	}
}

func allowMethod(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	w.Header().Set("Allow", method)
	writeError(w, http.StatusMethodNotAllowed, errorBody{
		Error: fmt.Sprintf("%s needs %s, not %s", r.URL.Path, method, r.Method),
		Code:  codeBadRequest,
	})
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", contentJSON)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, body errorBody) {
	writeJSON(w, status, body)
}

// withEmptySlices returns a copy of apps whose nil slices are empty, so
// the JSON has [] where scripts expect arrays, never null.
func withEmptySlices(apps []AppStatus) []AppStatus {
	out := make([]AppStatus, len(apps))
	for i, a := range apps {
		if a.Domains == nil {
			a.Domains = []string{}
		}
		if a.Workers == nil {
			a.Workers = []WorkerStatus{}
		}
		if a.LastLog == nil {
			a.LastLog = []string{}
		}
		out[i] = a
	}
	return out
}
