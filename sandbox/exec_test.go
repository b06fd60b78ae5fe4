package sandbox

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/sandbox/trampoline"
)

// TestMain is also the trampoline: with no pyhost-sandbox beside it,
// Wrap falls back to re-executing /proc/self/exe, which in a test is
// this test binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == Command {
		err := trampoline.Exec(os.Args[2:])
		fmt.Fprintf(os.Stderr, "trampoline: %v\n", err)
		os.Exit(127)
	}
	os.Exit(m.Run())
}

// nobody is the unprivileged user the root tests run commands as.
var nobody = privdrop.Credential{UID: 65534, GID: 65534, Groups: []uint32{65534}, Username: "nobody", Home: "/nonexistent"}

// needRoot skips unless root may make mount namespaces here.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the trampoline mounts and changes user: needs root")
	}
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if err := cmd.Run(); err != nil {
		t.Skipf("mount namespaces are not available here: %v", err)
	}
}

// worldDir is a new directory under /tmp that nobody may enter.
func worldDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pyh-sandbox-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o755)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// runAs runs sh -c script as cred through p's trampoline and returns
// its output.
func runAs(t *testing.T, p Plan, cred privdrop.Credential, script string) string {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = privdrop.SysProcAttr(cred)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := p.Wrap(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out.String())
	}
	return out.String()
}

// The view a Plan builds, from inside, as nobody: the home bound back
// into the private /tmp and /home covers, a hidden directory empty, a
// kept file in it readable, /proc showing nobody's processes only, and
// the credential exactly nobody's.
func TestExecView(t *testing.T) {
	needRoot(t)
	base := worldDir(t)
	home, hide := filepath.Join(base, "home"), filepath.Join(base, "state")
	for _, d := range []string{home, hide} {
		os.Mkdir(d, 0o755)
	}
	os.WriteFile(filepath.Join(home, "mine.txt"), []byte("mine\n"), 0o644)
	os.WriteFile(filepath.Join(hide, "secret.txt"), []byte("secret\n"), 0o644)
	os.WriteFile(filepath.Join(hide, "script.py"), []byte("kept\n"), 0o644)
	hostMark := filepath.Join(os.TempDir(), fmt.Sprintf("pyh-sandbox-host-%d", os.Getpid()))
	os.WriteFile(hostMark, nil, 0o644)
	defer os.Remove(hostMark)

	p := New(Input{Home: home, Keep: []string{filepath.Join(hide, "script.py")}, Hide: []string{hide}})
	out := runAs(t, p, nobody, fmt.Sprintf(`
echo "id $(id -u) $(id -g) $(id -G)"
echo "home $(ls %[1]s)"
echo "state $(ls %[2]s)"
echo "script $(cat %[2]s/script.py)"
echo "tmp $(ls /tmp)"
touch /tmp/made-inside /dev/shm/pyh-made-inside
echo "owners $(stat -c %%u /proc/[0-9]* | sort -u | tr '\n' ' ')"
echo "mounts $(grep -c . /proc/self/mountinfo)"
`, home, hide))
	t.Logf("inside:\n%s", out)
	for _, want := range []string{
		"id 65534 65534 65534\n",
		"home mine.txt\n",
		"state script.py\n",
		"script kept\n",
		"tmp " + filepath.Base(base) + "\n",
		"owners 65534 \n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in the sandbox's output:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(os.TempDir(), "made-inside")); err == nil {
		os.Remove(filepath.Join(os.TempDir(), "made-inside"))
		t.Error("a file made in the sandbox's /tmp is in the host's")
	}
	if _, err := os.Stat("/dev/shm/pyh-made-inside"); err == nil {
		os.Remove("/dev/shm/pyh-made-inside")
		t.Error("a file made in the sandbox's /dev/shm is in the host's")
	}
	// Nothing of the sandbox's mounts reached the host's namespace.
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if bytes.Contains(mounts, []byte(hide)) || bytes.Contains(mounts, []byte("hidepid")) {
		t.Errorf("the sandbox's mounts leaked into the host's:\n%s", mounts)
	}
}

