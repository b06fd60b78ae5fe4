package systemd

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// A fake systemd: a datagram socket at NOTIFY_SOCKET that records messages.
func TestNotifyMessages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	n := New()
	steps := []struct {
		send func() error
		want []string
	}{
		{func() error { return n.Ready("serving 2 apps") }, []string{"READY=1", "STATUS=serving 2 apps"}},
		{n.Reloading, []string{"RELOADING=1", "MONOTONIC_USEC="}},
		{func() error { return n.Status("3 apps") }, []string{"STATUS=3 apps"}},
		{n.Stopping, []string{"STOPPING=1"}},
	}
	buf := make([]byte, 4096)
	for _, s := range steps {
		if err := s.send(); err != nil {
			t.Fatal(err)
		}
		k, _, err := conn.ReadFromUnix(buf)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(buf[:k]), "\n")
		for i, w := range s.want {
			if i >= len(lines) || !strings.HasPrefix(lines[i], w) {
				t.Errorf("message %q, want lines starting %v", buf[:k], s.want)
			}
		}
	}
}

func TestNoSystemdIsNoOp(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := New().Ready("x"); err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v", err)
	}
}
