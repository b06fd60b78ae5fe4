package cgroup

import (
	"os/exec"
	"testing"

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
