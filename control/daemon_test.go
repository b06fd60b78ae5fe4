package control

import (
	"context"
	"errors"
	"testing"
	"time"
)

// daemonBackend is fakeBackend that also describes the daemon and keeps
// access logs.
type daemonBackend struct {
	fakeBackend
	info DaemonInfo
}

func (d *daemonBackend) Daemon(_ context.Context, c Caller) (DaemonInfo, error) {
	d.record(c, "")
	return d.info, nil
}

func (d *daemonBackend) AccessLogs(_ context.Context, c Caller, app string, n int, _ bool, out func(string) error) error {
	d.record(c, app)
	for i := 0; i < n; i++ {
		if err := out("access line of " + app); err != nil {
			return err
		}
	}
	return nil
}

func TestDaemonRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	want := DaemonInfo{Version: "v1.2.0", GoVersion: "go1.26.8", Mode: "system", PID: 812, StartedAt: at,
		UptimeSeconds: 90, ConfigFile: "/etc/pyhost/pyhost.toml", LastReload: &ReloadInfo{At: at, OK: false, Error: "bad"}}
	b := &daemonBackend{info: want}
	c := NewClient(startServer(t, b))
	got, err := c.Daemon(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != want.Version || got.PID != want.PID || !got.StartedAt.Equal(at) || got.LastReload == nil || *got.LastReload != *want.LastReload {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if caller, _ := b.lastCaller(t); caller.PID == 0 {
		t.Error("backend got no caller")
	}
}

// A daemon whose backend cannot describe itself (an older one) answers
// with an error that matches ErrUnsupported, and so do access logs.
func TestDaemonUnsupported(t *testing.T) {
	c := NewClient(startServer(t, &fakeBackend{}))
	if _, err := c.Daemon(testContext(t)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Daemon: %v, want ErrUnsupported", err)
	}
	err := c.AccessLogs(testContext(t), "blog", 3, false, func(string) {})
	if err == nil {
		t.Error("AccessLogs from a daemon without them succeeded")
	}
}

func TestAccessLogsRoundTrip(t *testing.T) {
	b := &daemonBackend{}
	c := NewClient(startServer(t, b))
	var lines []string
	if err := c.AccessLogs(testContext(t), "blog", 2, false, func(l string) { lines = append(lines, l) }); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[0] != "access line of blog" {
		t.Errorf("lines %q", lines)
	}
	// The app log is still the app log.
	lines = nil
	if err := c.Logs(testContext(t), "blog", 1, false, func(l string) { lines = append(lines, l) }); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || lines[0] == "access line of blog" {
		t.Errorf("app log lines %q", lines)
	}
}
