package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

// fakeBackend answers with canned values and records who asked.
type fakeBackend struct {
	apps      []AppStatus
	statusErr error

	progress  []string
	reloadErr error
	reopenErr error
	// reload, when set, replaces the canned reload behaviour.
	reload func(ctx context.Context, app string, progress func(string)) error

	mu      sync.Mutex
	callers []Caller
	names   []string
}

func (f *fakeBackend) record(c Caller, app string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.callers = append(f.callers, c)
	f.names = append(f.names, app)
}

func (f *fakeBackend) Status(_ context.Context, c Caller, app string) ([]AppStatus, error) {
	f.record(c, app)
	if f.statusErr != nil {
		return nil, f.statusErr
	}
	if app == "" {
		return f.apps, nil
	}
	for _, a := range f.apps {
		if a.Name == app {
			return []AppStatus{a}, nil
		}
	}
	return nil, fmt.Errorf("app %q: %w", app, ErrNoSuchApp)
}

func (f *fakeBackend) Act(ctx context.Context, c Caller, a Action, app string, progress func(string)) error {
	if app != "blog" {
		return fmt.Errorf("%w: %s", ErrNoSuchApp, app)
	}
	progress(string(a) + " step")
	return nil
}

func (f *fakeBackend) Logs(ctx context.Context, c Caller, app string, n int, follow bool, out func(string) error) error {
	if app != "blog" {
		return fmt.Errorf("%w: %s", ErrNoSuchApp, app)
	}
	for i := 0; i < n; i++ {
		if err := out(fmt.Sprintf("line %d", i)); err != nil {
			return err
		}
	}
	if follow {
		<-ctx.Done()
	}
	return nil
}

func (f *fakeBackend) ReloadConfig(ctx context.Context, c Caller, progress func(string)) error {
	progress("rescanned")
	return nil
}

func (f *fakeBackend) Check(ctx context.Context, c Caller, path string) error {
	return nil
}

func (f *fakeBackend) ReopenLogs(ctx context.Context, c Caller) error {
	f.record(c, "")
	return f.reopenErr
}

func (f *fakeBackend) Reload(ctx context.Context, c Caller, app string, progress func(string)) error {
	f.record(c, app)
	if f.reload != nil {
		return f.reload(ctx, app, progress)
	}
	for _, p := range f.progress {
		progress(p)
	}
	return f.reloadErr
}

func (f *fakeBackend) lastCaller(t *testing.T) (Caller, string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.callers) == 0 {
		t.Fatal("backend was never called")
	}
	return f.callers[len(f.callers)-1], f.names[len(f.names)-1]
}

// startServer serves b on a socket in a temporary directory until the
// test ends, and checks that Serve then returns nil.
func startServer(t *testing.T, b Backend) (sock string) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "control.sock")
	startServerAt(t, b, sock)
	return sock
}

func startServerAt(t *testing.T, b Backend, sock string) {
	t.Helper()
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewServer(b, hclog.NewNullLogger()).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(testTimeout):
			t.Error("Serve did not return after cancel")
		}
	})
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// rawDo sends a request over the socket without Client, for checks of
// the wire itself.
func rawDo(t *testing.T, sock, method, path string) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(testContext(t), method, "http://x"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

var (
	started = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	blog    = AppStatus{
		Name: "blog", User: "alice", State: AppRunning,
		Domains: []string{"blog.example.com", "www.blog.example.com"}, URLPrefix: "/",
		Processes: 2, Threads: 4,
		Workers: []WorkerStatus{
			{ID: 1, PID: 4121, State: WorkerReady, RSSBytes: 24536678, CPUSeconds: 1.5, Requests: 1024, Busy: 1, Threads: 4, StartedAt: started, AgeSeconds: 192},
			{ID: 2, PID: 4122, State: WorkerStarting, Threads: 4, StartedAt: started.Add(time.Minute), AgeSeconds: 132.25},
		},
		Restarts: 3, LastError: "worker 3 exited with status 1",
		LastLog: []string{"Traceback (most recent call last):", "ImportError: no module named flask"},
	}
	shop = AppStatus{
		Name: "shop", User: "bob", State: AppStopped,
		Domains: []string{}, URLPrefix: "/shop", Processes: 1, Threads: 1,
		Workers: []WorkerStatus{}, LastLog: []string{},
	}
)

func TestStatusRoundTrip(t *testing.T) {
	b := &fakeBackend{apps: []AppStatus{blog, shop}}
	c := NewClient(startServer(t, b))

	tests := []struct {
		app  string
		want []AppStatus
	}{
		{"", []AppStatus{blog, shop}},
		{"blog", []AppStatus{blog}},
		{"shop", []AppStatus{shop}},
	}
	for _, tt := range tests {
		t.Run("app="+tt.app, func(t *testing.T) {
			got, err := c.Status(testContext(t), tt.app)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Status(%q):\n got %+v\nwant %+v", tt.app, got, tt.want)
			}
			_, name := b.lastCaller(t)
			if name != tt.app {
				t.Errorf("backend got app %q, want %q", name, tt.app)
			}
		})
	}
}

