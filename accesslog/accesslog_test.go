package accesslog

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

var when = time.Date(2026, 11, 22, 7, 40, 0, 0, time.FixedZone("", 0))

func TestAppendCombinedPlus(t *testing.T) {
	cases := []struct {
		name string
		e    Entry
		want string
	}{
		{"routed", Entry{RemoteAddr: "127.0.0.1", Time: when, Method: "GET", URI: "/hello?x=1", Proto: "HTTP/1.1",
			Status: 200, Bytes: 6, Referer: "http://a/", UserAgent: "curl/8.0", Duration: 1234 * time.Microsecond,
			App: "alice/blog", RequestID: "9f86-1a"},
			`127.0.0.1 - - [22/Nov/2026:07:40:00 +0000] "GET /hello?x=1 HTTP/1.1" 200 6 "http://a/" "curl/8.0" 0.001234 alice/blog 9f86-1a` + "\n"},
		{"no app, no body, no headers", Entry{RemoteAddr: "::1", Time: when, Method: "GET", URI: "/nope", Proto: "HTTP/1.1",
			Status: 404, RequestID: "9f86-1b"},
			`::1 - - [22/Nov/2026:07:40:00 +0000] "GET /nope HTTP/1.1" 404 - "-" "-" 0.000000 - 9f86-1b` + "\n"},
		{"hostile fields cannot forge a line", Entry{RemoteAddr: "10.0.0.1", Time: when, Method: "GET", URI: "/a\"b\\c", Proto: "HTTP/1.1",
			Status: 200, Bytes: 1, UserAgent: "evil\"\n10.0.0.2 - - [x] \"GET / HTTP/1.1\" 200", Duration: time.Second, App: "a/b", RequestID: "r"},
			`10.0.0.1 - - [22/Nov/2026:07:40:00 +0000] "GET /a\"b\\c HTTP/1.1" 200 1 "-" "evil\"\x0a10.0.0.2 - - [x] \"GET / HTTP/1.1\" 200" 1.000000 a/b r` + "\n"},
	}
	for _, c := range cases {
		if got := string(Append(nil, c.e)); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
		if n := strings.Count(string(Append(nil, c.e)), "\n"); n != 1 {
			t.Errorf("%s: %d newlines", c.name, n)
		}
	}
}

func TestWriterFlushReopenClose(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	w, err := Open(path, func(err error) { t.Errorf("flush: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	w.Log(Entry{RemoteAddr: "1.2.3.4", Time: when, Method: "GET", URI: "/one", Proto: "HTTP/1.1", Status: 200, RequestID: "1"})
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	// logrotate: the file is moved away, the daemon told to reopen.
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	w.Log(Entry{RemoteAddr: "1.2.3.4", Time: when, Method: "GET", URI: "/two", Proto: "HTTP/1.1", Status: 200, RequestID: "2"})
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	w.Log(Entry{RemoteAddr: "1.2.3.4", Time: when, Method: "GET", URI: "/three", Proto: "HTTP/1.1", Status: 200, RequestID: "3"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(rotated)
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), "/one") || !strings.Contains(string(old), "/two") || strings.Contains(string(old), "/three") {
		t.Errorf("rotated file has %q; want /one and /two (buffered before the reopen)", old)
	}
	if !strings.Contains(string(cur), "/three") || strings.Count(string(cur), "\n") != 1 {
		t.Errorf("new file has %q; want only /three", cur)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("new file %v, %v; want mode 0640", fi, err)
	}
}

func TestOpenRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	os.WriteFile(target, nil, 0o600)
	link := filepath.Join(dir, "access.log")
	os.Symlink(target, link)
	if _, err := Open(link, nil); err == nil {
		t.Fatal("opened an access log through a symlink")
	}
}

func BenchmarkAppend(b *testing.B) {
	e := Entry{RemoteAddr: "127.0.0.1", Time: when, Method: "GET", URI: "/hello", Proto: "HTTP/1.1", Status: 200, Bytes: 6,
		UserAgent: "wrk", Duration: time.Millisecond, App: "alice/blog", RequestID: "9f86d081-1a"}
	var buf []byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = Append(buf[:0], e)
	}
}

// flaky fails its first write (a full disk, say), then works.
type flaky struct {
	failed bool
	got    strings.Builder
}

func (f *flaky) Write(b []byte) (int, error) {
	if !f.failed {
		f.failed = true
		return 0, syscall.ENOSPC
	}
	return f.got.Write(b)
}

func (f *flaky) Close() error { return nil }

func TestWriterGoesOnAfterAWriteError(t *testing.T) {
	f := &flaky{}
	w := newWriter("unused", f, nil)
	defer w.Close()
	w.Log(Entry{RemoteAddr: "1.2.3.4", Time: when, Method: "GET", URI: "/lost", Proto: "HTTP/1.1", Status: 200, RequestID: "1"})
	if err := w.Flush(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("first flush: %v, want ENOSPC", err)
	}
	w.Log(Entry{RemoteAddr: "1.2.3.4", Time: when, Method: "GET", URI: "/kept", Proto: "HTTP/1.1", Status: 200, RequestID: "2"})
	if err := w.Flush(); err != nil {
		t.Fatalf("flush after the disk has room again: %v", err)
	}
	if got := f.got.String(); !strings.Contains(got, "/kept") || strings.Contains(got, "/lost") {
		t.Errorf("written %q: want the later line only", got)
	}
}

// A line is valid UTF-8 whatever the client sent: UTF-8 as it is, other
// bytes escaped. The per-app lines travel to the master as JSON, which
// turned each such byte into U+FFFD, so a tenant's access log said
// something else than the global one.
func TestAppendNotUTF8(t *testing.T) {
	e := Entry{RemoteAddr: "10.0.0.1", Time: when, Method: "GET", URI: "/caf\xc3\xa9", Proto: "HTTP/1.1",
		Status: 200, UserAgent: "latin1 caf\xe9 \xff\xfe end", App: "a/b", RequestID: "r"}
	line := Append(nil, e)
	if !utf8.Valid(line) {
		t.Fatalf("not UTF-8: %q", line)
	}
	if want := `"GET /café HTTP/1.1" 200 - "-" "latin1 caf\xe9 \xff\xfe end"`; !strings.Contains(string(line), want) {
		t.Errorf("got %s\nwant it to hold %s", line, want)
	}
	j, err := json.Marshal(string(line))
	if err != nil {
		t.Fatal(err)
	}
	var back string
	if err := json.Unmarshal(j, &back); err != nil || back != string(line) {
		t.Errorf("through JSON: %q, want %q", back, line)
	}
}
