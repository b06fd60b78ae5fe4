package applog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestLineFormatTailAndReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "blog.log")
	l, err := Open(path, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 200; i++ {
		l.Line(4711, fmt.Sprintf("line %d", i))
	}
	l.Line(0, "worker recycled")
	var got []string
	if err := l.Tail(context.Background(), 3, false, func(s string) error { got = append(got, s); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !strings.HasSuffix(got[0], "[pid 4711] line 198") || !strings.HasSuffix(got[2], "[pyhost] worker recycled") {
		t.Fatalf("tail 3: %q", got)
	}
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[pid 4711\] line 198$`).MatchString(got[0]) {
		t.Errorf("line format %q", got[0])
	}

	// logrotate moves the file away; Reopen starts a new one.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	l.Line(1, "before reopen")
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Line(1, "after reopen")
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "after reopen") || strings.Contains(string(b), "before reopen") {
		t.Errorf("new file holds %q", b)
	}
	old, _ := os.ReadFile(path + ".1")
	if !strings.Contains(string(old), "before reopen") {
		t.Errorf("rotated file lacks the line written before reopen")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("log mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestFollow(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "a.log"), -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Line(1, "old")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lines := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- l.Tail(ctx, 1, true, func(s string) error { lines <- s; return nil })
	}()
	if s := <-lines; !strings.HasSuffix(s, "old") {
		t.Fatalf("first %q", s)
	}
	l.Line(2, "new one")
	select {
	case s := <-lines:
		if !strings.HasSuffix(s, "[pid 2] new one") {
			t.Fatalf("followed %q", s)
		}
	case <-ctx.Done():
		t.Fatal("the new line was not followed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "victim")
	os.WriteFile(target, []byte("precious"), 0o644)
	link := filepath.Join(dir, "app.log")
	os.Symlink(target, link)
	if _, err := Open(link, -1, -1); err == nil {
		t.Fatal("opened a log through a symlink")
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Fatal("the symlink target was written")
	}
}

// collect follows l from its last n lines in the background; the lines
// arrive on the returned channel.
func collect(t *testing.T, l *Log, n int) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	lines := make(chan string, 10000)
	done := make(chan error, 1)
	go func() { done <- l.Tail(ctx, n, true, func(s string) error { lines <- s; return nil }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Tail: %v", err)
		}
	})
	return lines
}

// next is the next followed line, failing the test after a while.
func next(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case s := <-lines:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no line followed within 10s")
		return ""
	}
}

// pyctl logs -f follows across logrotate's rename and the reopen after
// it, like tail -F: lines written to the renamed file before the reopen
// are followed too, and nothing is followed twice.
func TestFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	l, err := Open(path, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Line(1, "before")
	lines := collect(t, l, 1)
	if s := next(t, lines); !strings.HasSuffix(s, "before") {
		t.Fatalf("first %q", s)
	}
	// A rotation as logrotate does it with `create`: the file renamed, an
	// empty one in its place, then the reopen.
	for round := 0; round < 3; round++ {
		if err := os.Rename(path, fmt.Sprintf("%s.%d", path, round)); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		l.Line(1, fmt.Sprintf("renamed %d", round))
		if s := next(t, lines); !strings.HasSuffix(s, fmt.Sprintf("renamed %d", round)) {
			t.Fatalf("round %d: followed %q, want the line written to the renamed file", round, s)
		}
		if err := l.Reopen(); err != nil {
			t.Fatal(err)
		}
		l.Line(1, fmt.Sprintf("reopened %d", round))
		if s := next(t, lines); !strings.HasSuffix(s, fmt.Sprintf("reopened %d", round)) {
			t.Fatalf("round %d: followed %q, want the line written to the new file", round, s)
		}
	}
}

// Lines written while the log is rotated again and again are each
// followed once, in order.
func TestFollowUnderRotationLosesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.log")
	l, err := Open(path, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Line(1, "start")
	lines := collect(t, l, 1)
	next(t, lines) // following from here
	const total = 2000
	written := make(chan struct{})
	go func() {
		defer close(written)
		for i := 0; i < total; i++ {
			l.Line(1, fmt.Sprintf("n=%d", i))
		}
	}()
	for r := 0; ; r++ {
		select {
		case <-written:
		default:
			os.Rename(path, fmt.Sprintf("%s.%d", path, r))
			if err := l.Reopen(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		break
	}
	for i := 0; i < total; i++ {
		if s, want := next(t, lines), fmt.Sprintf("[pid 1] n=%d", i); !strings.HasSuffix(s, want) {
			t.Fatalf("line %d: followed %q, want ...%s", i, s, want)
		}
	}
}

// copytruncate empties the file under the follower: it starts over.
func TestFollowTruncated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	l, err := Open(path, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Line(1, "a fairly long line, longer than the one after the truncation")
	lines := collect(t, l, 1)
	next(t, lines)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	l.Line(1, "short")
	if s := next(t, lines); !strings.HasSuffix(s, "[pid 1] short") {
		t.Fatalf("after truncation followed %q", s)
	}
}

// Between logrotate's rename and the reopen, `pyctl logs` shows the
// file lines still go to, not "no such file".
func TestTailBeforeReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	l, err := Open(path, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Line(1, "still here")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := l.Tail(context.Background(), 5, false, func(s string) error { got = append(got, s); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !strings.HasSuffix(got[0], "still here") {
		t.Errorf("tail before reopen: %q", got)
	}
}
