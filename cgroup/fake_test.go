package cgroup

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeFS lays a temporary directory out as cgroupfs: mkdir makes a
// group's control files (those of the controllers its parent hands
// down, on v2; of the hierarchy's controllers, on v1), writes to
// cgroup.subtree_control behave as the kernel's, and every write is
// recorded.
type fakeFS struct {
	t    *testing.T
	root string
	v2   string              // the cgroup2 mount; "" for none
	v1   map[string][]string // v1 mount → its controllers

	mu     sync.Mutex
	writes []string          // "path=value", path below root
	refuse map[string]error  // path → the error a write to it gets
	busy   map[string]int    // dir → how many rmdirs get EBUSY first
	busyAt chan string       // told of each EBUSY, if not nil and not full
	rmdirs []string          // removed dirs, below root, in order
	extra  map[string]string // file name → content, for every new v2 group
}

func newFakeFS(t *testing.T) *fakeFS {
	return &fakeFS{t: t, root: t.TempDir(), v1: map[string][]string{}, refuse: map[string]error{}, busy: map[string]int{}}
}

func (f *fakeFS) path(rel string) string { return filepath.Join(f.root, rel) }

func (f *fakeFS) rel(p string) string {
	r, err := filepath.Rel(f.root, p)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *fakeFS) file(p, content string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// mountV2 makes a cgroup2 mount at rel whose root offers ctrls.
func (f *fakeFS) mountV2(rel string, ctrls ...string) string {
	f.v2 = f.path(rel)
	f.populateV2(f.v2, ctrls)
	return f.v2
}

// groupV2 makes an existing v2 group (one pyhost did not make, like its
// systemd unit) at rel below the mount, offered ctrls.
func (f *fakeFS) groupV2(rel string, ctrls ...string) string {
	d := filepath.Join(f.v2, rel)
	f.populateV2(d, ctrls)
	return d
}

// mountV1 makes a v1 hierarchy for ctrls at rel.
func (f *fakeFS) mountV1(rel string, ctrls ...string) string {
	d := f.path(rel)
	f.v1[d] = ctrls
	f.populateV1(d, ctrls)
	return d
}

func (f *fakeFS) populateV2(d string, ctrls []string) {
	files := map[string]string{
		"cgroup.procs": "", "cgroup.kill": "", "cgroup.freeze": "0",
		"cgroup.events":      "populated 0\nfrozen 0\n",
		"cgroup.controllers": strings.Join(ctrls, " ") + "\n", "cgroup.subtree_control": "\n",
		"cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
	}
	for _, c := range ctrls {
		switch c {
		case "memory":
			files["memory.max"], files["memory.high"], files["memory.current"], files["memory.peak"] = "max\n", "max\n", "0\n", "0\n"
			files["memory.events"] = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"
		case "cpu":
			files["cpu.weight"], files["cpu.max"] = "100\n", "max 100000\n"
			files["cpu.stat"] += "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"
		case "pids":
			files["pids.max"], files["pids.current"] = "max\n", "0\n"
		case "io":
			files["io.weight"] = "default 100\n"
		}
	}
	for k, v := range f.extra {
		files[k] = v
	}
	for name, content := range files {
		f.file(filepath.Join(d, name), content)
	}
}

func (f *fakeFS) populateV1(d string, ctrls []string) {
	files := map[string]string{"cgroup.procs": "", "tasks": ""}
	for _, c := range ctrls {
		switch c {
		case "memory":
			files["memory.limit_in_bytes"], files["memory.soft_limit_in_bytes"] = "9223372036854771712\n", "9223372036854771712\n"
			files["memory.usage_in_bytes"], files["memory.max_usage_in_bytes"] = "0\n", "0\n"
			files["memory.oom_control"] = "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"
		case "cpu":
			files["cpu.shares"], files["cpu.cfs_period_us"], files["cpu.cfs_quota_us"] = "1024\n", "100000\n", "-1\n"
			files["cpu.stat"] = "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n"
		case "cpuacct":
			files["cpuacct.usage"] = "0\n"
		case "pids":
			files["pids.max"], files["pids.current"] = "max\n", "0\n"
		case "freezer":
			files["freezer.state"] = "THAWED\n"
		}
	}
	for name, content := range files {
		f.file(filepath.Join(d, name), content)
	}
}

// fields reads a space-separated control file as a set.
func fields(p string) []string {
	b, _ := os.ReadFile(p)
	return strings.Fields(string(b))
}

func (f *fakeFS) kernel() kernel {
	return kernel{
		mkdir: func(dir string) error {
			if err := os.Mkdir(dir, 0o755); err != nil {
				return err
			}
			parent := filepath.Dir(dir)
			if f.v2 != "" && strings.HasPrefix(dir, f.v2+"/") {
				f.populateV2(dir, fields(filepath.Join(parent, "cgroup.subtree_control")))
				return nil
			}
			for m, ctrls := range f.v1 {
				if strings.HasPrefix(dir, m+"/") {
					f.populateV1(dir, ctrls)
					return nil
				}
			}
			f.t.Fatalf("mkdir %s: in no fake hierarchy", dir)
			return nil
		},
		rmdir: func(dir string) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if _, err := os.Stat(dir); err != nil {
				return err
			}
			if f.busy[dir] > 0 {
				f.busy[dir]--
				select {
				case f.busyAt <- dir:
				default:
				}
				return &fs.PathError{Op: "rmdir", Path: dir, Err: unix.EBUSY}
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if e.IsDir() {
					return &fs.PathError{Op: "rmdir", Path: dir, Err: unix.EBUSY}
				}
			}
			f.rmdirs = append(f.rmdirs, f.rel(dir))
			return os.RemoveAll(dir)
		},
		write: func(p, value string) error {
			f.mu.Lock()
			f.writes = append(f.writes, f.rel(p)+"="+value)
			refused := f.refuse[f.rel(p)]
			f.mu.Unlock()
			if refused != nil {
				return refused
			}
			if filepath.Base(p) == "cgroup.subtree_control" {
				return f.subtreeControl(p, value)
			}
			return writeFile(p, value)
		},
		read: os.ReadFile,
	}
}

