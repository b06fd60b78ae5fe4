package privdrop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestAccessBatchFraming(t *testing.T) {
	sets := []map[string]uint32{
		{"/b": Read, "/a": Execute | Trusted},
		{},
		{"/with space/and:colon\n": Read},
	}
	got, err := ReadAccessBatch(bytes.NewReader(EncodeAccessBatch(sets)))
	if err != nil {
		t.Fatal(err)
	}
	want := [][]PathBits{
		{{"/a", Execute | Trusted}, {"/b", Read}},
		nil,
		{{"/with space/and:colon\n", Read}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read back %v, want %v", got, want)
	}
	if _, err := ReadAccessBatch(strings.NewReader("4\x00/a")); err == nil {
		t.Error("a truncated batch was read")
	}
	if _, err := ReadAccessBatch(strings.NewReader("x\x00/a\x00\x00")); err == nil {
		t.Error("bad bits were read")
	}

	var out bytes.Buffer
	for _, m := range []string{"", "cannot read /b", "a\x00b"} {
		WriteAccessAnswer(&out, m)
	}
	answers, err := ReadAccessAnswers(&out, 3)
	if err != nil || !reflect.DeepEqual(answers, []string{"", "cannot read /b", "ab"}) {
		t.Errorf("answers %q, %v", answers, err)
	}
	for _, bad := range []string{"\x00", "\x00\x00\x00\x00", "\x00\x00x"} {
		if _, err := ReadAccessAnswers(strings.NewReader(bad), 3); err == nil {
			t.Errorf("%q taken for 3 answers", bad)
		}
	}
}

// fakeHelper writes a shell script standing in for `pyhostd __access`
// and returns its path and a credential of the current user to run it.
func fakeHelper(t *testing.T, script string) (string, Credential) {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	self := filepath.Join(dir, "helper")
	if err := os.WriteFile(self, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	cred, err := Lookup(u.Username)
	if err != nil {
		t.Fatal(err)
	}
	return self, cred
}

func spawner(t *testing.T) *Spawner {
	sp, err := NewSpawner()
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// One helper answers every set, each on its own.
func TestCheckManyAsUserPerSetAnswers(t *testing.T) {
	// Counts its runs in a file next to it; answers the second set only
	// with a failure.
	self, cred := fakeHelper(t, `echo run >>"$(dirname "$0")/runs"
[ "$2" = --batch ] || exit 3
cat >/dev/null
printf '\000cannot read /two: no\000\000'
`)
	wants := []map[string]uint32{{"/one": Read}, {"/two": Read}, nil, {"/three": Read}}
	errs := CheckManyAsUser(spawner(t), self, cred, wants)
	if errs[0] != nil || errs[2] != nil || errs[3] != nil {
		t.Errorf("good sets failed: %v", errs)
	}
	if want := "as user " + cred.Username + ": cannot read /two: no"; errs[1] == nil || errs[1].Error() != want {
		t.Errorf("second set: %v, want %q", errs[1], want)
	}
	runs, _ := os.ReadFile(filepath.Join(filepath.Dir(self), "runs"))
	if n := strings.Count(string(runs), "run"); n != 1 {
		t.Errorf("%d helper runs for one user, want 1", n)
	}
}

// A helper that fails as a whole (here it dies on the batch; alone, it
// refuses only paths with "bad" in them) costs no set its own answer:
// each is asked again alone.
func TestCheckManyAsUserBatchFailureFallsBack(t *testing.T) {
	for name, batch := range map[string]string{
		"dies":          "exit 1",
		"short answer":  `printf '\000'`,
		"garbage after": `printf '\000\000\000junk'`,
	} {
		t.Run(name, func(t *testing.T) {
			self, cred := fakeHelper(t, `if [ "$2" = --batch ]; then cat >/dev/null; `+batch+`; exit; fi
case "$*" in *bad*) echo "pyhostd: cannot read $2" >&2; exit 1;; esac
`)
			wants := []map[string]uint32{{"/good": Read}, {"/bad": Read}, {"/good2": Read}}
			errs := CheckManyAsUser(spawner(t), self, cred, wants)
			if errs[0] != nil || errs[2] != nil {
				t.Errorf("good sets failed: %v", errs)
			}
			if errs[1] == nil || !strings.Contains(errs[1].Error(), "/bad") {
				t.Errorf("bad set: %v", errs[1])
			}
		})
	}
}

// A user whose helper cannot run at all gets an error for every set,
// never a pass.
func TestCheckManyAsUserHelperCannotRun(t *testing.T) {
	_, cred := fakeHelper(t, "")
	self := filepath.Join(t.TempDir(), "missing")
	errs := CheckManyAsUser(spawner(t), self, cred, []map[string]uint32{{"/a": Read}, {"/b": Read}})
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), cred.Username) {
			t.Errorf("set %d: %v, want a failure naming the user", i, err)
		}
	}
}

// A NUL in a path is that set's own failure, and does not reach the
// helper's framing.
func TestCheckManyAsUserNULPath(t *testing.T) {
	self, cred := fakeHelper(t, `[ "$2" = --batch ] || exit 3
tr -d '\000' | grep -q evil && exit 4
printf '\000\000'
`)
	wants := []map[string]uint32{{"/a": Read}, {"/x\x00evil": Read}, {"/b": Read}}
	errs := CheckManyAsUser(spawner(t), self, cred, wants)
	if errs[0] != nil || errs[2] != nil {
		t.Errorf("good sets failed: %v", errs)
	}
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "NUL") {
		t.Errorf("NUL set: %v", errs[1])
	}
}

// A helper that hangs (as on a path of a hung mount; here it sleeps) is
// killed when the caller's context ends, and reaped before the call
// returns: no process is left, and no set is asked again.
func TestCheckManyAsUserContextKillsHelper(t *testing.T) {
	for name, wants := range map[string][]map[string]uint32{
		"batch": {{"/a": Read}, {"/b": Read}},
		"alone": {{"/a": Read}},
	} {
		t.Run(name, func(t *testing.T) {
			// The helper says its pid through a FIFO, which the test
			// reads before it cancels: the pid is known, and the
			// helper is running, when the context ends.
			self, cred := fakeHelper(t, `echo run >>"$(dirname "$0")/runs"
echo $$ >"$(dirname "$0")/pid"
exec sleep 60
`)
			fifo := filepath.Join(filepath.Dir(self), "pid")
			if err := syscall.Mkfifo(fifo, 0o666); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pids := make(chan int, 1)
			go func() {
				defer cancel()
				data, err := os.ReadFile(fifo)
				if err != nil {
					t.Error(err)
				}
				pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
				pids <- pid
			}()
			done := make(chan []error, 1)
			go func() { done <- CheckManyAsUserContext(ctx, spawner(t), self, cred, wants) }()
			var errs []error
			select {
			case errs = <-done:
			case <-time.After(30 * time.Second): // the helper sleeps 60 s
				t.Fatal("the call did not return when its context ended")
			}
			pid := <-pids
			if pid <= 0 {
				t.Fatalf("helper pid %d", pid)
			}
			for i, err := range errs {
				if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), cred.Username) {
					t.Errorf("set %d: %v, want the user's context.Canceled", i, err)
				}
			}
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !os.IsNotExist(err) {
				stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
				t.Errorf("helper %d is still there (%v): %s", pid, err, stat)
			}
			runs, _ := os.ReadFile(filepath.Join(filepath.Dir(self), "runs"))
			if n := strings.Count(string(runs), "run"); n != 1 {
				t.Errorf("%d helper runs, want 1 (none asked again after the cancel)", n)
			}
		})
	}
}