func TestCallerCredentialsReachBackend(t *testing.T) {
	b := &fakeBackend{}
	c := NewClient(startServer(t, b))
	if _, err := c.Status(testContext(t), ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(testContext(t), "blog", nil); err != nil {
		t.Fatal(err)
	}
	want := Caller{UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), PID: int32(os.Getpid())}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, got := range b.callers {
		if got != want {
			t.Errorf("call %d: caller %+v, want %+v", i, got, want)
		}
	}
}

func TestStatusJSONHasArraysNotNull(t *testing.T) {
	b := &fakeBackend{apps: []AppStatus{{Name: "bare"}}}
	sock := startServer(t, b)
	code, body := rawDo(t, sock, http.MethodGet, "/v1/status")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	for _, want := range []string{`"domains":[]`, `"workers":[]`, `"last_log":[]`} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %s: %s", want, body)
		}
	}
}

func TestErrorsRoundTrip(t *testing.T) {
	traceback := "Traceback (most recent call last):\n  File \"wsgi.py\", line 1, in <module>\n    import flask\nModuleNotFoundError: No module named 'flask'\n"
	tests := []struct {
		name       string
		err        error
		wantStatus int // HTTP status when nothing was streamed yet
		check      func(t *testing.T, err error)
	}{
		{
			name:       "access denied",
			err:        fmt.Errorf("app %q belongs to %s: %w", "blog", "alice", ErrAccessDenied),
			wantStatus: http.StatusForbidden,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrAccessDenied) || errors.Is(err, ErrNoSuchApp) {
					t.Errorf("errors.Is(%v, ErrAccessDenied) is false", err)
				}
				if want := `app "blog" belongs to alice: access denied`; err.Error() != want {
					t.Errorf("message %q, want %q", err, want)
				}
			},
		},
		{
			name:       "no such app",
			err:        fmt.Errorf("app %q: %w", "nope", ErrNoSuchApp),
			wantStatus: http.StatusNotFound,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrNoSuchApp) || errors.Is(err, ErrAccessDenied) {
					t.Errorf("errors.Is(%v, ErrNoSuchApp) is false", err)
				}
			},
		},
		{
			name:       "reload failed",
			err:        fmt.Errorf("rolling reload: %w", &ReloadError{App: "blog", Reason: "worker 3 failed to import the app", Detail: traceback}),
			wantStatus: http.StatusConflict,
			check: func(t *testing.T, err error) {
				var re *ReloadError
				if !errors.As(err, &re) {
					t.Fatalf("errors.As(%v, *ReloadError) is false", err)
				}
				want := ReloadError{App: "blog", Reason: "worker 3 failed to import the app", Detail: traceback}
				if *re != want {
					t.Errorf("got %#v, want %#v", *re, want)
				}
			},
		},
		{
			name:       "reload failed without app",
			err:        &ReloadError{Reason: "bad file"},
			wantStatus: http.StatusConflict,
			check: func(t *testing.T, err error) {
				var re *ReloadError
				if !errors.As(err, &re) || re.App != "blog" {
					t.Errorf("got %v, want a *ReloadError for the app that was asked", err)
				}
			},
		},
		{
			name:       "internal",
			err:        errors.New("supervisor wedged"),
			wantStatus: http.StatusInternalServerError,
			check: func(t *testing.T, err error) {
				var re *ReloadError
				if errors.Is(err, ErrAccessDenied) || errors.Is(err, ErrNoSuchApp) || errors.As(err, &re) {
					t.Errorf("internal error %v matches a typed error", err)
				}
				if !strings.Contains(err.Error(), "supervisor wedged") {
					t.Errorf("message %q lacks the daemon's", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)

			// Before any output, the error has its own status.
			b := &fakeBackend{statusErr: tt.err, reloadErr: tt.err}
			sock := startServer(t, b)
			c := NewClient(sock)
			if code, body := rawDo(t, sock, http.MethodPost, "/v1/reload?app=blog"); code != tt.wantStatus {
				t.Errorf("reload answered %d, want %d: %s", code, tt.wantStatus, body)
			}
			t.Run("status", func(t *testing.T) {
				_, err := c.Status(ctx, "blog")
				if err == nil {
					t.Fatal("Status succeeded")
				}
				tt.check(t, err)
			})
			t.Run("reload before progress", func(t *testing.T) {
				err := c.Reload(ctx, "blog", nil)
				if err == nil {
					t.Fatal("Reload succeeded")
				}
				tt.check(t, err)
			})

			// After progress, it comes as the stream's last line.
			b2 := &fakeBackend{progress: []string{"starting 2 new workers"}, reloadErr: tt.err}
			c2 := NewClient(startServer(t, b2))
			t.Run("reload after progress", func(t *testing.T) {
				var got []string
				err := c2.Reload(ctx, "blog", func(m string) { got = append(got, m) })
				if err == nil {
					t.Fatal("Reload succeeded")
				}
				if len(got) != 1 {
					t.Errorf("progress %q, want one line", got)
				}
				tt.check(t, err)
			})
		})
	}
}

