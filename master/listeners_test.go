package master

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/proxymsg"
)

// freeAddr is a loopback address nobody listens on (a moment ago).
// freeAddr is an address nothing listens on. Its port is free only until
// it is closed here, so it is on a random address of 127.0.0.0/8 of its
// own: another test process binding 127.0.0.1:0 meanwhile may be given
// the same port without taking this address (one did, failing
// TestSetListenProxyGoneKeepsTheChange in a CI run).
func freeAddr(t *testing.T) string {
	t.Helper()
	ip := net.IPv4(127, byte(1+rand.IntN(254)), byte(rand.IntN(256)), byte(1+rand.IntN(254)))
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func refused(addr string) bool {
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

func socketOf(s *listenerSet, addr string) *net.TCPListener {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lns {
		if l.addr == addr {
			return l.ln
		}
	}
	return nil
}

func newTestListeners(t *testing.T) *listenerSet {
	s := &listenerSet{}
	t.Cleanup(s.closeAll)
	return s
}

func TestSetListenAddsKeepsRemoves(t *testing.T) {
	s := newTestListeners(t)
	log := hclog.NewNullLogger()
	a, b := freeAddr(t), freeAddr(t)
	if added, removed, err := s.set([]string{a}, log); err != nil || len(added) != 1 || len(removed) != 0 {
		t.Fatalf("first set: %v %v %v", added, removed, err)
	}
	first := socketOf(s, a)
	added, removed, err := s.set([]string{a, b}, log)
	if err != nil || len(added) != 1 || added[0] != b || len(removed) != 0 {
		t.Fatalf("adding %s: %v %v %v", b, added, removed, err)
	}
	if socketOf(s, a) != first {
		t.Error("an unchanged address was bound anew")
	}
	added, removed, err = s.set([]string{b}, log)
	if err != nil || len(added) != 0 || len(removed) != 1 || removed[0] != a {
		t.Fatalf("removing %s: %v %v %v", a, added, removed, err)
	}
	if !refused(a) {
		t.Error("the master still holds a removed listener")
	}
	if got := s.addrs(); len(got) != 1 || got[0].String() != b {
		t.Errorf("addrs %v, want [%s]", got, b)
	}
}

func TestSetListenIsAllOrNothing(t *testing.T) {
	s := newTestListeners(t)
	log := hclog.NewNullLogger()
	a, b := freeAddr(t), freeAddr(t)
	if _, _, err := s.set([]string{a}, log); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, _, err = s.set([]string{b, busy.Addr().String()}, log)
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("binding a used address: %v", err)
	}
	if !refused(b) {
		t.Error("the new address bound before the failing one was kept")
	}
	if got := s.addrs(); len(got) != 1 || got[0].String() != a {
		t.Errorf("after a failed change: %v, want [%s]", got, a)
	}
	if refused(a) {
		t.Error("the old listener was closed by a failed change")
	}
}

func TestSetListenSameSocketSpeltOtherwise(t *testing.T) {
	s := newTestListeners(t)
	log := hclog.NewNullLogger()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	wild := ":" + port
	if _, _, err := s.set([]string{wild}, log); err != nil {
		t.Skip("cannot listen on every address:", err)
	}
	first := socketOf(s, wild)
	for _, addr := range []string{"0.0.0.0:" + port, "[::]:" + port, wild} {
		added, removed, err := s.set([]string{addr}, log)
		if err != nil || len(added)+len(removed) != 0 {
			t.Errorf("%s after %s: %v %v %v", addr, wild, added, removed, err)
		}
		if socketOf(s, addr) != first {
			t.Errorf("%s: another socket", addr)
		}
	}
	// Named twice is one socket.
	if _, _, err := s.set([]string{wild, "0.0.0.0:" + port}, log); err != nil {
		t.Error(err)
	}
	if n := len(s.addrs()); n != 1 {
		t.Errorf("%d listeners for one address named twice", n)
	}
}

// fakeProxy is the proxy's end of the files socket: it takes each set
// and answers with answer(set).
func fakeProxy(t *testing.T, s *listenerSet, answer func(proxymsg.ListenerSet) string) (sets chan proxymsg.ListenerSet, detach func()) {
	t.Helper()
	mine, theirs, err := proxymsg.NewFilesPair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mine.Close() })
	proxy, err := proxymsg.NewFilesConn(theirs)
	theirs.Close()
	if err != nil {
		t.Fatal(err)
	}
	detach, err = s.startProxy(mine, func(files []*os.File, addrs []string, _, _ []bool) error {
		if len(files) != len(addrs) {
			t.Errorf("%d files for %d addresses", len(files), len(addrs))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sets = make(chan proxymsg.ListenerSet, 10)
	lateBy := 3 * ackTimeout
	go func() {
		defer proxy.Close()
		for {
			set, err := proxy.ReceiveListeners()
			if err != nil {
				return
			}
			for _, f := range set.Files {
				f.Close()
			}
			sets <- set
			reason := answer(set)
			switch reason {
			case "hang up":
				return
			case "late":
				time.Sleep(lateBy)
				reason = ""
			}
			proxy.SendAck(proxymsg.ListenerAck{Serial: set.Serial, Error: reason})
		}
	}()
	return sets, detach
}

func TestSetListenHandsOverToTheProxy(t *testing.T) {
	s := newTestListeners(t)
	log := hclog.NewNullLogger()
	a, b := freeAddr(t), freeAddr(t)
	if _, _, err := s.set([]string{a}, log); err != nil {
		t.Fatal(err)
	}
	sets, detach := fakeProxy(t, s, func(proxymsg.ListenerSet) string { return "" })
	defer detach()
	if _, _, err := s.set([]string{a, b}, log); err != nil {
		t.Fatal(err)
	}
	set := <-sets
	if len(set.Addrs) != 2 || set.Addrs[0] != a || set.Addrs[1] != b {
		t.Errorf("the proxy got %v, want the whole set [%s %s]", set.Addrs, a, b)
	}
	// Nothing changed: nothing is sent.
	if _, _, err := s.set([]string{a, b}, log); err != nil {
		t.Fatal(err)
	}
	select {
	case set := <-sets:
		t.Errorf("an unchanged set was sent: %v", set.Addrs)
	default:
	}
}

func TestSetListenProxyRefusalChangesNothing(t *testing.T) {
	s := newTestListeners(t)
	log := hclog.NewNullLogger()
	a, b := freeAddr(t), freeAddr(t)
	if _, _, err := s.set([]string{a}, log); err != nil {
		t.Fatal(err)
	}
	_, detach := fakeProxy(t, s, func(proxymsg.ListenerSet) string { return "no" })
	defer detach()
	if _, _, err := s.set([]string{b}, log); err == nil || !strings.Contains(err.Error(), "could not take") {
		t.Fatalf("a refused set: %v", err)
	}
	if got := s.addrs(); len(got) != 1 || got[0].String() != a {
		t.Errorf("after a refusal: %v, want [%s]", got, a)
	}
	if !refused(b) {
		t.Error("the refused set's new listener is still bound")
	}
}

func TestSetListenProxyGoneKeepsTheChange(t *testing.T) {
	s := newTestListeners(t)
	log := hclog.NewNullLogger()
	a, b := freeAddr(t), freeAddr(t)
	if _, _, err := s.set([]string{a}, log); err != nil {
		t.Fatal(err)
	}
	_, detach := fakeProxy(t, s, func(proxymsg.ListenerSet) string { return "hang up" })
	defer detach()
	added, removed, err := s.set([]string{b}, log)
	if err != nil || len(added) != 1 || len(removed) != 1 {
		t.Fatalf("with the proxy gone: %v %v %v", added, removed, err)
	}
	// The next proxy starts with the new set.
	var got []string
	s.startProxy(nil, func(_ []*os.File, addrs []string, _, _ []bool) error { got = addrs; return nil })
	if len(got) != 1 || got[0] != b {
		t.Errorf("a new proxy starts with %v, want [%s]", got, b)
	}
}

func TestSetListenLateProxyKeepsTheChange(t *testing.T) {
	defer func(d time.Duration) { ackTimeout = d }(ackTimeout)
	ackTimeout = 50 * time.Millisecond
	s := newTestListeners(t)
	log := hclog.NewNullLogger()
	a, b := freeAddr(t), freeAddr(t)
	if _, _, err := s.set([]string{a}, log); err != nil {
		t.Fatal(err)
	}
	answer := "late"
	var mu sync.Mutex
	_, detach := fakeProxy(t, s, func(proxymsg.ListenerSet) string { mu.Lock(); defer mu.Unlock(); return answer })
	defer detach()
	// An error means nothing changed; this change holds, so no error.
	added, removed, err := s.set([]string{b}, log)
	if err != nil || len(added) != 1 || len(removed) != 1 {
		t.Fatalf("with a proxy that answers late: %v %v %v", added, removed, err)
	}
	// Its late answer is not taken for the next set's.
	mu.Lock()
	answer = ""
	mu.Unlock()
	if _, _, err := s.set([]string{a, b}, log); err != nil {
		t.Fatal(err)
	}
	if got := s.addrs(); len(got) != 2 {
		t.Errorf("addrs %v", got)
	}
}

// tls_listen sockets go to the proxy marked as TLS; an address that
// moves between listen and tls_listen keeps its socket and changes kind.
func TestSetListenKinds(t *testing.T) {
	s := newTestListeners(t)
	log := hclog.NewNullLogger()
	a, b := freeAddr(t), freeAddr(t)
	if _, _, err := s.setKinds(listenAddrs([]string{a}, nil), log); err != nil {
		t.Fatal(err)
	}
	sets, _ := fakeProxy(t, s, func(proxymsg.ListenerSet) string { return "" })
	added, removed, err := s.setKinds(listenAddrs([]string{a}, []string{b}), log)
	if err != nil || len(added) != 1 || added[0] != "https://"+b || len(removed) != 0 {
		t.Fatalf("adding a TLS listener: %v %v %v", added, removed, err)
	}
	set := <-sets
	if len(set.Addrs) != 2 || set.IsTLS(0) || !set.IsTLS(1) {
		t.Fatalf("the proxy got %v %v", set.Addrs, set.TLS)
	}
	before := s.lns[0].ln
	added, removed, err = s.setKinds(listenAddrs(nil, []string{a, b}), log)
	if err != nil || len(added) != 1 || added[0] != "https://"+a || len(removed) != 1 || removed[0] != a {
		t.Fatalf("moving %s to tls_listen: %v %v %v", a, added, removed, err)
	}
	if s.lns[0].ln != before {
		t.Error("the socket was bound anew; it must be kept")
	}
	set = <-sets
	if !set.IsTLS(0) || !set.IsTLS(1) {
		t.Errorf("the proxy got %v %v", set.Addrs, set.TLS)
	}
	// Unchanged: nothing is sent.
	if added, removed, err := s.setKinds(listenAddrs(nil, []string{a, b}), log); err != nil || added != nil || removed != nil {
		t.Errorf("an unchanged set: %v %v %v", added, removed, err)
	}
}
