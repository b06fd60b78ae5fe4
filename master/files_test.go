package master

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/proxymsg"
	"github.com/pyhost/pyhost/wsgiadapter"
)

func TestWriteScript(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pyhost_worker.py")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeScript(path); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, wsgiadapter.WorkerScript) {
		t.Errorf("the script is not the embedded one (%v)", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want every app user to read it", fi.Mode())
	}
	if err := writeScript(filepath.Join(t.TempDir(), "none", "x.py")); err == nil {
		t.Error("a script in a missing directory")
	}
}

// The socket directory is the proxy's user's alone.
func TestPrepareSocketDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "workers")
	m := &Master{cfg: Config{Dirs: Dirs{SocketDir: dir}, ProxyCred: bob}}
	if err := m.prepareSocketDir(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%v %v", fi, err)
	}
	if os.Geteuid() == 0 {
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != bob.UID {
			t.Errorf("owned by %d, want the proxy's user", st.Uid)
		}
	}
}

// The access log is made for the proxy's user; root hands over no file
// it did not make, and the proxy must be able to write it.
func TestPrepareAccessLog(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("hands files over as root")
	}
	// Not t.TempDir: its parent is closed to the proxy's user.
	dir, err := os.MkdirTemp("", "pyhost-master-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "log", "access.log")
	m := &Master{cfg: Config{Proxy: Proxy{AccessLog: path}, ProxyCred: bob}}
	if err := m.prepareAccessLog(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Sys().(*syscall.Stat_t).Uid != bob.UID {
		t.Fatalf("made %v (%v), want it the proxy's user's", fi, err)
	}
	if err := m.prepareAccessLog(); err != nil {
		t.Errorf("the proxy's own file, again: %v", err)
	}
	theirs := filepath.Join(dir, "log", "root.log")
	os.WriteFile(theirs, nil, 0o640)
	m.cfg.AccessLog = theirs
	if err := m.prepareAccessLog(); err == nil || !strings.Contains(err.Error(), "access log") {
		t.Errorf("root's file: %v, want it refused", err)
	}
	m.cfg.AccessLog = ""
	if err := m.prepareAccessLog(); err != nil {
		t.Errorf("none: %v", err)
	}
}

// The proxy's events reach the apps and the master's waits.
func TestProxyEvents(t *testing.T) {
	cat := systemCatalog()
	m, _ := newTestMaster(t, cat)
	m.applied = 0
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.waitApplied(ctx, 5); err == nil {
		t.Fatal("serial 5 counts as applied before the proxy said so")
	}
	m.onProxyEvent(proxymsg.Event{Kind: proxymsg.EventApplied, Serial: 7})
	if err := m.waitApplied(context.Background(), 5); err != nil {
		t.Fatal(err)
	}
	m.onProxyEvent(proxymsg.Event{Kind: proxymsg.EventApplied, Serial: 6})
	if m.applied != 7 {
		t.Errorf("applied %d, want the newest serial kept", m.applied)
	}
	m.onProxyEvent(proxymsg.Event{Kind: proxymsg.EventStats, Stats: map[string]proxymsg.WorkerStats{"w1": {Served: 9, Busy: 2}}})
	if served, busy := m.served("w1"); served != 9 || busy != 2 {
		t.Errorf("served %d busy %d", served, busy)
	}
	// Events for an app that is not there, or of a kind not known, are
	// dropped.
	for _, k := range []proxymsg.EventKind{proxymsg.EventDrained, proxymsg.EventWake, proxymsg.EventBudget, proxymsg.EventTimeout} {
		m.onProxyEvent(proxymsg.Event{Kind: k, App: "nobody/none", WorkerID: "w0"})
		m.onProxyEvent(proxymsg.Event{Kind: k, App: "daemon/blog", WorkerID: "w0"})
	}
	m.onProxyEvent(proxymsg.Event{Kind: "nonsense"})
	if s := state(t, m, "daemon/blog"); s != "running" {
		t.Errorf("state %s after events for no worker", s)
	}
	// With no proxy, a table is built all the same.
	if serial := m.sendTable(); serial == 0 {
		t.Error("no serial")
	}
	m.markChanged()
	m.markChanged() // coalesced: never blocks
}

func TestOpenAppLog(t *testing.T) {
	m := &Master{cfg: Config{Dirs: Dirs{LogDir: t.TempDir()}}, log: hclog.NewNullLogger()}
	l, err := m.openAppLog(testApp(alice, "blog"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := os.Stat(filepath.Join(m.cfg.LogDir, alice.Username, "blog.log")); err != nil {
		t.Error(err)
	}
}
