package master

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/proxymsg"
	"github.com/pyhost/pyhost/supervisor"
	"github.com/pyhost/pyhost/workerproc"
)

// The tenants of these tests are real accounts of every Debian system,
// so that the lookups the control backend makes by name and uid answer.
var (
	alice = privdrop.Credential{Username: "daemon", UID: 1, GID: 1, Home: "/usr/sbin"}
	bob   = privdrop.Credential{Username: "bin", UID: 2, GID: 2, Home: "/bin"}
)

// fakeProc is a worker with no process: ready at once, unless its app's
// directory says "broken", when it fails its import.
type fakeProc struct {
	pid     int
	socket  string
	started time.Time
	ready   chan struct{}
	exited  chan struct{}
	once    sync.Once
	imp     *workerproc.ImportError
}

func (p *fakeProc) PID() int                           { return p.pid }
func (p *fakeProc) Socket() string                     { return p.socket }
func (p *fakeProc) StartedAt() time.Time               { return p.started }
func (p *fakeProc) Ready() <-chan struct{}             { return p.ready }
func (p *fakeProc) Exited() <-chan struct{}            { return p.exited }
func (p *fakeProc) ImportErr() *workerproc.ImportError { return p.imp }
func (p *fakeProc) ExitErr() error {
	select {
	case <-p.exited:
		if p.imp != nil {
			return &workerproc.ExitError{Code: 1}
		}
		return &workerproc.ExitError{Code: 0}
	default:
		return nil
	}
}
func (p *fakeProc) Stop(time.Duration)               { p.once.Do(func() { close(p.exited) }) }
func (p *fakeProc) Kill()                            { p.Stop(0) }
func (p *fakeProc) DumpStacks()                      {}
func (p *fakeProc) RSS() (int64, error)              { return 1 << 20, nil }
func (p *fakeProc) Stats() (workerproc.Stats, error) { return workerproc.Stats{RSS: 1 << 20}, nil }

// fakeStarter starts fakeProcs and counts them.
type fakeStarter struct {
	pids atomic.Int64
}

func (s *fakeStarter) StartWorker(spec workerproc.Spec, _ supervisor.ForkServer) (supervisor.Proc, error) {
	p := &fakeProc{pid: int(1000 + s.pids.Add(1)), socket: spec.Socket, started: time.Now(), ready: make(chan struct{}), exited: make(chan struct{})}
	if strings.Contains(spec.Dir, "broken") {
		p.imp = &workerproc.ImportError{Message: "ModuleNotFoundError: No module named 'broken'", Traceback: "Traceback (most recent call last):\nModuleNotFoundError: No module named 'broken'\n"}
		p.Stop(0) // it exits at once
		return p, nil
	}
	close(p.ready)
	return p, nil
}

func (s *fakeStarter) StartForkServer(workerproc.ForkServerSpec) (supervisor.ForkServer, error) {
	return nil, errors.New("no fork servers in these tests")
}

// fakeCatalog is a Catalog whose answers the test sets, and which
// records what the master asked.
type fakeCatalog struct {
	mode    string
	rereads bool
	initial Initial

	mu        sync.Mutex
	listed    map[uint32]bool // nil: everyone
	def       string
	admin     config.Admin     // what Rescan reads
	next      config.Discovery // what Rescan finds
	rescanErr error            // what Rescan fails with
	checkErr  error            // what CheckFile answers
	scans     []config.Scan    // Rescan's questions
	adopted   []config.Admin   // Adopt's
	saved     []config.Ledger  // SaveClaims'
	checked   []string         // CheckFile's paths
	running   [][]config.App   // CheckFile's running apps
}

func (c *fakeCatalog) Mode() string     { return c.mode }
func (c *fakeCatalog) Initial() Initial { return c.initial }
func (c *fakeCatalog) Rereads() bool    { return c.rereads }
func (c *fakeCatalog) KeepFailed() bool { return c.rereads }

func (c *fakeCatalog) Rescan(s config.Scan, reread bool) (config.Admin, config.Discovery, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scans = append(c.scans, s)
	if c.rescanErr != nil {
		return config.Admin{}, config.Discovery{}, c.rescanErr
	}
	return c.admin, c.next, nil
}

func (c *fakeCatalog) Adopt(a config.Admin) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.adopted = append(c.adopted, a)
}

func (c *fakeCatalog) SaveClaims(l config.Ledger) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.saved = append(c.saved, l)
	return nil
}

func (c *fakeCatalog) Allowed(uid uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.listed != nil && !c.listed[uid] {
		return control.ErrAccessDenied
	}
	return nil
}

func (c *fakeCatalog) DefaultApp() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.def
}

func (c *fakeCatalog) CheckFile(_ uint32, path string, running []config.App, _ config.Ledger) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checked = append(c.checked, path)
	c.running = append(c.running, running)
	return c.checkErr
}

func (c *fakeCatalog) ACME() (*proxymsg.ACME, error) { return nil, nil }

// testApp is an app of cred's called name, on one domain of its own.
func testApp(cred privdrop.Credential, name string) config.App {
	a := config.App{
		Name: name, Cred: cred, Python: "python3", Directory: "/srv/" + name, Module: "app", Callable: "application",
		Domains: []string{name + ".test"}, Processes: 1, Threads: 1,
		GracefulTimeout: time.Second, StartupTimeout: 5 * time.Second,
	}
	return a
}

// newTestMaster is a Master of cat's initial apps, their workers fakes,
// with no proxy, no listeners and no control socket: the control
// backend's verbs are called directly. Every app with enabled = true
// has a ready worker when it returns.
func newTestMaster(t *testing.T, cat Catalog) (*Master, *fakeStarter) {
	t.Helper()
	st := &fakeStarter{}
	return newTestMasterOf(t, cat, st), st
}

// newTestMasterOf is newTestMaster with st starting the workers.
func newTestMasterOf(t *testing.T, cat Catalog, st supervisor.Starter) *Master {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	m := newMaster(Config{
		Dirs:     Dirs{SocketDir: filepath.Join(dir, "workers"), LogDir: filepath.Join(dir, "logs")},
		Settings: Settings{DirectStart: true, CheckInterval: time.Hour},
		Catalog:  cat,
		Log:      hclog.NewNullLogger(),
	})
	m.starter = st
	// No proxy: every table counts as applied.
	m.applied = math.MaxUint64
	start := cat.Initial()
	m.set = newAppSet(m, m.appOptions(filepath.Join(dir, "pyhost_worker.py")), start.Refused, start.Claims)
	t.Cleanup(m.set.stopAll)
	for _, a := range start.Apps {
		if err := m.set.add(a); err != nil {
			t.Fatal(err)
		}
	}
	m.set.commitClaims(start.Claims)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, a := range start.Apps {
		if a.Disabled {
			continue
		}
		if err := m.set.get(a.Key()).WaitStarted(ctx); err != nil {
			t.Fatalf("%s: %v", a.Key(), err)
		}
	}
	return m
}

// state is key's state as pyctl status shows it.
func state(t *testing.T, m *Master, key string) supervisor.AppState {
	t.Helper()
	app := m.set.get(key)
	if app == nil {
		return ""
	}
	st, err := app.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.State
}

// lines collects progress lines.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) add(s string) { l.mu.Lock(); l.l = append(l.l, s); l.mu.Unlock() }

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.l, "\n")
}
