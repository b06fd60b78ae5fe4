package cgroup

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"testing"
	"time"
)

// The proxy's group is base/daemon in the v1 cpu hierarchy alone, carries
// no limits, and goes with the tree; a host without a v1 cpu hierarchy
// has none.
func TestDaemonGroup(t *testing.T) {
	f := newFakeFS(t)
	f.mountV2("cg/unified")
	f.mountV1("cg/cpu", "cpu")
	f.mountV1("cg/memory", "memory")
	tr, err := open(f.kernel(), f.host(ModeHybrid, "/"), TreeOptions{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := tr.Daemon()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.path("cg/cpu/t/daemon")); err != nil {
		t.Fatal(err)
	}
	for _, other := range []string{"cg/unified/t/daemon", "cg/memory/t/daemon"} {
		if _, err := os.Stat(f.path(other)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v", other, err)
		}
	}
	if d.Dir() != f.path("cg/cpu/t/daemon") {
		t.Errorf("Dir %s", d.Dir())
	}
	if err := d.Apply(Limits{MemoryMax: 1 << 30}); err == nil {
		t.Error("limits on the daemon's group")
	}
	if _, err := tr.Daemon(); err != nil {
		t.Errorf("Daemon again: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tr.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.path("cg/cpu/t")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the tree's cpu base after Remove: %v", err)
	}

	v2 := newFakeFS(t)
	v2.mountV2("cg", "cpu", "memory")
	tr2, err := open(v2.kernel(), v2.host(ModeV2, "/"), TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr2.Daemon(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Daemon on pure v2: %v", err)
	}
}
