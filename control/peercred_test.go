package control

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// clientHelperEnv turns the test binary into a client that asks for
// status once: the other end of TestCallerOfAnotherUser.
const clientHelperEnv = "PYHOST_CONTROL_TEST_CLIENT"

func TestMain(m *testing.M) {
	if sock := os.Getenv(clientHelperEnv); sock != "" {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if _, err := NewClient(sock).Status(ctx, ""); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestCallerOfAnotherUser checks that the backend sees the uid, gid and
// pid of a client running as another user, as the kernel reports them,
// whatever the client might claim: the ground U5 stands on.
func TestCallerOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another uid")
	}
	const uid, gid = 65534, 65534 // nobody, nogroup

	// A directory the other user can enter, holding the socket and a copy
	// of this test binary (go test's own directory is private).
	dir, err := os.MkdirTemp("", "pyhost-control-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "client.test")
	copyFile(t, os.Args[0], bin, 0o755)

	b := &fakeBackend{}
	sock := filepath.Join(dir, "control.sock")
	startServerAt(t, b, sock)

	cmd := exec.CommandContext(testContext(t), bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), clientHelperEnv+"="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("client as uid %d: %v\n%s", uid, err, out)
	}
	got, _ := b.lastCaller(t)
	want := Caller{UID: uid, GID: gid, PID: int32(cmd.Process.Pid)}
	if got != want {
		t.Errorf("backend saw caller %+v, want %+v", got, want)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
