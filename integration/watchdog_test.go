package integration

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWatchdogPings: under a unit with WatchdogSec= (here NOTIFY_SOCKET
// and WATCHDOG_USEC, as systemd sets them) pyhostd run says READY=1 and
// then pings WATCHDOG=1 while its main loop and every app's actor answer
// (issue 13: it used to ping from a ticker that asked nothing). The
// refusal to ping when they do not answer is master's unit test.
func TestWatchdogPings(t *testing.T) {
	t.Parallel()
	d := newSysd(t, "\n[users.pyh-wd-ann]\ndomains = [\"wd-ann.test\"]\n")
	deployNamed(t, makeUser(t, "pyh-wd-ann"), "blog", "ann blog", `"wd-ann.test"`, "")
	sock := filepath.Join(d.base, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d.env = []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=1000000"}
	d.start()

	var ready bool
	pings := 0
	buf := make([]byte, 4096)
	deadline := time.Now().Add(15 * time.Second)
	for pings < 3 && time.Now().Before(deadline) {
		conn.SetReadDeadline(deadline)
		n, err := conn.Read(buf)
		if err != nil {
			break
		}
		msg := string(buf[:n])
		if strings.Contains(msg, "READY=1") {
			ready = true
		}
		if strings.Contains(msg, "WATCHDOG=1") {
			if !ready {
				t.Errorf("a watchdog ping before READY=1")
			}
			pings++
		}
	}
	if !ready || pings < 3 {
		t.Errorf("READY=1 %v, %d watchdog pings in 15 s (want 3, one every 0.5 s)\n%s", ready, pings, d.logs)
	}
}
