package accesslog

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// collector gathers what SetPerApp hands on, by app.
type collector struct {
	mu    sync.Mutex
	lines map[string][]string
	calls int
}

func (c *collector) send(app string, lines []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.lines == nil {
		c.lines = map[string][]string{}
	}
	for _, l := range strings.SplitAfter(string(lines), "\n") {
		if l != "" {
			c.lines[app] = append(c.lines[app], l)
		}
	}
}

func entry(app, uri string) Entry {
	return Entry{RemoteAddr: "127.0.0.1", Time: time.Unix(0, 0).UTC(), Method: "GET", URI: uri, Proto: "HTTP/1.1", Status: 200, App: app}
}

// Every line of an app reaches its batch, whole and in order, and the
// global file still has them all; a request no app took is in the file
// only.
func TestPerAppLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	w, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var c collector
	w.SetPerApp(c.send)
	const n = 100
	for i := 0; i < n; i++ {
		w.Log(entry("alice/blog", "/a"))
		w.Log(entry("bob/shop", "/b"))
		if i == n/2 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	w.Log(entry("", "/nobody"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"alice/blog": "/a", "bob/shop": "/b"}
	for app, uri := range want {
		got := c.lines[app]
		if len(got) != n {
			t.Errorf("%s: %d lines, want %d", app, len(got), n)
		}
		for _, l := range got {
			if !strings.Contains(l, " "+uri+" ") || !strings.Contains(l, " "+app+" ") || !strings.HasSuffix(l, "\n") {
				t.Errorf("%s got line %q", app, l)
			}
		}
	}
	if _, ok := c.lines[""]; ok {
		t.Error("a request no app took was handed on")
	}
	b, _ := os.ReadFile(path)
	if got := strings.Count(string(b), "\n"); got != 2*n+1 {
		t.Errorf("the global file has %d lines, want %d", got, 2*n+1)
	}
}

// With no global file, the per-app lines still go out, and Reopen has
// nothing to do.
func TestPerAppOnly(t *testing.T) {
	w := NewPerAppOnly()
	var c collector
	w.SetPerApp(c.send)
	w.Log(entry("alice/blog", "/x"))
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if len(c.lines["alice/blog"]) != 1 {
		t.Errorf("lines: %v", c.lines)
	}
}

// Many long lines of one app between two flushes are handed on in
// batches of at most maxPerAppBatch, each of whole lines, none lost: the
// proxy sends each batch as one channel message, and one over the
// channel's limit was dropped whole (the Writer once handed on 200 ms of
// lines, however many, in one call).
func TestPerAppBatchesBounded(t *testing.T) {
	w := NewPerAppOnly()
	var mu sync.Mutex
	var batches [][]byte
	w.SetPerApp(func(app string, lines []byte) {
		mu.Lock()
		defer mu.Unlock()
		batches = append(batches, append([]byte(nil), lines...))
	})
	ua := strings.Repeat("<", 60<<10) // a 64 KiB head's worth
	const n = 50                      // 3 MiB of lines
	for i := 0; i < n; i++ {
		e := entry("alice/blog", "/"+strconv.Itoa(i))
		e.UserAgent = ua
		w.Log(e)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(batches) < 2 {
		t.Fatalf("%d batch(es) for %d lines of 60 KiB, want them split", len(batches), n)
	}
	var all []string
	for _, b := range batches {
		if len(b) > maxPerAppBatch {
			t.Errorf("a batch of %d bytes, over %d", len(b), maxPerAppBatch)
		}
		if len(b) == 0 || b[len(b)-1] != '\n' {
			t.Fatalf("a batch does not end with a whole line")
		}
		all = append(all, strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")...)
	}
	if len(all) != n {
		t.Fatalf("%d lines handed on, want %d", len(all), n)
	}
	for i, l := range all {
		if !strings.Contains(l, `"GET /`+strconv.Itoa(i)+` HTTP/1.1"`) {
			t.Fatalf("line %d out of order: %.60s", i, l)
		}
	}
}

func TestBatchEnd(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want int
	}{
		{"a\nb\n", 10, 4},
		{"a\nb\n", 3, 2},
		{"aaaa\nb\n", 3, 5}, // one line longer than max goes alone
		{"aaaa", 3, 4},
	} {
		if got := batchEnd([]byte(c.in), c.max); got != c.want {
			t.Errorf("batchEnd(%q, %d) = %d, want %d", c.in, c.max, got, c.want)
		}
	}
}
