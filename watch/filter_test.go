package watch

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestFilter(t *testing.T) {
	f, err := newFilter(
		[]string{"*.html", "templates/**/*.txt", "*.swp", "/settings.toml", ".env"},
		[]string{"migrations", "*_test.py", "static/**", "build/*.py"},
	)
	if err != nil {
		t.Fatal(err)
	}
	files := []struct {
		rel  string
		want bool
	}{
		{"app.py", true},
		{"pkg/sub/views.py", true},
		{"notes.txt", false},
		{"a.html", true},
		{"deep/er/a.html", true},
		{"templates/a.txt", true}, // ** matches no directory
		{"templates/x/y/a.txt", true},
		{"other/templates/a.txt", false}, // a glob with / is anchored at the root
		{"migrations/0001.py", false},    // an excluded name excludes a directory's files too
		{"app_test.py", false},
		{"pkg/app_test.py", false},
		{"static/x/y.py", false},
		{"build/x.py", false},
		{"build/sub/x.py", true},
		{"settings.toml", true},
		{"sub/settings.toml", false}, // "/" anchors
		// temporary files: dropped unless asked for by name
		{"app.py~", false},
		{".app.py.swo", false},
		{".#app.py", false},
		{"#app.py#", false},
		{"4913", false},
		{"app.py___jb_tmp___", false},
		{".app.py.swp", true}, // "*.swp" is included explicitly
		{".env", true},        // so is ".env", a hidden file
		{".other", false},
	}
	for _, c := range files {
		// A file under an excluded directory is never seen (the
		// directory is not walked); judge it as the walker would.
		got := f.wantFile(c.rel)
		for d := parentOf(c.rel); d != "."; d = parentOf(d) {
			if f.skipDir(d) {
				got = false
			}
		}
		if got != c.want {
			t.Errorf("wantFile(%q) = %v, want %v", c.rel, got, c.want)
		}
	}

	dirs := []struct {
		rel  string
		skip bool
	}{
		{"pkg", false},
		{"__pycache__", true},
		{"pkg/__pycache__", true},
		{".git", true},
		{".venv", true},
		{"venv", true},
		{"node_modules", true},
		{"a/.hidden", true},
		{"migrations", true},
		{"static", true}, // "static/**" matches static itself: ** may be no directory
		{"build", false},
		{"templates", false},
	}
	for _, c := range dirs {
		if got := f.skipDir(c.rel); got != c.skip {
			t.Errorf("skipDir(%q) = %v, want %v", c.rel, got, c.skip)
		}
	}

	// Without user globs: only Python sources.
	plain, _ := newFilter(nil, nil)
	for rel, want := range map[string]bool{"a.py": true, "a.html": false, "x/.a.py": false, "a.pyc": false} {
		if got := plain.wantFile(rel); got != want {
			t.Errorf("default wantFile(%q) = %v, want %v", rel, got, want)
		}
	}
	// "*" is not an explicit request for swap files.
	star, _ := newFilter([]string{"*"}, nil)
	for rel, want := range map[string]bool{"a.css": true, ".a.py.swp": false, "a.py~": false, "4913": false} {
		if got := star.wantFile(rel); got != want {
			t.Errorf(`"*" wantFile(%q) = %v, want %v`, rel, got, want)
		}
	}
}

func parentOf(rel string) string {
	i := strings.LastIndex(rel, "/")
	if i < 0 {
		return "."
	}
	return rel[:i]
}

func TestPatternErrors(t *testing.T) {
	for _, g := range []string{"", "  ", "[a", "a//b", "../x", "a/./b"} {
		if _, err := compilePattern(g); err == nil {
			t.Errorf("compilePattern(%q): no error", g)
		}
	}
	for _, g := range []string{"*.py", "./x.py", "a/**/b", "/x", "dir/"} {
		if _, err := compilePattern(g); err != nil {
			t.Errorf("compilePattern(%q): %v", g, err)
		}
	}
}

func TestDebouncer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	d := debouncer{quiet: 200 * ms, max: 2 * time.Second}
	if _, ok := d.due(); ok {
		t.Fatal("due with nothing pending")
	}
	// An editor's save: three events within 5 ms, flushed 200 ms after
	// the last.
	d.event(t0)
	d.event(t0.Add(2 * ms))
	d.event(t0.Add(5 * ms))
	if at, _ := d.due(); !at.Equal(t0.Add(205 * ms)) {
		t.Errorf("save: due %v after start, want 205ms", at.Sub(t0))
	}
	d.reset()
	if _, ok := d.due(); ok {
		t.Fatal("due after reset")
	}
	// A stream with an event every 100 ms never pauses for 200 ms: it is
	// flushed 2 s after its first event all the same.
	start := t0.Add(time.Minute)
	for i := 0; i < 30; i++ {
		d.event(start.Add(time.Duration(i) * 100 * ms))
	}
	if at, _ := d.due(); !at.Equal(start.Add(2 * time.Second)) {
		t.Errorf("stream: due %v after start, want 2s", at.Sub(start))
	}
	// After a flush, the next burst has its own 2 s.
	d.reset()
	d.event(start.Add(3 * time.Second))
	if at, _ := d.due(); !at.Equal(start.Add(3*time.Second + 200*ms)) {
		t.Errorf("next burst: due %v", at.Sub(start))
	}
}

func TestBatch(t *testing.T) {
	var b batch
	if !b.empty() {
		t.Fatal("zero batch not empty")
	}
	for i := 0; i < MaxPaths+50; i++ {
		b.add(fmt.Sprintf("/a/%03d", i))
	}
	b.add("/a/000") // a duplicate of a listed path is not counted
	c := b.change()
	if len(c.Paths) != MaxPaths || c.More != 50 {
		t.Errorf("bounded: %d paths, %d more; want %d, 50", len(c.Paths), c.More, MaxPaths)
	}
	var x, y batch
	x.add("/b")
	x.add("/a")
	y.add("/a")
	y.add("/c")
	y.overflow = true
	x.merge(y)
	if got := x.change(); strings.Join(got.Paths, " ") != "/a /b /c" || !got.Overflow {
		t.Errorf("merge: %+v", got)
	}
	if s := (Change{Paths: []string{"/a", "/b"}, More: 3}).String(); s != "/a, /b and 3 more" {
		t.Errorf("String: %q", s)
	}
}
