package cgroup

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"testing"
	"time"
)

// RemoveUser removes the user's group, in every hierarchy, with the
// user's last app, and not before; the user's totals are written again
// when a later app makes the group anew.
func TestRemoveUser(t *testing.T) {
	f := newFakeFS(t)
	f.mountV2("cg/unified")
	f.mountV1("cg/memory", "memory")
	tr, err := open(f.kernel(), f.host(ModeHybrid, "/"), TreeOptions{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	tr.SetUserLimits(func(string) Limits { return Limits{MemoryMax: 512 << 20} })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	blog, err := tr.App("alice", "blog")
	if err != nil {
		t.Fatal(err)
	}
	shop, err := tr.App("alice", "shop")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := tr.App("bob", "x")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []*Group{blog, bob} {
		if err := g.SettleUser(); err != nil {
			t.Fatal(err)
		}
	}
	users := []string{"cg/unified/t/apps/alice", "cg/memory/t/apps/alice"}
	exists := func(rel string) bool {
		_, err := os.Stat(f.path(rel))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		return err == nil
	}

	if err := blog.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if gone, err := blog.RemoveUser(ctx); gone || err != nil {
		t.Fatalf("RemoveUser with shop left: %v, %v", gone, err)
	}
	for _, d := range users {
		if !exists(d) {
			t.Errorf("%s removed while alice still has an app", d)
		}
	}
	if err := shop.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	f.busy[f.path("cg/memory/t/apps/alice")] = 2 // tasks still exiting
	if gone, err := shop.RemoveUser(ctx); !gone || err != nil {
		t.Fatalf("RemoveUser of alice's last app: %v, %v", gone, err)
	}
	for _, d := range users {
		if exists(d) {
			t.Errorf("%s is still there", d)
		}
	}
	if !exists("cg/memory/t/apps/bob") || !exists("cg/unified/t/apps/bob/x") {
		t.Error("bob's groups went with alice's")
	}
	if gone, err := shop.RemoveUser(ctx); !gone || err != nil {
		t.Errorf("RemoveUser again: %v, %v", gone, err)
	}
	// Not for a group that is not an app's.
	if w, err := bob.Worker("w1"); err != nil {
		t.Fatal(err)
	} else if gone, err := w.RemoveUser(ctx); gone || err != nil {
		t.Errorf("RemoveUser of a worker leaf: %v, %v", gone, err)
	}

	// A new app of alice's: her group is made anew, and her totals are
	// written there again.
	again, err := tr.App("alice", "new")
	if err != nil {
		t.Fatal(err)
	}
	f.took()
	if err := again.SettleUser(); err != nil {
		t.Fatal(err)
	}
	if got := f.read("cg/memory/t/apps/alice/memory.limit_in_bytes"); got != "536870912" {
		t.Errorf("alice's limit in her new group: %s", got)
	}
}

// MoveOut moves the processes the caller keeps out of a worker's leaf
// into the app's group, and leaves the rest for the kill.
func TestMoveOut(t *testing.T) {
	f := newFakeFS(t)
	f.mountV2("cg/unified")
	f.mountV1("cg/memory", "memory")
	tr, err := open(f.kernel(), f.host(ModeHybrid, "/"), TreeOptions{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	app, err := tr.App("alice", "blog")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := app.Worker("w1")
	if err != nil {
		t.Fatal(err)
	}
	f.file(f.path("cg/unified/t/apps/alice/blog/w1/cgroup.procs"), "40\n41\n42\n")
	f.took()
	moved, err := leaf.MoveOut(app, func(pid int) bool { return pid == 41 })
	if err != nil || len(moved) != 1 || moved[0] != 41 {
		t.Fatalf("MoveOut: %v, %v", moved, err)
	}
	p := "/t/apps/alice/blog/"
	sameWrites(t, "MoveOut", f.took(), []string{"cg/unified" + p + "cgroup.procs=41", "cg/memory" + p + "cgroup.procs=41"})
	// Only from a leaf, only to an app's group.
	if moved, err := app.MoveOut(app, func(int) bool { return true }); moved != nil || err != nil {
		t.Errorf("MoveOut of an app's group: %v, %v", moved, err)
	}
	if moved, err := leaf.MoveOut(leaf, func(int) bool { return true }); moved != nil || err != nil {
		t.Errorf("MoveOut into a leaf: %v, %v", moved, err)
	}
}

// Stats has the memory limit the kernel enforces; MemoryLimits tells it
// from the one asked for.
func TestMemoryLimitInForce(t *testing.T) {
	f := newFakeFS(t)
	f.mountV2("cg/unified")
	f.mountV1("cg/memory", "memory")
	tr, err := open(f.kernel(), f.host(ModeHybrid, "/"), TreeOptions{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	app, err := tr.App("alice", "blog")
	if err != nil {
		t.Fatal(err)
	}
	st, err := app.Stats()
	if err != nil || st.Have&HaveMemoryMax == 0 || st.MemoryMax != 0 {
		t.Fatalf("no limit: %+v, %v", st, err)
	}
	f.file(f.path("cg/memory/t/apps/alice/blog/memory.limit_in_bytes"), "209715200\n")
	if st, err = app.Stats(); err != nil || st.MemoryMax != 200<<20 {
		t.Fatalf("200MiB: %+v, %v", st, err)
	}
	v2 := newFakeFS(t)
	v2.mountV2("cg", "memory")
	tr2, err := open(v2.kernel(), v2.host(ModeV2, "/"), TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	app2, err := tr2.App("alice", "blog")
	if err != nil {
		t.Fatal(err)
	}
	if err := app2.Apply(Limits{MemoryMax: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	if st2, err := app2.Stats(); err != nil || st2.Have&HaveMemoryMax == 0 || st2.MemoryMax != 64<<20 {
		t.Fatalf("v2 64MiB: %+v, %v", st2, err)
	}

	page := int64(os.Getpagesize())
	for _, c := range []struct {
		asked, kernel    int64
		have             bool
		inForce, pending int64
	}{
		{200 << 20, 200 << 20, true, 200 << 20, 0},
		{40 << 20, 200 << 20, true, 200 << 20, 40 << 20}, // refused for now
		{40 << 20, 0, true, 0, 40 << 20},                 // a first limit refused
		{0, 0, true, 0, 0},
		{100000000, 100000000 / page * page, true, 100000000 / page * page, 0}, // in whole pages
		{40 << 20, 0, false, 40 << 20, 0},                                      // the host does not say
	} {
		s := Stats{MemoryMax: c.kernel}
		if c.have {
			s.Have = HaveMemoryMax
		}
		if in, p := MemoryLimits(c.asked, s); in != c.inForce || p != c.pending {
			t.Errorf("MemoryLimits(%d, kernel %d, %v) = %d, %d; want %d, %d", c.asked, c.kernel, c.have, in, p, c.inForce, c.pending)
		}
	}
}