// The trampoline refuses to become root, and Wrap refuses a command that
// would not change user (mounts would then be the caller's).
func TestWrapRefuses(t *testing.T) {
	cmd := exec.Command("/bin/true")
	if err := New(Input{}).Wrap(cmd); err != ErrNeedsRoot {
		t.Errorf("Wrap of a command with no credential: %v, want ErrNeedsRoot", err)
	}
	if os.Geteuid() != 0 {
		return
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 0, Gid: 0}}
	if err := New(Input{}).Wrap(cmd); err == nil {
		t.Error("Wrap of a command as root: no error")
	}
	if err := trampoline.Exec([]string{`{"uid":1000,"gid":1000,"plan":{"steps":[]}}`, "--", "/bin/true", "true"}); err == nil || !strings.Contains(err.Error(), "job format 0") {
		t.Errorf("Exec of a job of another format: %v", err)
	}
	if err := trampoline.Exec([]string{`{"v":1,"uid":0,"gid":0,"plan":{"steps":[]}}`, "--", "/bin/true", "true"}); err == nil || !strings.Contains(err.Error(), "root") {
		t.Errorf("Exec as root: %v", err)
	}
	// Run in the caller's own namespace, it mounts nothing.
	if err := trampoline.Exec([]string{`{"v":1,"uid":65534,"gid":65534,"plan":{"steps":[{"kind":"tmpfs","path":"/home","mode":493}]}}`, "--", "/bin/true", "true"}); err == nil || !strings.Contains(err.Error(), "mount namespace of its own") {
		t.Errorf("Exec outside a namespace of its own: %v", err)
	}
}

// BenchmarkStart is what the sandbox adds to a start: /bin/echo as
// nobody, started directly and through the trampoline with a Debian-like
// Plan (four covers, a home and a script bound back, /proc). ns/start is
// from Start until the program runs (its first byte arrives), which is
// what a worker's start waits for; ns/op adds its exit, where the kernel
// takes the namespace down.
func BenchmarkStart(b *testing.B) {
	needRoot(b)
	base := worldDir(b)
	home, hide := filepath.Join(base, "home"), filepath.Join(base, "state")
	os.Mkdir(home, 0o755)
	os.Mkdir(hide, 0o755)
	os.WriteFile(filepath.Join(hide, "script.py"), nil, 0o644)
	p := New(Input{Home: home, Keep: []string{filepath.Join(hide, "script.py")},
		Hide: []string{hide, filepath.Join(base, "log"), filepath.Join(base, "lib"), filepath.Join(base, "apps.d")}})
	// The trampoline of "sandboxed" is this test binary (Wrap's
	// fallback); PYHOST_SANDBOX_BENCH_BIN names a pyhostd and
	// PYHOST_SANDBOX_BENCH_SMALL a pyhost-sandbox to measure too.
	// "unshared" is "direct" in a new mount namespace and no trampoline:
	// what the namespace itself costs.
	type benchCase struct {
		name     string
		via      *Trampoline
		unshared bool
	}
	cases := []benchCase{{name: "direct"}, {name: "unshared", unshared: true},
		{name: "sandboxed", via: &Trampoline{Path: self, Args: []string{"sandbox.test", Command}}}}
	if bin := os.Getenv("PYHOST_SANDBOX_BENCH_BIN"); bin != "" {
		cases = append(cases, benchCase{name: "sandboxed-pyhostd", via: &Trampoline{Path: bin, Args: []string{"pyhostd", Command}}})
	}
	if bin := os.Getenv("PYHOST_SANDBOX_BENCH_SMALL"); bin != "" {
		cases = append(cases, benchCase{name: "sandboxed-small", via: &Trampoline{Path: bin, Args: []string{trampoline.Binary}}})
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			var started time.Duration
			for b.Loop() {
				cmd := exec.Command("/bin/echo", "x")
				cmd.SysProcAttr = privdrop.SysProcAttr(nobody)
				if bc.via != nil {
					if err := p.wrap(cmd, *bc.via); err != nil {
						b.Fatal(err)
					}
				}
				if bc.unshared {
					cmd.SysProcAttr.Unshareflags |= syscall.CLONE_NEWNS
				}
				out, err := cmd.StdoutPipe()
				if err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				var buf [1]byte
				if _, err := out.Read(buf[:]); err != nil {
					b.Fatalf("no output: %v", err)
				}
				started += time.Since(t0)
				io.Copy(io.Discard, out)
				if err := cmd.Wait(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(started.Nanoseconds())/float64(b.N), "ns/start")
		})
	}
}