func TestReloadStreamsProgressInOrder(t *testing.T) {
	var want []string
	for i := range 200 {
		want = append(want, fmt.Sprintf("step %d", i))
	}
	b := &fakeBackend{progress: want}
	c := NewClient(startServer(t, b))
	var got []string
	if err := c.Reload(testContext(t), "blog", func(m string) { got = append(got, m) }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("progress out of order or incomplete: got %d lines, want %d", len(got), len(want))
	}
}

// TestReloadProgressIsNotBuffered proves each line is flushed when sent:
// the backend does not return until the client has seen its first line.
func TestReloadProgressIsNotBuffered(t *testing.T) {
	seen := make(chan struct{})
	b := &fakeBackend{reload: func(ctx context.Context, _ string, progress func(string)) error {
		progress("new workers starting")
		select {
		case <-seen:
		case <-ctx.Done():
			return ctx.Err()
		}
		progress("old workers drained")
		return nil
	}}
	c := NewClient(startServer(t, b))
	var got []string
	err := c.Reload(testContext(t), "blog", func(m string) {
		got = append(got, m)
		if len(got) == 1 {
			close(seen)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"new workers starting", "old workers drained"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestLateProgressIsDropped(t *testing.T) {
	var saved func(string)
	b := &fakeBackend{reload: func(_ context.Context, _ string, progress func(string)) error {
		saved = progress
		return nil
	}}
	c := NewClient(startServer(t, b))
	if err := c.Reload(testContext(t), "blog", nil); err != nil {
		t.Fatal(err)
	}
	saved("after the end") // must neither panic nor race
}

func TestBadRequests(t *testing.T) {
	sock := startServer(t, &fakeBackend{})
	tests := []struct {
		method, path string
		wantStatus   int
	}{
		{http.MethodGet, "/v1/reload?app=blog", http.StatusMethodNotAllowed},
		{http.MethodPost, "/v1/status", http.StatusMethodNotAllowed},
		{http.MethodPost, "/v1/reload", http.StatusBadRequest},
		{http.MethodGet, "/v1/reopen-logs", http.StatusMethodNotAllowed},
		{http.MethodGet, "/v9/teleport", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			code, body := rawDo(t, sock, tt.method, tt.path)
			if code != tt.wantStatus {
				t.Errorf("status %d, want %d", code, tt.wantStatus)
			}
			var eb errorBody
			if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Code != codeBadRequest || eb.Error == "" {
				t.Errorf("body %q is not a bad_request error", body)
			}
		})
	}

	err := NewClient(sock).Reload(testContext(t), "", nil)
	if err == nil || !strings.Contains(err.Error(), "app name") {
		t.Errorf("Reload(\"\") = %v, want an error asking for the app", err)
	}
}

func TestServeCancelsInFlightReload(t *testing.T) {
	inReload := make(chan struct{})
	b := &fakeBackend{reload: func(ctx context.Context, _ string, progress func(string)) error {
		progress("waiting")
		close(inReload)
		<-ctx.Done() // the server's shutdown must cancel this
		return fmt.Errorf("reload interrupted: %w", ctx.Err())
	}}
	sock := filepath.Join(t.TempDir(), "control.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- NewServer(b, nil).Serve(ctx, ln) }()

	reloaded := make(chan error, 1)
	go func() { reloaded <- NewClient(sock).Reload(testContext(t), "blog", nil) }()
	select {
	case <-inReload:
	case <-time.After(testTimeout):
		t.Fatal("reload never reached the backend")
	}
	cancel()

	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v, want nil", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Serve did not return after cancel")
	}
	select {
	case err := <-reloaded:
		if err == nil || !strings.Contains(err.Error(), "interrupted") {
			t.Errorf("Reload = %v, want the backend's interruption", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("client Reload did not return")
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file still there after Serve returned: %v", err)
	}
}

func TestConnectionWithoutPeerCredentialsIsRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback TCP: %v", err)
	}
	b := &fakeBackend{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewServer(b, nil).Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	req, err := http.NewRequestWithContext(testContext(t), http.MethodGet, "http://"+ln.Addr().String()+"/v1/status", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("request over TCP answered %s, want the connection closed", resp.Status)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.callers) != 0 {
		t.Errorf("backend was called by %+v", b.callers)
	}
}

func TestClientWithoutDaemon(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	leaveStaleSocket(t, stale)

	for _, path := range []string{filepath.Join(dir, "missing.sock"), stale} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			_, err := NewClient(path).Status(testContext(t), "")
			if !errors.Is(err, ErrNoDaemon) {
				t.Fatalf("Status = %v, want ErrNoDaemon", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the socket", err)
			}
		})
	}
}

func TestClientPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root connects regardless of file modes")
	}
	dir := filepath.Join(t.TempDir(), "locked")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "control.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Chmod(dir, 0o000); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	_, err = NewClient(sock).Status(testContext(t), "")
	if !errors.Is(err, os.ErrPermission) {
		t.Errorf("Status = %v, want permission denied", err)
	}
}

