package child

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// direct starts commands from the calling thread; the spawner's thread
// is privdrop's business, tested there.
type direct struct{}

func (direct) Start(cmd *exec.Cmd) error { return cmd.Start() }

type refuse struct{}

func (refuse) Start(*exec.Cmd) error { return errors.New("no") }

func sh(t *testing.T, script string) (*Process, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A pipe of our own, not StdoutPipe: Start's reaper calls Wait, which
	// would close that one under our reads.
	out, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	p, err := Start(direct{}, cmd)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	t.Cleanup(func() {
		p.Kill()
		<-p.Exited()
	})
	return p, bufio.NewReader(out)
}

func within(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not within 10s", what)
	}
}

// line reads the next line the script printed ("ready", say).
func line(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	s, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read the child's output: %v", err)
	}
	return strings.TrimSpace(s)
}

func TestWaitSaysHowItEnded(t *testing.T) {
	p, _ := sh(t, "exit 0")
	if err := p.Wait(); err != nil {
		t.Errorf("exit 0: %v", err)
	}
	p, _ = sh(t, "exit 3")
	var ee *ExitError
	if err := p.Wait(); !errors.As(err, &ee) || ee.Code != 3 || err.Error() != "exited with status 3" {
		t.Errorf("exit 3: %v", err)
	}
	if _, err := Start(refuse{}, exec.Command("/bin/true")); err == nil {
		t.Error("a refused start returned a process")
	}
}

func TestStopEndsACooperativeChildWithSigterm(t *testing.T) {
	p, out := sh(t, "trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done")
	line(t, out)
	p.Stop(time.Minute)
	p.Stop(time.Millisecond) // idempotent: the first grace holds
	within(t, p.Exited(), "exit on SIGTERM")
	if err := p.Wait(); err != nil || p.KillSent() {
		t.Errorf("after SIGTERM: %v, kill sent %v", err, p.KillSent())
	}
}

func TestStopKillsTheGroupAfterGrace(t *testing.T) {
	p, out := sh(t, `trap "" TERM; sleep 1000 & echo $!; wait`)
	grandchild, err := strconv.Atoi(line(t, out))
	if err != nil {
		t.Fatal(err)
	}
	exited := pidExited(t, grandchild)
	p.Stop(50 * time.Millisecond)
	within(t, p.Exited(), "SIGKILL after the grace")
	var ee *ExitError
	if err := p.Wait(); !errors.As(err, &ee) || ee.Signal != syscall.SIGKILL || ee.External || !p.KillSent() {
		t.Errorf("after the grace: %v (external %v), kill sent %v", err, ee != nil && ee.External, p.KillSent())
	}
	within(t, exited, "the grandchild in its group killed too")
	if err := p.Signal(syscall.SIGTERM); err == nil {
		t.Error("Signal to a reaped process succeeded")
	}
	p.Kill() // nothing to kill: no panic, no stray signal
	p.Stop(time.Second)
}

// What a child leaves in its group when it exits goes with it.
func TestGroupKilledAfterTheLeaderExits(t *testing.T) {
	p, out := sh(t, "sleep 1000 & echo $!; exit 0")
	grandchild, err := strconv.Atoi(line(t, out))
	if err != nil {
		t.Fatal(err)
	}
	exited := pidExited(t, grandchild)
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	within(t, exited, "the grandchild killed with its group")
}

func TestKillNotSentByUsIsExternal(t *testing.T) {
	p, out := sh(t, "echo ready; while :; do sleep 0.05; done")
	line(t, out)
	syscall.Kill(p.PID(), syscall.SIGKILL) // the OOM killer, say
	var ee *ExitError
	if err := p.Wait(); !errors.As(err, &ee) || !ee.External || !strings.Contains(err.Error(), "not sent by pyhost") {
		t.Errorf("an outside SIGKILL: %v", err)
	}
}

func TestAdoptReportsTheEndItIsGiven(t *testing.T) {
	end := make(chan struct{})
	died := errors.New("its fork server died")
	p := Adopt(99999999, func() (syscall.WaitStatus, error) { <-end; return 0, died })
	select {
	case <-p.Exited():
		t.Fatal("exited before its end")
	default:
	}
	close(end)
	if err := p.Wait(); !errors.Is(err, died) {
		t.Errorf("Wait: %v", err)
	}
	if _, err := p.Status(); !errors.Is(err, died) {
		t.Errorf("Status: %v", err)
	}
}

func TestDescribe(t *testing.T) {
	cases := []struct {
		ws       syscall.WaitStatus
		killSent bool
		want     string
	}{
		{0, false, "exited with status 0"},
		{2 << 8, false, "exited with status 2"},
		{syscall.WaitStatus(syscall.SIGTERM), false, "killed by signal 15 (SIGTERM)"},
		{syscall.WaitStatus(syscall.SIGKILL), true, "killed by signal 9 (SIGKILL)"},
		{syscall.WaitStatus(syscall.SIGKILL), false, "killed by signal 9 (SIGKILL, not sent by pyhost: the kernel's OOM killer or another process)"},
		{syscall.WaitStatus(syscall.SIGSEGV), false, "killed by signal 11 (SIGSEGV)"},
		{syscall.WaitStatus(syscall.SIGUSR2), false, "killed by signal 12 (user defined signal 2)"},
	}
	for _, c := range cases {
		if got := Describe(c.ws, c.killSent).Error(); got != c.want {
			t.Errorf("Describe(%#x, %v) = %q, want %q", int(c.ws), c.killSent, got, c.want)
		}
	}
}

// pidExited is closed once process pid has exited (through a pidfd: no
// polling).
func pidExited(t *testing.T, pid int) <-chan struct{} {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Skipf("no pidfd: %v", err)
	}
	c := make(chan struct{})
	go func() {
		defer close(c)
		defer unix.Close(fd)
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if n, err := unix.Poll(pfd, 20_000); n > 0 || (err != nil && !errors.Is(err, unix.EINTR)) || (err == nil && n == 0) {
				return
			}
		}
	}()
	return c
}
