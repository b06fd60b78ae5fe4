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
