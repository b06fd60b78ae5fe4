package master

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestPIDFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "pyhostd.pid")
	me := strconv.Itoa(os.Getpid()) + "\n"
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	// Missing directory and file: made.
	if err := writePIDFile(path); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != me {
		t.Errorf("pid file %q, want %q", got, me)
	}

	// A stale file from a crash is overwritten, not believed.
	os.WriteFile(path, []byte("99999999\n"), 0o644)
	if err := writePIDFile(path); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != me {
		t.Errorf("after a stale file: %q, want %q", got, me)
	}

	// A symlink planted at the path is replaced, its target untouched.
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("keep\n"), 0o644)
	os.Remove(path)
	os.Symlink(target, path)
	if err := writePIDFile(path); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep\n" {
		t.Errorf("the symlink's target became %q", b)
	}
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() || read() != me {
		t.Errorf("after a symlink: %v %v", fi, err)
	}
	if m, _ := filepath.Glob(path + ".tmp*"); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}

	// Removed when it is ours; left when another daemon wrote it since.
	if err := removePIDFile(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("our pid file is still there: %v", err)
	}
	os.WriteFile(path, []byte("1\n"), 0o644)
	if err := removePIDFile(path); err != nil {
		t.Fatal(err)
	}
	if read() != "1\n" {
		t.Error("another daemon's pid file was removed")
	}
	if err := writePIDFile(""); err != nil || removePIDFile("") != nil {
		t.Error("no pid_file must be a no-op")
	}
}

// A pid file naming another live process of this same binary is a
// second daemon given the same pid_file: refused, the file kept. Once
// that process is gone, the file is stale and overwritten.
func TestPIDFileOfAnotherDaemon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pyhostd.pid")
	other := exec.Command(os.Args[0], "-test.run=^TestPIDFileHelper$")
	other.Env = append(os.Environ(), "PYHOST_PIDFILE_HELPER=1")
	stdin, err := other.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	theirs := strconv.Itoa(other.Process.Pid) + "\n"
	os.WriteFile(path, []byte(theirs), 0o644)
	err = writePIDFile(path)
	if err == nil || !strings.Contains(err.Error(), "a pyhostd that runs") {
		t.Errorf("pid file of a running daemon of the same binary: %v, want it refused", err)
	}
	if b, _ := os.ReadFile(path); string(b) != theirs {
		t.Errorf("the other daemon's pid file became %q", b)
	}
	stdin.Close()
	other.Wait()
	if err := writePIDFile(path); err != nil {
		t.Fatalf("after the other daemon ended: %v", err)
	}
	// pid 1 runs another program: its pid in the file is overwritten.
	os.WriteFile(path, []byte("1\n"), 0o644)
	if err := writePIDFile(path); err != nil {
		t.Fatalf("a file naming pid 1: %v", err)
	}
}

// TestPIDFileHelper is the other daemon of TestPIDFileOfAnotherDaemon:
// it runs until its stdin closes.
func TestPIDFileHelper(t *testing.T) {
	if os.Getenv("PYHOST_PIDFILE_HELPER") != "1" {
		t.Skip("a helper process")
	}
	io.Copy(io.Discard, os.Stdin)
}
