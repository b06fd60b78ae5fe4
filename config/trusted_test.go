package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// watchOpens reports, through the returned function, whether anything
// opened path since the call: inotify queues IN_OPEN when the open
// happens, so nothing needs to wait.
func watchOpens(t *testing.T, path string) func() bool {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_OPEN); err != nil {
		t.Fatal(err)
	}
	return func() bool {
		buf := make([]byte, 4096)
		n, err := unix.Read(fd, buf)
		return err == nil && n > 0
	}
}

// A tenant's app file that is a FIFO, a device or a link to one is
// refused from its lstat alone: root never opens it (opening a device
// can act, opening a FIFO can block). Issue 9, review item 4.
func TestReadTrustedOpensNoSpecialFile(t *testing.T) {
	dir := t.TempDir()
	uid := uint32(os.Getuid())
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	opened := watchOpens(t, fifo)
	// The watch sees an open: the check of the check.
	if fd, err := unix.Open(fifo, unix.O_RDONLY|unix.O_NONBLOCK, 0); err != nil {
		t.Fatal(err)
	} else {
		unix.Close(fd)
	}
	if !opened() {
		t.Fatal("inotify did not report an open of the FIFO")
	}

	link := filepath.Join(dir, "app.toml")
	os.Symlink("fifo", link)
	devLink := filepath.Join(dir, "ptmx.toml")
	os.Symlink("/dev/null", devLink)
	for _, c := range []struct{ path, real string }{{fifo, fifo}, {link, fifo}, {devLink, "/dev/null"}} {
		_, err := readTrusted(c.path, uid, dir)
		if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), c.real+" is not a regular file") {
			t.Errorf("%s: %v, want it refused as not a regular file", c.path, err)
		}
	}
	if opened() {
		t.Error("readTrusted opened the FIFO before refusing it")
	}
}

func TestReadTrustedReadsTheOwnersFile(t *testing.T) {
	dir := t.TempDir()
	uid := uint32(os.Getuid())
	file := filepath.Join(dir, "blog.toml")
	os.WriteFile(file, []byte("app = \"x\"\n"), 0o644)
	os.Symlink("blog.toml", filepath.Join(dir, "link.toml"))
	for _, p := range []string{file, filepath.Join(dir, "link.toml")} {
		if b, err := readTrusted(p, uid, dir); err != nil || string(b) != "app = \"x\"\n" {
			t.Errorf("%s: %q, %v", p, b, err)
		}
	}
	if _, err := readTrusted(file, uid+1, dir); !errors.Is(err, ErrUntrusted) {
		t.Errorf("another uid's file: %v", err)
	}
}

// What is read is the inode that was checked: a name swapped between the
// check and the open (another file renamed over it, or a symlink) is
// refused.
func TestOpenCheckedRefusesAnotherInode(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "blog.toml")
	os.WriteFile(file, []byte("checked\n"), 0o644)
	fi, err := os.Lstat(file)
	if err != nil {
		t.Fatal(err)
	}
	f, err := openChecked(file, fi)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()

	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte("swapped\n"), 0o644)
	if err := os.Rename(other, file); err != nil {
		t.Fatal(err)
	}
	if _, err := openChecked(file, fi); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "changed while it was being checked") {
		t.Errorf("a file renamed over it: %v", err)
	}

	// A symlink now, to the very file checked: O_NOFOLLOW sees the link.
	kept := filepath.Join(dir, "kept")
	os.WriteFile(kept, []byte("checked\n"), 0o644)
	fi, _ = os.Lstat(kept)
	link := filepath.Join(dir, "link")
	os.Symlink(kept, link)
	if _, err := openChecked(link, fi); !errors.Is(err, ErrUntrusted) {
		t.Errorf("a symlink to the checked file: %v", err)
	}

	// A FIFO in its place is not waited on.
	fifo := filepath.Join(dir, "fifo")
	unix.Mkfifo(fifo, 0o644)
	if _, err := openChecked(fifo, fi); !errors.Is(err, ErrUntrusted) {
		t.Errorf("a FIFO: %v", err)
	}
}