func TestActAndLogs(t *testing.T) {
	cl := NewClient(startServer(t, &fakeBackend{}))
	ctx := context.Background()
	var got []string
	if err := cl.Act(ctx, ActionStop, "blog", func(s string) { got = append(got, s) }); err != nil || len(got) != 1 || got[0] != "stop step" {
		t.Fatalf("stop: %v %q", err, got)
	}
	if err := cl.Act(ctx, ActionStart, "nope", nil); !errors.Is(err, ErrNoSuchApp) {
		t.Fatalf("start of an unknown app: %v", err)
	}
	got = nil
	if err := cl.Logs(ctx, "blog", 3, false, func(s string) { got = append(got, s) }); err != nil || len(got) != 3 || got[2] != "line 2" {
		t.Fatalf("logs: %v %q", err, got)
	}
	fctx, cancel := context.WithCancel(ctx)
	lines := make(chan string, 10)
	done := make(chan error, 1)
	go func() { done <- cl.Logs(fctx, "blog", 1, true, func(s string) { lines <- s }) }()
	if s := <-lines; s != "line 0" {
		t.Fatalf("follow first line %q", s)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("follow ended with %v, want nil after cancel", err)
	}
}

func TestReopenLogs(t *testing.T) {
	b := &fakeBackend{}
	cl := NewClient(startServer(t, b))
	if err := cl.ReopenLogs(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if c, _ := b.lastCaller(t); c.UID != uint32(os.Getuid()) {
		t.Errorf("backend saw uid %d, want %d", c.UID, os.Getuid())
	}
	b.reopenErr = fmt.Errorf("%w: only root may reopen the daemon's logs", ErrAccessDenied)
	if err := cl.ReopenLogs(testContext(t)); !errors.Is(err, ErrAccessDenied) {
		t.Errorf("refused reopen-logs: %v, want access denied", err)
	}
	b.reopenErr = errors.New("the proxy did not confirm")
	if err := cl.ReopenLogs(testContext(t)); err == nil || !strings.Contains(err.Error(), "the proxy did not confirm") {
		t.Errorf("failed reopen-logs: %v", err)
	}
}
