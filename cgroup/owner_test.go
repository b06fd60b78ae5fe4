package cgroup

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// A tree marked by a daemon that has died is an orphan to the trees next
// to it; one marked by a live daemon, or not marked, is not; and the
// orphan opens, kills and removes like any tree.
func TestRealOrphans(t *testing.T) {
	h := realHost(t)
	mine, live, dead, unmarked := realTree(t, h), realTree(t, h), realTree(t, h), realTree(t, h)
	for _, tr := range []*Tree{mine, live} {
		if err := tr.Claim(); err != nil {
			t.Skipf("no trusted xattrs on this cgroupfs: %v", err)
		}
	}
	// A process that has exited marks dead.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	st, err := startTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	mark := strconv.Itoa(cmd.Process.Pid) + " " + st + " " + pidNS()
	if err := unix.Setxattr(dead.Base(), ownerAttr, []byte(mark), 0); err != nil {
		t.Fatal(err)
	}
	_ = unmarked
	got := mine.Orphans()
	name := filepath.Base(dead.Base())
	if !slices.Contains(got, name) {
		t.Errorf("Orphans() = %v, want %s among them", got, name)
	}
	for _, tr := range []*Tree{mine, live, unmarked} {
		if slices.Contains(got, filepath.Base(tr.Base())) {
			t.Errorf("Orphans() = %v: %s is not an orphan", got, tr.Base())
		}
	}
	// The live daemon's pid reused by another process is not the daemon.
	if err := unix.Setxattr(live.Base(), ownerAttr, []byte(strconv.Itoa(os.Getpid())+" 1 "+pidNS()), 0); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(mine.Orphans(), filepath.Base(live.Base())) {
		t.Errorf("a mark whose pid now runs a process started later is not an orphan")
	}
	o, err := mine.OpenOrphan(name)
	if err != nil {
		t.Fatal(err)
	}
	if o.Base() != dead.Base() {
		t.Fatalf("OpenOrphan(%s) opened %s, want %s", name, o.Base(), dead.Base())
	}
	if _, err := mine.OpenOrphan("other"); err == nil {
		t.Errorf("OpenOrphan of a name without the prefix opened it")
	}
}
