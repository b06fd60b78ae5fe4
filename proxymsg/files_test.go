package proxymsg

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// filesPair is both ends of a files socket.
func filesPair(t *testing.T) (master, proxy *FilesConn) {
	t.Helper()
	m, f, err := NewFilesPair()
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewFilesConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); p.Close() })
	return m, p
}

func listenerFile(t *testing.T) (*net.TCPListener, *os.File) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	return ln.(*net.TCPListener), f
}

func TestListenerSetCarriesWorkingSockets(t *testing.T) {
	m, p := filesPair(t)
	ln1, f1 := listenerFile(t)
	ln2, f2 := listenerFile(t)
	addrs := []string{ln1.Addr().String(), ln2.Addr().String()}
	if err := m.SendListeners(ListenerSet{Serial: 7, Addrs: addrs, TLS: []bool{false, true}, Files: []*os.File{f1, f2}}); err != nil {
		t.Fatal(err)
	}
	// The sender's files stay its own.
	f1.Close()
	f2.Close()
	got, err := p.ReceiveListeners()
	if err != nil {
		t.Fatal(err)
	}
	if got.Serial != 7 || len(got.Files) != 2 || got.Addrs[0] != addrs[0] || got.Addrs[1] != addrs[1] || got.IsTLS(0) || !got.IsTLS(1) {
		t.Fatalf("received %+v", got)
	}
	for i, f := range got.Files {
		// The received descriptor is the same socket: a listener made
		// from it accepts what is dialled at the original's address.
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if ln.Addr().String() != addrs[i] {
			t.Errorf("listener %d is %s, want %s", i, ln.Addr(), addrs[i])
		}
		c, err := net.Dial("tcp", addrs[i])
		if err != nil {
			t.Fatal(err)
		}
		a, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		a.Close()
		c.Close()
		ln.Close()
	}

	if err := p.SendAck(ListenerAck{Serial: 7, Error: "no"}); err != nil {
		t.Fatal(err)
	}
	ack, err := m.ReceiveAck()
	if err != nil || ack.Serial != 7 || ack.Error != "no" {
		t.Fatalf("ack %+v, %v", ack, err)
	}
}

func TestListenerSetReceivedDescriptorsCloseOnExec(t *testing.T) {
	m, p := filesPair(t)
	_, f := listenerFile(t)
	if err := m.SendListeners(ListenerSet{Serial: 1, Addrs: []string{"a"}, Files: []*os.File{f}}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := p.ReceiveListeners()
	if err != nil {
		t.Fatal(err)
	}
	defer got.Files[0].Close()
	flags, err := unix.FcntlInt(got.Files[0].Fd(), unix.F_GETFD, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.FD_CLOEXEC == 0 {
		t.Error("a received listener would leak into the proxy's children")
	}
}

func TestSendListenersLeavesSocketsNonBlocking(t *testing.T) {
	// The flag is the socket's, shared with the proxy's served copy.
	m, p := filesPair(t)
	ln, f := listenerFile(t)
	defer f.Close()
	if err := m.SendListeners(ListenerSet{Serial: 1, Addrs: []string{"a"}, Files: []*os.File{f}}); err != nil {
		t.Fatal(err)
	}
	got, err := p.ReceiveListeners()
	if err != nil {
		t.Fatal(err)
	}
	got.Files[0].Close()
	rc, _ := ln.SyscallConn()
	var fl int
	rc.Control(func(fd uintptr) { fl, err = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	if err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Errorf("after sending, the listener's flags are %#x, %v: blocking", fl, err)
	}
}

func TestListenerSetEmpty(t *testing.T) {
	m, p := filesPair(t)
	if err := m.SendListeners(ListenerSet{Serial: 3}); err != nil {
		t.Fatal(err)
	}
	got, err := p.ReceiveListeners()
	if err != nil || got.Serial != 3 || len(got.Files) != 0 {
		t.Fatalf("received %+v, %v", got, err)
	}
}

func TestListenerSetRefusesMismatch(t *testing.T) {
	m, _ := filesPair(t)
	_, f := listenerFile(t)
	defer f.Close()
	if err := m.SendListeners(ListenerSet{Addrs: []string{"a"}, TLS: []bool{true, false}, Files: []*os.File{f}}); err == nil {
		t.Error("a set with more kinds than sockets was sent")
	}
	if err := m.SendListeners(ListenerSet{Addrs: []string{"a", "b"}, Files: []*os.File{f}}); err == nil {
		t.Error("two addresses for one file were sent")
	}
	many := make([]*os.File, MaxListeners+1)
	names := make([]string, len(many))
	for i := range many {
		many[i], names[i] = f, "a"
	}
	if err := m.SendListeners(ListenerSet{Addrs: names, Files: many}); !errors.Is(err, ErrTooManyListeners) {
		t.Errorf("too many: %v", err)
	}
}

func TestListenerSetCountMismatchClosesDescriptors(t *testing.T) {
	// A peer that sends fewer names than descriptors gets an error,
	// and the descriptors are not leaked.
	m, p := filesPair(t)
	_, f := listenerFile(t)
	defer f.Close()
	if _, _, err := m.c.WriteMsgUnix([]byte(`{"serial":1,"addrs":[]}`), unix.UnixRights(int(f.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	if _, err := p.ReceiveListeners(); err == nil {
		t.Fatal("a set with an unnamed descriptor was accepted")
	}
	if after := openFDs(t); after != before {
		t.Errorf("open descriptors %d before, %d after", before, after)
	}
}

func TestFilesConnEOF(t *testing.T) {
	m, p := filesPair(t)
	m.Close()
	if _, err := p.ReceiveListeners(); !errors.Is(err, io.EOF) {
		t.Errorf("after the master closed: %v, want EOF", err)
	}
	m2, p2 := filesPair(t)
	p2.Close()
	if _, err := m2.ReceiveAck(); !errors.Is(err, io.EOF) {
		t.Errorf("after the proxy closed: %v, want EOF", err)
	}
}

func TestFilesConnDeadline(t *testing.T) {
	m, _ := filesPair(t)
	m.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := m.ReceiveAck(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("no ack: %v, want a deadline error", err)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(es)
}
