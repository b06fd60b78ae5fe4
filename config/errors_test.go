package config

import (
	"errors"
	"testing"

	"github.com/pyhost/pyhost/privdrop"
)

func TestErrorText(t *testing.T) {
	cases := []struct {
		err  Error
		want string
	}{
		{Error{File: "/a/blog.toml", Line: 3, Key: "threads", Msg: "must be an integer from 1 to 1024, got 0"},
			"/a/blog.toml:3: threads: must be an integer from 1 to 1024, got 0"},
		{Error{File: "/a/blog.toml", Key: "static[1].dir", Msg: "m"}, "/a/blog.toml: static[1].dir: m"},
		{Error{File: "/a/blog.toml", Line: 7, Msg: "not valid TOML: x"}, "/a/blog.toml:7: not valid TOML: x"},
		{Error{File: "/a/blog.toml", Msg: "m"}, "/a/blog.toml: m"},
		{Error{Key: "k", Msg: "m"}, "k: m"},
		{Error{Msg: "m"}, "m"},
	}
	for _, c := range cases {
		if got := c.err.Error(); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}
}

func TestErrorsSortedAndUnwrapped(t *testing.T) {
	p := problems{file: "f"}
	p.addError(&Error{Line: 9, Msg: "nine"})
	p.addError(&Error{Line: 2, Msg: "two"})
	p.addError(&Error{Msg: "file", Err: privdrop.ErrRoot})
	p.addError(&Error{Line: 2, Msg: "two again"})
	err := p.err()
	want := "f: file\nf:2: two\nf:2: two again\nf:9: nine"
	if err.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", err, want)
	}
	var es Errors
	if !errors.As(err, &es) || len(es) != 4 {
		t.Fatalf("errors.As Errors: %v", es)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Error("errors.As *Error failed")
	}
	if !errors.Is(err, privdrop.ErrRoot) {
		t.Error("errors.Is does not see the cause of one Error")
	}
	if (&problems{}).err() != nil {
		t.Error("no problems must be a nil error, not an empty Errors")
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"idle_timeout", "threads", "processes", "url", "dir"}
	cases := map[string]string{
		"idle_timout": "idle_timeout",
		"Threads":     "threads",
		"thread":      "threads",
		"procesess":   "processes",
		"urll":        "url",
		"dirs":        "dir",
		"memory":      "",
		"":            "",
		"xyzzy":       "",
	}
	for in, want := range cases {
		if got := suggest(in, known); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	cases := []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"a", "", 1}, {"kitten", "sitting", 3}, {"url", "urll", 1}, {"abc", "acb", 2}}
	for _, c := range cases {
		if got := editDistance(c.a, c.b); got != c.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}

// The Undecoded check catches a key the schema believes in but no code
// reads.
func TestUndecodedKeysSafetyNet(t *testing.T) {
	var raw struct {
		A value `toml:"a"`
	}
	anything := schema{known: func([]string) []string { return nil }, home: func(string) string { return "" }}
	c, ok := decode("f.toml", []byte("a = 1\nb = 2\n[t]\nc = 3\n"), 1024, &raw, anything)
	if !ok {
		t.Fatal(c.err())
	}
	c.unknownKeys()
	if c.err() != nil {
		t.Fatalf("schema check: %v", c.err())
	}
	c.undecodedKeys()
	want := "f.toml:2: b: unknown key\nf.toml:3: t: unknown key"
	if err := c.err(); err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}
