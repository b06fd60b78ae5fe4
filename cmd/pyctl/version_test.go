package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyhost/pyhost/control"
)

// describedDaemon is fakeDaemon that can describe itself.
type describedDaemon struct {
	fakeDaemon
	info control.DaemonInfo
}

func (d *describedDaemon) Daemon(context.Context, control.Caller) (control.DaemonInfo, error) {
	return d.info, nil
}

var daemonStart = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func TestRenderDaemon(t *testing.T) {
	now := daemonStart.Add(3 * time.Hour)
	base := control.DaemonInfo{Version: "v1.2.0", GoVersion: "go1.26.8", Mode: "system", PID: 812,
		StartedAt: daemonStart, UptimeSeconds: 3*3600 + 5*60, ConfigFile: "/etc/pyhost/pyhost.toml"}
	ok, failed, hidden := base, base, base
	ok.LastReload = &control.ReloadInfo{At: now.Add(-12 * time.Minute), OK: true}
	failed.LastReload = &control.ReloadInfo{At: now.Add(-2 * time.Minute), Error: "pyhost.toml:3: unknown key \"lisen\""}
	hidden.LastReload = &control.ReloadInfo{At: now.Add(-2 * time.Minute)}
	serve := control.DaemonInfo{Version: "dev", GoVersion: "go1.26.8", Mode: "serve", PID: 4242, UptimeSeconds: 42, ConfigFile: "/home/alice/blog/wsgi.py"}
	var b strings.Builder
	for _, d := range []control.DaemonInfo{base, ok, failed, hidden, serve} {
		b.WriteString(renderDaemon(d, now))
	}
	golden(t, "daemon.golden", []byte(b.String()))
}

func TestRunVersion(t *testing.T) {
	info := control.DaemonInfo{Version: "v9", GoVersion: "go1.26.8", Mode: "system", PID: 1, UptimeSeconds: 61}
	sock := startDaemon(t, &describedDaemon{info: info})

	var stdout, stderr bytes.Buffer
	if code := run([]string{"version", "--socket", sock}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	want := "pyctl dev (" + strings.Fields(stdout.String())[2][1:] + "\n" + renderDaemon(info, time.Now())
	if stdout.String() != want {
		t.Errorf("version printed\n%s\nwant\n%s", stdout.String(), want)
	}

	stdout.Reset()
	if code := run([]string{"version", "--json", "--socket", sock}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var got versionJSON
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Client.Version != "dev" || got.Daemon == nil || got.Daemon.Version != "v9" {
		t.Errorf("version --json: %s", stdout.String())
	}

	// The status table has the daemon's line above it.
	stdout.Reset()
	if code := run([]string{"status", "--socket", sock}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "pyhostd v9 (system, pid 1, go1.26.8), up 1m01s") {
		t.Errorf("status:\n%s", stdout.String())
	}
}

// No daemon, or one too old to describe itself: the client's version
// still prints, and the exit status is 0.
func TestRunVersionWithoutDaemon(t *testing.T) {
	old := startDaemon(t, &fakeDaemon{})
	for sock, want := range map[string]string{
		old:                                     "pyhostd: unknown (the daemon is older than pyctl)\n",
		filepath.Join(t.TempDir(), "none.sock"): "pyhostd: no daemon at ",
	} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"version", "--socket", sock}, &stdout, &stderr); code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		if lines := strings.SplitN(stdout.String(), "\n", 2); !strings.HasPrefix(lines[1], want) {
			t.Errorf("version printed %q, want a second line %q", stdout.String(), want)
		}
	}
}
