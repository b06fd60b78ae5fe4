package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/pyhost/pyhost/proxymsg"
	"github.com/pyhost/pyhost/wsgiadapter"
)

// fakeWorker speaks the worker's side of the wire protocol on a UNIX
// socket: the handshake, then "200 ok" to every request. closeAfter
// closes each connection after its first response, as a worker that
// closed a pooled connection.
type fakeWorker struct {
	path       string
	ln         *net.UnixListener
	closeAfter bool
	conns      atomic.Int32 // connections accepted
	requests   atomic.Int32 // requests answered
	closed     atomic.Int32 // connections closed by the worker
}

func newFakeWorker(t *testing.T, closeAfter bool) *fakeWorker {
	t.Helper()
	path := filepath.Join(t.TempDir(), "w.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeWorker{path: path, ln: ln, closeAfter: closeAfter}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.conns.Add(1)
			go f.serve(c)
		}
	}()
	return f
}

func (f *fakeWorker) serve(c net.Conn) {
	defer f.closed.Add(1)
	defer c.Close()
	r := bufio.NewReader(c)
	if typ, _, err := wsgiadapter.ReadFrame(r, nil); err != nil || typ != wsgiadapter.FrameHello {
		return
	}
	c.Write(wsgiadapter.AppendFrame(nil, wsgiadapter.FrameHello, []byte("version=1 pid=42 threads=4")))
	for {
		typ, _, err := wsgiadapter.ReadFrame(r, nil)
		if err != nil || typ != wsgiadapter.FrameRequest {
			return
		}
		f.requests.Add(1)
		out := wsgiadapter.AppendFrame(nil, wsgiadapter.FrameHeaders, wsgiadapter.AppendHead(nil, "200 OK", []wsgiadapter.Header{{Name: "Content-Length", Value: "2"}}))
		out = wsgiadapter.AppendFrame(out, wsgiadapter.FrameBody, []byte("ok"))
		out = wsgiadapter.AppendFrame(out, wsgiadapter.FrameEnd, []byte{0})
		c.Write(out)
		if f.closeAfter {
			return
		}
	}
}

// deadSocket is the path of a UNIX socket nobody listens on any more, as
// a killed worker leaves it until the master removes it: a dial gets
// ECONNREFUSED (and ENOENT once the file is gone).
func deadSocket(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dead.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	return path
}

// roundTrip delivers one request through p to app and reads the answer
// as the relay would, giving the connection back to the pool; it returns
// the status the client got.
func roundTrip(t *testing.T, p *Proxy, app *appPool, env wsgiadapter.Environ) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
	l, conn, ok := p.deliver(rec, r, app, env, "rid", nil, nil, 0)
	if !ok {
		return rec.Code
	}
	head, err := conn.ReadHead()
	if err != nil {
		app.release(l, conn)
		t.Fatalf("read head: %v", err)
	}
	for {
		if _, err := conn.Next(); err != nil {
			break
		}
	}
	app.release(l, conn)
	return head.Status
}

func testProxyPool(workers ...proxymsg.Worker) (*Proxy, *appPool) {
	p := New(hclog.NewNullLogger(), nil)
	app := &appPool{key: "u/app"}
	app.update(proxymsg.App{Key: "u/app", State: proxymsg.AppRunning, QueueTimeout: time.Minute, StartupTimeout: time.Minute, Workers: workers})
	return p, app
}

var okEnv = wsgiadapter.Environ{"REQUEST_METHOD", "GET", "PATH_INFO", "/"}

