package workerproc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pyhost/pyhost/privdrop"
)

// The test binary is also the fake worker: PYHOST_DAEMONS_HELPER names
// what it does (the pattern of os/exec's own tests).
func TestMain(m *testing.M) {
	if h := os.Getenv("PYHOST_DAEMONS_HELPER"); h != "" {
		os.Exit(helper(h))
	}
	os.Exit(m.Run())
}

func helper(kind string) int {
	status := os.NewFile(4, "status")
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	switch kind {
	case "ready":
		// Prove the inherited socket is a listening socket.
		ln, err := net.FileListener(os.NewFile(3, "sock"))
		if err != nil {
			fmt.Println("no listener:", err)
			return 1
		}
		defer ln.Close()
		fmt.Println("hello from the worker")
		fmt.Fprintln(os.Stderr, "a line on stderr")
		fmt.Fprintf(status, `{"event":"ready","pid":%d}`+"\n", os.Getpid())
		<-term
		return 0
	case "import-error":
		fmt.Fprintf(status, `{"event":"import_error","pid":%d,"error":"ImportError: no module","traceback":"Traceback...\nImportError: no module\n"}`+"\n", os.Getpid())
		return 3
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		fmt.Fprintf(status, `{"event":"ready","pid":%d}`+"\n", os.Getpid())
		select {}
	case "crash":
		return 7
	}
	return 2
}

type lines struct {
	mu  sync.Mutex
	got []string
}

func (l *lines) add(pid int, s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, fmt.Sprintf("%d %s", pid, s))
}

func start(t *testing.T, kind string, out *lines) *Process {
	t.Helper()
	sp, err := privdrop.NewSpawner()
	if err != nil {
		t.Fatal(err)
	}
	cred, err := privdrop.Current()
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	p, err := Start(sp, Spec{
		Path:      self,
		Env:       []string{"PYHOST_DAEMONS_HELPER=" + kind},
		Dir:       "/",
		Cred:      cred,
		Socket:    filepath.Join(t.TempDir(), "w.sock"),
		SocketUID: -1, SocketGID: -1,
		Output: out.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		<-p.Exited()
	})
	return p
}

func within(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not within 10s", what)
	}
}

func TestReadyOutputAndGracefulStop(t *testing.T) {
	var out lines
	p := start(t, "ready", &out)
	within(t, p.Ready(), "ready")
	if _, err := os.Stat(p.Socket()); err != nil {
		t.Fatalf("socket missing while running: %v", err)
	}
	st, err := p.Stats()
	if err != nil || st.RSS == 0 {
		t.Errorf("stats %+v, %v", st, err)
	}
	p.Stop(10 * time.Second)
	within(t, p.Exited(), "exit after SIGTERM")
	var ee *ExitError
	if !errors.As(p.ExitErr(), &ee) || ee.Code != 0 || ee.Signal != 0 {
		t.Fatalf("exit %v, want status 0", p.ExitErr())
	}
	if _, err := os.Stat(p.Socket()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind after exit: %v", err)
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	want := map[string]bool{fmt.Sprintf("%d hello from the worker", p.PID()): false, fmt.Sprintf("%d a line on stderr", p.PID()): false}
	for _, l := range out.got {
		if _, ok := want[l]; ok {
			want[l] = true
		}
	}
	for l, seen := range want {
		if !seen {
			t.Errorf("output line %q not delivered; got %q", l, out.got)
		}
	}
}

func TestImportErrorReported(t *testing.T) {
	p := start(t, "import-error", &lines{})
	within(t, p.Exited(), "exit")
	ie := p.ImportErr()
	if ie == nil || ie.Message != "ImportError: no module" || ie.Traceback == "" {
		t.Fatalf("import error %+v", ie)
	}
	select {
	case <-p.Ready():
		t.Fatal("a worker that failed to import was counted ready")
	default:
	}
	var ee *ExitError
	if !errors.As(p.ExitErr(), &ee) || ee.Code != 3 {
		t.Fatalf("exit %v, want status 3", p.ExitErr())
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	p := start(t, "ignore-term", &lines{})
	within(t, p.Ready(), "ready")
	p.Stop(100 * time.Millisecond)
	p.Stop(time.Hour) // idempotent: the first grace applies
	within(t, p.Exited(), "exit after the grace period")
	var ee *ExitError
	if !errors.As(p.ExitErr(), &ee) || ee.Signal != syscall.SIGKILL {
		t.Fatalf("exit %v, want killed by SIGKILL", p.ExitErr())
	}
	if got := ee.Error(); got != "killed by signal 9 (SIGKILL)" {
		t.Errorf("description %q", got)
	}
}

func TestCrashBeforeReady(t *testing.T) {
	p := start(t, "crash", &lines{})
	within(t, p.Exited(), "exit")
	if p.ImportErr() != nil {
		t.Errorf("import error from a plain crash")
	}
	if got := p.ExitErr().Error(); got != "exited with status 7" {
		t.Errorf("exit %q", got)
	}
}

// Issue 11 item 6 (the Go side): what a directly started child inherits
// of signals. Go's fork resets the handlers it installed and restores
// the mask pyhostd started with; a disposition pyhostd inherited as
// ignored (nohup's SIGHUP) stays ignored across exec. So the worker
// resets both itself before the app runs (pyhost_worker.py).
func TestDirectChildSignalState(t *testing.T) {
	own := sigLines(t, "/proc/self/status")
	sp, err := privdrop.NewSpawner()
	if err != nil {
		t.Fatal(err)
	}
	cred, err := privdrop.Current()
	if err != nil {
		t.Fatal(err)
	}
	var out lines
	p, err := Start(sp, Spec{
		Path: "/bin/cat", Args: []string{"/proc/self/status"}, Dir: "/", Cred: cred,
		Socket: filepath.Join(t.TempDir(), "w.sock"), SocketUID: -1, SocketGID: -1,
		Output: out.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	within(t, p.Exited(), "cat exit")
	child := map[string]string{}
	out.mu.Lock()
	for _, l := range out.got {
		if _, rest, ok := strings.Cut(l, " "); ok {
			if k, v, ok := strings.Cut(rest, ":"); ok {
				child[k] = strings.TrimSpace(v)
			}
		}
	}
	out.mu.Unlock()
	if own["SigBlk"] == "0000000000000000" && child["SigBlk"] != own["SigBlk"] {
		t.Errorf("child's blocked signals %s, want none", child["SigBlk"])
	}
	ownIgn, _ := strconv.ParseUint(own["SigIgn"], 16, 64)
	childIgn, _ := strconv.ParseUint(child["SigIgn"], 16, 64)
	if childIgn&^ownIgn != 0 {
		t.Errorf("child ignores %x, more than the test process (%x)", childIgn, ownIgn)
	}
	t.Logf("test process SigBlk %s SigIgn %s; child SigBlk %s SigIgn %s", own["SigBlk"], own["SigIgn"], child["SigBlk"], child["SigIgn"])
}

func sigLines(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}