// subtreeControl does what the kernel does with "+c" and "-c".
func (f *fakeFS) subtreeControl(p, value string) error {
	offered := fields(filepath.Join(filepath.Dir(p), "cgroup.controllers"))
	on := fields(p)
	for _, tok := range strings.Fields(value) {
		c := tok[1:]
		if !slices.Contains(offered, c) {
			return &fs.PathError{Op: "write", Path: p, Err: unix.ENOENT}
		}
		if tok[0] == '+' && !slices.Contains(on, c) {
			on = append(on, c)
		} else if tok[0] == '-' {
			on = slices.DeleteFunc(on, func(s string) bool { return s == c })
		}
	}
	slices.Sort(on)
	if err := os.WriteFile(p, []byte(strings.Join(on, " ")+"\n"), 0o644); err != nil {
		return err
	}
	// As the kernel does, the children see the change at once: their
	// cgroup.controllers, and the control files of what was switched on.
	ents, _ := os.ReadDir(filepath.Dir(p))
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		child := filepath.Join(filepath.Dir(p), e.Name())
		cur := map[string]bool{}
		others, _ := os.ReadDir(child)
		for _, o := range others {
			cur[o.Name()] = true
		}
		tmp := f.t.TempDir()
		f.populateV2(tmp, on)
		made, _ := os.ReadDir(tmp)
		for _, m := range made {
			if !cur[m.Name()] || m.Name() == "cgroup.controllers" {
				b, _ := os.ReadFile(filepath.Join(tmp, m.Name()))
				if err := os.WriteFile(filepath.Join(child, m.Name()), b, 0o644); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// took returns the writes recorded since the last call.
func (f *fakeFS) took() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.writes
	f.writes = nil
	return w
}

func (f *fakeFS) read(rel string) string {
	f.t.Helper()
	b, err := os.ReadFile(f.path(rel))
	if err != nil {
		f.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// fakeHost is a Host over f's mounts, the daemon in own (v2) and in
// "/" of every v1 hierarchy.
func (f *fakeFS) host(mode Mode, own string) Host {
	h := Host{Mode: mode, Writable: true}
	if f.v2 != "" {
		dir := filepath.Join(f.v2, own)
		h.V2 = &V2Hierarchy{Mount: f.v2, Self: own, Dir: dir, Controllers: fields(filepath.Join(dir, "cgroup.controllers"))}
	}
	var mounts []string
	for m := range f.v1 {
		mounts = append(mounts, m)
	}
	slices.Sort(mounts)
	for _, m := range mounts {
		h.V1 = append(h.V1, V1Hierarchy{Controllers: f.v1[m], Mount: m, Self: "/", Dir: m})
	}
	return h
}

func isErrno(err error, e unix.Errno) bool { return errors.Is(err, e) }