func TestDeliverSkipsADeadWorker(t *testing.T) {
	live := newFakeWorker(t, false)
	p, app := testProxyPool(
		proxymsg.Worker{ID: "dead", Socket: deadSocket(t), Threads: 4},
		proxymsg.Worker{ID: "gone", Socket: filepath.Join(t.TempDir(), "removed.sock"), Threads: 4},
		proxymsg.Worker{ID: "live", Socket: live.path, Threads: 4},
	)
	for i := 0; i < 20; i++ {
		if code := roundTrip(t, p, app, okEnv); code != http.StatusOK {
			t.Fatalf("request %d: %d, want 200 from the live worker", i, code)
		}
	}
	if n := live.requests.Load(); n != 20 {
		t.Fatalf("live worker answered %d of 20", n)
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	for _, w := range app.workers[:2] {
		if !w.down || w.inflight != 0 {
			t.Errorf("worker %s: down %v, inflight %d; want down, 0", w.id, w.down, w.inflight)
		}
	}
}

func TestDeliverQueuesWhileEveryWorkerIsDead(t *testing.T) {
	p, app := testProxyPool(proxymsg.Worker{ID: "dead", Socket: deadSocket(t), Threads: 4})
	code := make(chan int, 1)
	go func() { code <- roundTrip(t, p, app, okEnv) }()
	// The request found the only worker dead and waits for the master's
	// replacement instead of getting 502.
	waitFor(t, func() bool { app.mu.Lock(); defer app.mu.Unlock(); return len(app.waiters) == 1 })
	live := newFakeWorker(t, false)
	app.update(proxymsg.App{Key: "u/app", State: proxymsg.AppRunning, QueueTimeout: time.Minute,
		Workers: []proxymsg.Worker{{ID: "new", Socket: live.path, Threads: 4}}})
	if c := <-code; c != http.StatusOK {
		t.Fatalf("queued request: %d, want 200", c)
	}
}

func TestDeliverStalePooledConnectionCostsNothing(t *testing.T) {
	closing := newFakeWorker(t, true)
	p, app := testProxyPool(proxymsg.Worker{ID: "w", Socket: closing.path, Threads: 4})
	// Every connection is closed by the worker after one response, so
	// each later request finds its pooled connection stale first.
	for i := 0; i < 5; i++ {
		if code := roundTrip(t, p, app, okEnv); code != http.StatusOK {
			t.Fatalf("request %d: %d, want 200", i, code)
		}
		// The next request must find the pooled connection closed, not
		// race the worker to it.
		waitFor(t, func() bool { return closing.closed.Load() == int32(i+1) })
	}
	app.mu.Lock()
	down := app.workers[0].down
	app.mu.Unlock()
	if down {
		t.Fatal("a worker that closed a connection was taken for dead")
	}
}

// Issue 17 item 1: a request no worker can take (a NUL in the environ)
// once made the loop close every pooled connection of a healthy worker,
// one per try, then dial fresh ones to fail again.
func TestDeliverUnencodableRequestKeepsThePool(t *testing.T) {
	live := newFakeWorker(t, false)
	p, app := testProxyPool(proxymsg.Worker{ID: "w", Socket: live.path, Threads: 4})
	if code := roundTrip(t, p, app, okEnv); code != http.StatusOK {
		t.Fatalf("first request: %d", code)
	}
	bad := wsgiadapter.Environ{"REQUEST_METHOD", "GET", "PATH_INFO", "/a\x00b"}
	if code := roundTrip(t, p, app, bad); code != http.StatusBadRequest {
		t.Fatalf("request with a NUL: %d, want 400", code)
	}
	app.mu.Lock()
	idle, down := len(app.workers[0].idle), app.workers[0].down
	app.mu.Unlock()
	if idle != 1 || down {
		t.Fatalf("after the refused request: %d idle connections, down %v; want 1, false", idle, down)
	}
	if code := roundTrip(t, p, app, okEnv); code != http.StatusOK {
		t.Fatalf("request after: %d", code)
	}
	if n := live.conns.Load(); n != 1 {
		t.Fatalf("the worker saw %d connections, want the 1 pooled one throughout", n)
	}
}

// dyingWorker is a worker killed with a request in its socket: it takes
// one connection, answers the handshake, waits until the request is
// there without reading a byte of it (or, with readFirst, reads the
// REQUEST frame: it dies in the app), and dies: its listener and the
// connection close, the request unread. A kill -9 looks the same to the
// proxy.
type dyingWorker struct {
	path      string
	readFirst bool
	died      chan struct{}
}

func newDyingWorker(t *testing.T, readFirst bool) *dyingWorker {
	t.Helper()
	d := &dyingWorker{path: filepath.Join(t.TempDir(), "dying.sock"), readFirst: readFirst, died: make(chan struct{})}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: d.path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false) // the master removes it later
	t.Cleanup(func() { ln.Close() })
	go func() {
		defer close(d.died)
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		if typ, _, err := wsgiadapter.ReadFrame(r, nil); err != nil || typ != wsgiadapter.FrameHello {
			return
		}
		c.Write(wsgiadapter.AppendFrame(nil, wsgiadapter.FrameHello, []byte("version=1 pid=43 threads=4")))
		if d.readFirst {
			wsgiadapter.ReadFrame(r, nil)
			return
		}
		// The proxy sends the request after the handshake's answer, so
		// r holds none of it: wait for it in the socket, unread.
		rc, err := c.(*net.UnixConn).SyscallConn()
		if err != nil {
			return
		}
		rc.Read(func(fd uintptr) bool {
			n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
			return err != nil || n > 0
		})
	}()
	return d
}

