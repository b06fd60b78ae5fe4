package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/pyhost/pyhost/proxymsg"
)

// testListener is a loopback listener and a duplicate of it, as the
// master would send: the set takes (and closes) the duplicate.
func testListener(t *testing.T) (addr string, dup func() *os.File, ln net.Listener) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String(), func() *os.File {
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}, l
}

// keepAlive is one client connection that sends requests one after the
// other, as a browser's keep-alive connection does.
type keepAlive struct {
	c net.Conn
	r *bufio.Reader
}

func dialKeepAlive(t *testing.T, addr string) *keepAlive {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAlive{c, bufio.NewReader(c)}
}

// get sends GET path and reads the response.
func (k *keepAlive) get(path string) (*http.Response, string, error) {
	k.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(k.c, "GET "+path+" HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		return nil, "", err
	}
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// closedByServer waits until the server closes the connection.
func (k *keepAlive) closedByServer(within time.Duration) bool {
	k.c.SetReadDeadline(time.Now().Add(within))
	_, err := k.r.ReadByte()
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

func refuses(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// slowHandler answers "/" at once and "/slow" once release is closed,
// telling started when it began.
func slowHandler(started chan<- struct{}, release <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok "+r.URL.Path)
	})
}

func newTestSet(t *testing.T, h http.Handler) *listenerSet {
	s := newListenerSet(hclog.NewNullLogger(), 5*time.Second, func() *http.Server { return &http.Server{Handler: h} })
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.shutdown(ctx)
	})
	return s
}

func TestListenerSetMovesToNewAddress(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	s := newTestSet(t, slowHandler(started, release))
	addrA, _, lnA := testListener(t)
	s.add(lnA, addrA, false)
	addrB, dupB, lnB := testListener(t)

	idle := dialKeepAlive(t, addrA)
	if _, body, err := idle.get("/"); err != nil || body != "ok /" {
		t.Fatalf("A before: %q %v", body, err)
	}
	busy := dialKeepAlive(t, addrA)
	type result struct {
		resp *http.Response
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		resp, body, err := busy.get("/slow")
		slow <- result{resp, body, err}
	}()
	<-started

	// The test's own copy of A must not keep it listening.
	lnA.Close()
	if err := s.apply(proxymsg.ListenerSet{Serial: 1, Addrs: []string{addrB}, Files: []*os.File{dupB()}}); err != nil {
		t.Fatal(err)
	}
	lnB.Close() // the set holds its own

	if !refuses(addrA) {
		t.Error("A still accepts connections after it was removed")
	}
	if !idle.closedByServer(2 * time.Second) {
		t.Error("an idle keep-alive connection on A was left open")
	}
	if _, body, err := dialKeepAlive(t, addrB).get("/"); err != nil || body != "ok /" {
		t.Errorf("B: %q %v", body, err)
	}
	close(release)
	r := <-slow
	if r.err != nil || r.body != "ok /slow" {
		t.Fatalf("the request in flight on A: %q %v", r.body, r.err)
	}
	if !r.resp.Close {
		t.Error("the last response on A did not say Connection: close")
	}
	if !busy.closedByServer(2 * time.Second) {
		t.Error("A's busy connection stayed open after its response")
	}
	if got := s.addrs(); len(got) != 1 || got[0] != addrB {
		t.Errorf("serving %v, want [%s]", got, addrB)
	}
}

