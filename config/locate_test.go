package config

import (
	"testing"

	"github.com/BurntSushi/toml"
)

const locateSample = `# a comment with key = "value" in it
domains = [
  "a.example.com",   # first
  "b.example.com",
]
app = "blog.wsgi:application"
description = """
not_a_key = 1
[not_a_table]
"""
literal = '''
x = 2'''
"quoted.key" = 1
dotted.inner = "x"
inline = { a = 1, b = { c = 2 } }
list = [{ url = "/a/" }, { url = "/b/" }]
date = 1979-05-27 07:32:00Z

[env]
FOO = "bar" # FOO
  BAR = 'baz'

[[static]]
url = "/static/"

[[static]]
url = "/media/"
dir = "media"

[static.sub]
x = 1

[users."j.doe"]
max_apps = 1
`

func TestScanKeyLines(t *testing.T) {
	kl := scanKeyLines(locateSample)
	want := map[string]int{
		"domains":                2,
		"domains[0]":             3,
		"domains[1]":             4,
		"app":                    6,
		"description":            7,
		"literal":                11,
		`"quoted.key"`:           13,
		"dotted":                 14,
		"dotted.inner":           14,
		"inline":                 15,
		"inline.a":               15,
		"inline.b.c":             15,
		"list[1]":                16,
		"list[1].url":            16,
		"date":                   17,
		"env":                    19,
		"env.FOO":                20,
		"env.BAR":                21,
		"static[0]":              23,
		"static[0].url":          24,
		"static[1]":              26,
		"static[1].url":          27,
		"static[1].dir":          28,
		"static[1].sub":          30,
		"static[1].sub.x":        31,
		`users."j.doe"`:          33,
		`users."j.doe".max_apps`: 34,
		// Not written: the nearest enclosing key's line.
		"static[1].nothing": 26,
		"env.NOPE":          19,
		"nothing":           0,
		"":                  0,
	}
	for key, line := range want {
		if got := kl.line(key); got != line {
			t.Errorf("line(%s) = %d, want %d", key, got, line)
		}
	}
	for _, k := range []string{"not_a_key", "not_a_table", "x"} {
		if _, ok := kl.lines[k]; ok {
			t.Errorf("%s is inside a string, but was taken for a key", k)
		}
	}
	if (*keyLines)(nil).line("x") != 0 {
		t.Error("nil keyLines must know no lines")
	}
}

func TestKeyLinesMatchLibrary(t *testing.T) {
	checkKeyLines(t, []byte(locateSample))
}

func TestParentKey(t *testing.T) {
	cases := map[string]string{
		"a": "", "a.b": "a", "a.b[2]": "a.b", "a[0].b": "a[0]", `a."x.y"`: "a", `a."x[1]".b`: `a."x[1]"`, `"a\"b".c`: `"a\"b"`,
	}
	for in, want := range cases {
		if got := parentKey(in); got != want {
			t.Errorf("parentKey(%s) = %s, want %s", in, got, want)
		}
	}
}

// checkKeyLines checks, for TOML the library accepts, that the scanner
// sees each key as often as the library does, so the n-th occurrence of
// a key maps to the right [[table]].
func checkKeyLines(t *testing.T, data []byte) {
	var v map[string]any
	md, err := toml.Decode(string(data), &v)
	kl := scanKeyLines(string(data))
	if err != nil {
		return
	}
	count := map[string]int{}
	for _, k := range md.Keys() {
		count[tomlKeyString(k)]++
	}
	for k, n := range count {
		if got := len(kl.occ[k]); got != n {
			t.Errorf("key %s: the scanner saw %d occurrences, the library %d\n%s", k, got, n, data)
		}
	}
}

func FuzzKeyLines(f *testing.F) {
	f.Add([]byte(locateSample))
	f.Add([]byte("a = \"\"\"x\\\n\"\"\"\"\"\nb = 1"))
	f.Add([]byte("[[a]]\n[[a.b]]\nc = 1\n[[a]]\n[[a.b]]\nc = 2\n[a.d]\n"))
	f.Add([]byte("x = [[{a=1}], {b=[1,2]}]\ny.'z' = {c.d = 1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkKeyLines(t, data)
	})
}
