package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pyhost/pyhost/accesslog"
)

func TestShortLine(t *testing.T) {
	e := accesslog.Entry{
		RemoteAddr: "127.0.0.1", Time: time.Unix(0, 0), Method: "GET", URI: "/hello?x=1", Proto: "HTTP/1.1",
		Status: 200, Bytes: 6, Referer: `a "quoted" ref`, UserAgent: "curl/8.0", Duration: 1234 * time.Microsecond,
		App: "alice/blog", RequestID: "9f86",
	}
	line := string(accesslog.Append(nil, e))
	if got, want := shortLine(line[:len(line)-1]), "GET /hello?x=1 200 1.2ms 6B"; got != want {
		t.Errorf("shortLine(%q) = %q, want %q", line, got, want)
	}
	e.Bytes, e.Duration, e.Status = 0, 40*time.Microsecond, 404
	line = string(accesslog.Append(nil, e))
	if got, want := shortLine(line[:len(line)-1]), "GET /hello?x=1 404 40µs"; got != want {
		t.Errorf("shortLine(%q) = %q, want %q", line, got, want)
	}
	if got := shortLine("not a log line"); got != "not a log line" {
		t.Errorf("an unparsed line: %q", got)
	}
}

// TestFollowLog: lines appended after the start are shown, in order,
// whole even when written in pieces; what was there before is not.
func TestFollowLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	os.WriteFile(path, []byte("old line\n"), 0o644)
	lines := make(chan string, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	from := logEnd(path)
	go func() { defer close(done); followLog(ctx, path, from, true, func(l string) { lines <- l }) }()
	defer func() { cancel(); <-done }()
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	defer f.Close()
	f.WriteString("first\nsec")
	if got := <-lines; got != "first" {
		t.Fatalf("got %q, want first", got)
	}
	f.WriteString("ond\n")
	if got := <-lines; got != "second" {
		t.Fatalf("got %q, want second", got)
	}
	// Emptied (rotated by copytruncate): followed from its start.
	os.Truncate(path, 0)
	f.WriteString("x\n")
	if got := <-lines; got != "x" {
		t.Fatalf("after truncation: got %q, want x", got)
	}
}
