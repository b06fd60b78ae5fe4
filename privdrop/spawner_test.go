package privdrop

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// threads is this process's OS thread count, as the kernel has it.
func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads: line in /proc/self/status")
	return 0
}

// Every rescan of system mode asks for a spawner (pyhostd's scanApps):
// each used to lock a new OS thread for ever, so 20 rescans took the
// daemon from 6 to 24 threads (issue 13). One spawner serves the process.
func TestSpawnerThreadsStableAcrossUses(t *testing.T) {
	use := func() {
		sp, err := NewSpawner()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = SysProcAttr(Credential{UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())})
		if err := sp.Start(cmd); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	use() // the spawner thread, and the runtime's threads for exec and wait
	before := threads(t)
	for range 100 {
		use()
	}
	after := threads(t)
	// A few threads of slack for the runtime (a blocking wait4 may take
	// one); a leak shows as one per use.
	if after > before+10 {
		t.Errorf("threads: %d before 100 spawner uses, %d after; want stable", before, after)
	}
	t.Logf("threads: %d before 100 spawner uses, %d after", before, after)
}

func TestNewSpawnerIsShared(t *testing.T) {
	a, err := NewSpawner()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSpawner()
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("two NewSpawner calls gave two spawners (two locked threads)")
	}
}

// The spawner never forks from the process's main thread, even when the
// goroutine it starts lands there (the main goroutine parked): cgroup's
// v1 placement moves the forking thread into an app's groups, and the
// main thread carries the daemon's memory accounting. Seen in pyhostd
// run, whose first spawner is made from the main goroutine.
func TestSpawnerOffTheMainThread(t *testing.T) {
	for i := 0; i < 20; i++ {
		s := &Spawner{reqs: make(chan spawnReq)}
		ready := make(chan error)
		go s.loop(ready, nil)
		if err := <-ready; err != nil {
			t.Fatal(err)
		}
		var tid int
		cmd := exec.Command("/bin/true")
		err := s.StartWith(cmd, func(cmd *exec.Cmd) error {
			tid = unix.Gettid()
			return cmd.Start()
		})
		if err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		close(s.reqs) // the loop returns, locked: its thread ends
		if tid == os.Getpid() {
			t.Fatalf("spawner %d forked from the main thread", i)
		}
	}
}
