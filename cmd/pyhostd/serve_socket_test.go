package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestStableSocket(t *testing.T) {
	run := t.TempDir()
	fallback := filepath.Join(run, "control.sock")
	xdg := t.TempDir()
	os.Chmod(xdg, 0o700)
	uid := os.Getuid()
	if uid == 0 {
		// Make the directory someone else's, and ask as them.
		uid = 4242
		os.Chown(xdg, uid, uid)
	}
	stable := filepath.Join(xdg, "pyhost", "blog.sock")
	if got := stableSocket("blog", run, xdg, uid); got != stable {
		t.Fatalf("first serve: %s, want %s", got, stable)
	}
	if fi, err := os.Stat(filepath.Dir(stable)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the pyhost directory: %v %v, want mode 0700", fi, err)
	}
	// A stale socket (nobody listening) is taken over.
	ln, err := net.Listen("unix", stable)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stableSocket("blog", run, xdg, uid), filepath.Join(xdg, "pyhost", fmt.Sprintf("blog-%d.sock", os.Getpid())); got != want {
		t.Errorf("while another serve of blog runs: %s, want %s", got, want)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if got := stableSocket("blog", run, xdg, uid); got != stable {
		t.Errorf("a stale socket: %s, want %s", got, stable)
	}
	for _, c := range []struct {
		what string
		base string
		euid int
	}{
		{"no XDG_RUNTIME_DIR", "", uid},
		{"root", xdg, 0},
		{"a directory of someone else's", xdg, uid + 1},
	} {
		if got := stableSocket("blog", run, c.base, c.euid); got != fallback {
			t.Errorf("%s: %s, want the run directory's %s", c.what, got, fallback)
		}
	}
	os.Chmod(xdg, 0o755)
	if got := stableSocket("blog", run, xdg, uid); got != fallback {
		t.Errorf("an XDG_RUNTIME_DIR others may enter: %s, want %s", got, fallback)
	}
}
