package cgroup

import (
	"context"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkStart is what placing a child in its group adds to starting
// it: CLONE_INTO_CGROUP's descriptor and, on a host with v1 hierarchies,
// the spawner thread's moves into the app's v1 groups and back. Each
// iteration starts /bin/true and waits for it.
//
//	flock /run/lock/pyhost-bench.lock go test -run '^$' -bench Start -benchtime 2000x ./cgroup/
func BenchmarkStart(b *testing.B) {
	tr := realTree(b, realHost(b))
	app, err := tr.App("bench", "app")
	if err != nil {
		b.Fatal(err)
	}
	// The two halves of placement apart.
	v2only, v1only := *app, *app
	v2only.place = nil
	v1only.v2 = ""
	for _, tc := range []struct {
		name  string
		start func(*exec.Cmd) error
	}{
		{"plain", func(c *exec.Cmd) error { return c.Start() }},
		{"group", app.Start},
		{"v2-only", v2only.Start},
		{"v1-only", v1only.Start},
	} {
		b.Run(tc.name, func(b *testing.B) {
			onSpawnThread(func() {
				// Not b.Fatal: this is not the benchmark's goroutine.
				for b.Loop() {
					cmd := exec.Command("/bin/true")
					if err := tc.start(cmd); err != nil {
						b.Error(err)
						return
					}
					if err := cmd.Wait(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkThreadMove is the v1 part alone: the spawner thread into the
// app's groups in every v1 hierarchy and back.
func BenchmarkThreadMove(b *testing.B) {
	tr := realTree(b, realHost(b))
	if len(tr.v1) == 0 {
		b.Skip("no v1 hierarchies on this host")
	}
	app, err := tr.App("bench", "app")
	if err != nil {
		b.Fatal(err)
	}
	onSpawnThread(func() {
		tid := unix.Gettid()
		for b.Loop() {
			if err := app.moveThread(tid); err != nil {
				b.Error(err)
				return
			}
			if err := app.threadHome(tid); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkWorkerLeaf is a forked worker's whole cgroup cost, as the
// supervisor pays it (issue 14): make its leaf and let the app's user
// move into it, the child (born in the app's group) moving itself there
// as pyhost_worker.py --cgroup does, and, once it is reaped, the leaf
// killed (cgroup.kill) and removed. "plain" is the same child with none
// of it.
//
//	flock /run/lock/pyhost-bench.lock go test -run '^$' -bench WorkerLeaf -benchtime 300x ./cgroup/
func BenchmarkWorkerLeaf(b *testing.B) {
	h := realHost(b)
	if h.V2 == nil {
		b.Skip("no cgroup2: no worker leaves")
	}
	tr := realTree(b, h)
	app, err := tr.App("bench", "leaf")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("plain", func(b *testing.B) {
		onSpawnThread(func() {
			for b.Loop() {
				cmd := exec.Command("/bin/sh", "-c", "true")
				if err := app.Start(cmd); err != nil {
					b.Error(err)
					return
				}
				if err := cmd.Wait(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("leaf", func(b *testing.B) {
		onSpawnThread(func() {
			n := 0
			for b.Loop() {
				n++
				leaf, err := app.Worker("w" + strconv.Itoa(n))
				if err == nil {
					err = leaf.LetMove(0, 0)
				}
				if err != nil {
					b.Error(err)
					return
				}
				cmd := exec.Command("/bin/sh", "-c", "echo 0 > "+leaf.Dir()+"/cgroup.procs")
				if err := app.Start(cmd); err != nil {
					b.Error(err)
					return
				}
				if err := cmd.Wait(); err != nil {
					b.Error(err)
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err = leaf.Kill(ctx)
				if err == nil {
					err = leaf.Remove(ctx)
				}
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
