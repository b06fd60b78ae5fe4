package sandbox

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/sandbox/trampoline"
)

// Where pyhost-sandbox is found, and what is refused: a prefix laid out
// as make build's bin/ or an installed PREFIX/bin + PREFIX/lib/pyhost.
func TestFind(t *testing.T) {
	prefix := t.TempDir()
	exe := filepath.Join(prefix, "bin", "pyhostd")
	beside := filepath.Join(prefix, "bin", trampoline.Binary)
	lib := filepath.Join(prefix, "lib", "pyhost", trampoline.Binary)
	os.MkdirAll(filepath.Dir(lib), 0o755)
	os.MkdirAll(filepath.Dir(exe), 0o755)
	if err := os.WriteFile(exe, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := Candidates(exe); !reflect.DeepEqual(got, []string{beside, lib}) {
		t.Errorf("Candidates(%s) = %v", exe, got)
	}
	put := func(path string, mode os.FileMode) {
		t.Helper()
		os.Remove(path)
		if err := os.WriteFile(path, nil, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, mode) // past the umask
	}
	want := func(what string, path string) {
		t.Helper()
		got, why := Find(exe, nil)
		if got.Path != path {
			t.Errorf("%s: Find chose %s (why: %s), want %s", what, got.Path, why, path)
		}
		if path == self && !reflect.DeepEqual(got.Args, []string{"pyhostd", Command}) ||
			path != self && !reflect.DeepEqual(got.Args, []string{trampoline.Binary}) {
			t.Errorf("%s: Find's argv prefix %v", what, got.Args)
		}
	}
	want("none installed", self)
	put(lib, 0o755)
	want("in PREFIX/lib/pyhost", lib)
	put(beside, 0o755)
	want("beside pyhostd, before PREFIX/lib/pyhost", beside)
	put(beside, 0o775)
	want("beside, but group-writable", lib)
	put(lib, 0o644)
	want("not executable anywhere", self)
	os.Remove(beside)
	os.Mkdir(beside, 0o755)
	want("a directory of that name", self)
	if os.Geteuid() == 0 {
		put(lib, 0o755)
		os.Chown(lib, 12345, 12345)
		want("owned by neither root nor pyhostd's owner", self)
	}
	if got, why := Find("", errors.New("no /proc")); got.Path != self || !strings.Contains(why, "no /proc") {
		t.Errorf("Find without pyhostd's path: %v (%s)", got, why)
	}
}

// The command line a wrapped command runs, through each trampoline: the
// job (in the trampoline's format and version) then PATH and argv as
// they were, and no credential left for the kernel to apply.
func TestWrapArgs(t *testing.T) {
	p := New(Input{Home: "/home/alice"})
	for _, tr := range []Trampoline{
		{Path: "/usr/lib/pyhost/pyhost-sandbox", Args: []string{trampoline.Binary}},
		{Path: self, Args: []string{"pyhostd", Command}},
	} {
		cmd := exec.Command("/usr/bin/python3", "-u", "worker.py")
		cmd.Dir = "/home/alice/blog"
		cmd.SysProcAttr = privdrop.SysProcAttr(privdrop.Credential{UID: 1001, GID: 1002, Groups: []uint32{1002, 27}})
		if err := p.wrap(cmd, tr); err != nil {
			t.Fatal(err)
		}
		n := len(tr.Args)
		if cmd.Path != tr.Path || !reflect.DeepEqual(cmd.Args[:n], tr.Args) ||
			!reflect.DeepEqual(cmd.Args[n+1:], []string{"--", "/usr/bin/python3", "/usr/bin/python3", "-u", "worker.py"}) {
			t.Errorf("through %s: %s %q", tr.Path, cmd.Path, cmd.Args)
			continue
		}
		var j trampoline.Job
		if err := json.Unmarshal([]byte(cmd.Args[n]), &j); err != nil {
			t.Fatal(err)
		}
		if j.Version != trampoline.Version || j.UID != 1001 || j.GID != 1002 || !reflect.DeepEqual(j.Groups, []uint32{1002, 27}) ||
			j.Dir != "/home/alice/blog" || !reflect.DeepEqual(j.Plan.Steps, p.Steps) {
			t.Errorf("through %s: job %+v", tr.Path, j)
		}
		if cmd.SysProcAttr.Credential != nil || cmd.SysProcAttr.Unshareflags&syscall.CLONE_NEWNS == 0 {
			t.Errorf("through %s: SysProcAttr %+v", tr.Path, cmd.SysProcAttr)
		}
	}
}