func TestListenerSetKeepsUnchangedSockets(t *testing.T) {
	s := newTestSet(t, slowHandler(nil, nil))
	addrA, dupA, lnA := testListener(t)
	s.add(lnA, addrA, false)
	addrB, dupB, lnB := testListener(t)

	onA := dialKeepAlive(t, addrA)
	if _, _, err := onA.get("/"); err != nil {
		t.Fatal(err)
	}
	again := []*os.File{dupA(), dupB()} // for the second, unchanged set
	if err := s.apply(proxymsg.ListenerSet{Serial: 1, Addrs: []string{addrA, addrB}, Files: []*os.File{dupA(), dupB()}}); err != nil {
		t.Fatal(err)
	}
	lnB.Close()
	// A is the same socket, served by the same server: its keep-alive
	// connection goes on.
	if _, body, err := onA.get("/again"); err != nil || body != "ok /again" {
		t.Errorf("A's connection after the change: %q %v", body, err)
	}
	if _, body, err := dialKeepAlive(t, addrB).get("/"); err != nil || body != "ok /" {
		t.Errorf("B: %q %v", body, err)
	}
	// The same set again changes nothing.
	if err := s.apply(proxymsg.ListenerSet{Serial: 2, Addrs: []string{addrA, addrB}, Files: again}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := onA.get("/third"); err != nil {
		t.Errorf("A's connection after an unchanged set: %v", err)
	}
	if got := s.addrs(); len(got) != 2 || got[0] != addrA || got[1] != addrB {
		t.Errorf("serving %v", got)
	}
}

func TestListenerSetRefusedChangesNothing(t *testing.T) {
	s := newTestSet(t, slowHandler(nil, nil))
	addrA, _, lnA := testListener(t)
	s.add(lnA, addrA, false)
	addrB, dupB, lnB := testListener(t)
	// A pipe is no socket to listen on.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	err = s.apply(proxymsg.ListenerSet{Serial: 1, Addrs: []string{addrB, "pipe"}, Files: []*os.File{dupB(), r}})
	if err == nil {
		t.Fatal("a set with a pipe in it was applied")
	}
	lnB.Close()
	if !refuses(addrB) {
		t.Error("the refused set's good listener was kept")
	}
	if _, body, err := dialKeepAlive(t, addrA).get("/"); err != nil || body != "ok /" {
		t.Errorf("A after a refused set: %q %v", body, err)
	}
}

func TestListenerSetAfterShutdown(t *testing.T) {
	s := newTestSet(t, slowHandler(nil, nil))
	addrB, dupB, _ := testListener(t)
	s.shutdown(context.Background())
	f := dupB()
	if err := s.apply(proxymsg.ListenerSet{Serial: 1, Addrs: []string{addrB}, Files: []*os.File{f}}); err == nil {
		t.Error("a stopping proxy took a new listener")
	}
	if _, err := f.Stat(); err == nil {
		t.Error("the refused set's file was not closed")
	}
}

// TestRunAppliesListenerSets drives Run as the master does: Setup names
// the files socket, a ListenerSet moves the proxy to another address, and
// the ack comes back on the same socket.
func TestRunAppliesListenerSets(t *testing.T) {
	masterEnd, proxyEnd := net.Pipe()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mf := os.NewFile(uintptr(fds[0]), "files")
	files, err := proxymsg.NewFilesConn(mf)
	mf.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()

	addrA, _, lnA := testListener(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, proxymsg.NewConn(proxyEnd), []net.Listener{lnA}, hclog.NewNullLogger())
	}()
	ch := proxymsg.NewConn(masterEnd)
	go func() { // events up; not looked at here
		for {
			if _, err := ch.Receive(); err != nil {
				return
			}
		}
	}()
	if err := ch.Send(proxymsg.Message{Setup: &proxymsg.Setup{Listeners: []string{addrA}, FilesFD: fds[1], ShutdownTimeout: 5 * time.Second}}); err != nil {
		t.Fatal(err)
	}
	if err := ch.Send(proxymsg.Message{Table: &proxymsg.Table{Serial: 1}}); err != nil {
		t.Fatal(err)
	}
	if resp, _, err := dialKeepAlive(t, addrA).get("/"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("A: %v %v", resp, err)
	}

	addrB, dupB, lnB := testListener(t)
	send := func(serial uint64, addrs []string, fs ...*os.File) {
		t.Helper()
		if err := files.SendListeners(proxymsg.ListenerSet{Serial: serial, Addrs: addrs, Files: fs}); err != nil {
			t.Fatal(err)
		}
		closeFiles(fs)
		files.SetReadDeadline(time.Now().Add(5 * time.Second))
		ack, err := files.ReceiveAck()
		if err != nil || ack.Serial != serial || ack.Error != "" {
			t.Fatalf("ack %+v, %v", ack, err)
		}
	}
	// A stays, B comes: A's socket is sent along and must keep working
	// as before (sending it must not change it for the proxy, say by
	// putting it into blocking mode, or the proxy's accept would hold
	// it open when it is removed).
	f, err := lnA.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	fB := dupB() // for the last set
	send(4, []string{addrA, addrB}, f, dupB())
	lnB.Close()
	for range 3 {
		if resp, _, err := dialKeepAlive(t, addrA).get("/"); err != nil || resp.StatusCode != http.StatusNotFound {
			t.Fatalf("A after an unchanged set: %v %v", resp, err)
		}
	}
	send(5, []string{addrB}, fB)
	if !refuses(addrA) {
		t.Error("A still accepts after the set without it was acknowledged")
	}
	if resp, _, err := dialKeepAlive(t, addrB).get("/"); err != nil || !strings.HasPrefix(resp.Status, "404") {
		t.Errorf("B: %v %v", resp, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after ctx was cancelled")
	}
	if !refuses(addrB) {
		t.Error("B still accepts after Run returned")
	}
}