// resendProxy serves a Proxy whose one app has the dying worker first
// (ties go to it) and a live echo worker second.
func resendProxy(t *testing.T, dying *dyingWorker, live *echoWorker) (*Proxy, *appPool, string) {
	t.Helper()
	p := New(hclog.NewNullLogger(), nil)
	p.SetLimits(Limits{SpoolDir: t.TempDir()})
	p.Update(proxymsg.Table{Apps: []proxymsg.App{{Key: "u/app", Prefix: "/", State: proxymsg.AppRunning,
		QueueTimeout: time.Minute, StartupTimeout: time.Minute, QueueLimit: 100,
		Workers: []proxymsg.Worker{{ID: "dying", PID: 43, Socket: dying.path, Threads: 4}, {ID: "live", PID: 42, Socket: live.path, Threads: 4}}}}})
	srv := httptest.NewUnstartedServer(p)
	srv.Config = newServer(p, p.limits, hclog.NewNullLogger())
	srv.Start()
	t.Cleanup(func() { srv.Close(); p.CloseIdle() })
	return p, p.pools["u/app"], srv.URL
}

// Issue 11: a request its worker never read (the worker died with it in
// its socket) goes to another worker, whatever its method: the app never
// saw it. Once the worker read it, or when its body was streamed (the
// app may have read some), it is the worker's, and fails with it.
func TestDeliverResendsARequestADeadWorkerNeverRead(t *testing.T) {
	big := strings.Repeat("b", wsgiadapter.InlineBodyMax+1)
	tests := []struct {
		name      string
		method    string
		body      string
		readFirst bool
		want      int
	}{
		{"GET, unread", "GET", "", false, http.StatusOK},
		{"POST, unread", "POST", "hello", false, http.StatusOK},
		{"GET, read by the worker", "GET", "", true, http.StatusBadGateway},
		{"POST, streamed body, unread", "POST", big, false, http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dying, live := newDyingWorker(t, tt.readFirst), newEchoWorker(t)
			_, app, url := resendProxy(t, dying, live)
			req, _ := http.NewRequest(tt.method, url+"/x", strings.NewReader(tt.body))
			if tt.body == "" {
				req.Body = nil
			}
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			<-dying.died
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, b)
			}
			if tt.want != http.StatusOK {
				if n := live.requests(); n != 0 {
					t.Fatalf("the live worker got %d requests; a request its worker read is not sent again", n)
				}
				return
			}
			if got := echoOf(t, string(b)); string(got.Body) != tt.body || got.Env["REQUEST_METHOD"] != tt.method {
				t.Fatalf("the live worker got %s with body %q, want %s with %q", got.Env["REQUEST_METHOD"], got.Body, tt.method, tt.body)
			}
			// The dead worker is out of rotation: the retry found its
			// socket refusing, and nothing more goes there.
			app.mu.Lock()
			down, inflight := app.workers[0].down, app.workers[0].inflight
			app.mu.Unlock()
			if !down || inflight != 0 {
				t.Fatalf("dead worker: down %v, inflight %d; want down, 0", down, inflight)
			}
			for i := 0; i < 3; i++ {
				resp, err := http.Get(url + "/")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("request %d after: %d", i, resp.StatusCode)
				}
			}
		})
	}
}
