package control

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// leaveStaleSocket leaves a socket file at path with nobody listening, as
// a daemon killed with SIGKILL does.
func leaveStaleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	leaveStaleSocket(t, sock)

	ln, err := Listen(sock)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer ln.Close()
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != SocketMode {
		t.Errorf("socket mode %v, want %v", got, SocketMode)
	}
	assertAccepts(t, ln, sock)
}

func TestListenRefusesLiveSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	first, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()

	second, err := Listen(sock)
	if err == nil {
		second.Close()
		t.Fatal("second Listen on a live socket succeeded")
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %v does not match EADDRINUSE", err)
	}
	assertAccepts(t, first, sock) // the running daemon keeps its socket
}

func TestListenLeavesOtherFilesAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ln, err := Listen(path); err == nil {
		ln.Close()
		t.Fatal("Listen over a regular file succeeded")
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
		t.Errorf("file changed: %q, %v", b, err)
	}
}

// assertAccepts checks that ln is the one answering at path.
func assertAccepts(t *testing.T, ln net.Listener, path string) {
	t.Helper()
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	c.Close()
	if err := <-accepted; err != nil {
		t.Fatalf("accept: %v", err)
	}
}
