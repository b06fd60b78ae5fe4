package main

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// Discovery counts the live sockets of a private directory of the
// caller's own, and nothing else.
func TestLiveServeSockets(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pyhost")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, "blog.sock")
	ln, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A socket whose serve was killed: the file stays, nothing listens.
	stale := filepath.Join(dir, "old.sock")
	sl, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	sl.(*net.UnixListener).SetUnlinkOnClose(false)
	sl.Close()

	if got := liveServeSockets(dir); len(got) != 1 || got[0] != live {
		t.Errorf("live sockets %q, want only %s", got, live)
	}
	os.Chmod(dir, 0o755)
	if got := liveServeSockets(dir); got != nil {
		t.Errorf("a directory others may read: %q, want none", got)
	}
	os.Chmod(dir, 0o700)
	if os.Geteuid() == 0 {
		os.Chown(dir, 65534, 65534)
		if got := liveServeSockets(dir); got != nil {
			t.Errorf("another user's directory: %q, want none", got)
		}
	}
}
