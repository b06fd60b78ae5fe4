package config

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestEveryKeyIsDocumented walks the decoder's own schemas (the tables
// of keys it accepts, taken from the raw structs' toml tags) and checks
// that docs/config.md names every key in the section of its table: an
// app file's keys under "## App file", [[static]]'s under its heading,
// the admin file's tables under "### `[proxy]`", "### `[proxy] acme`",
// "### `[[tls]]`", "### `[users.NAME]`" and so on. A key the decoder
// accepts and the reference does not mention fails here, so a new key
// cannot ship undocumented.
func TestEveryKeyIsDocumented(t *testing.T) {
	data, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for _, f := range []struct {
		file   string // the document's section for the file
		schema schema
	}{{"App file", appSchema}, {"Admin file", adminSchema}} {
		top, ok := section(doc, "## "+f.file)
		if !ok {
			t.Errorf("docs/config.md has no %q section", "## "+f.file)
			continue
		}
		walkSchema(f.schema, nil, func(table, keys []string) {
			body, where := top, "## "+f.file
			if len(table) > 0 {
				body, where, ok = tableSection(doc, table)
				if !ok {
					t.Errorf("docs/config.md (%s) has no section for the table %s (a heading with %s)", f.file, strings.Join(table, "."), strings.Join(headingsFor(table), " or "))
					return
				}
			}
			for _, k := range keys {
				if !mentions(body, k) {
					t.Errorf("docs/config.md: %s key %q (in %s) is not documented under %q", f.file, k, tableName(table), where)
				}
			}
		})
	}
}

// freeTables are the tables whose keys are names, not settings, and the
// placeholder the reference writes for one: [users.NAME]. Their
// entries' keys are checked; [env]'s names are the owner's own.
var freeTables = map[string]string{"users": "NAME"}

// walkSchema calls visit with each table of s (nil is the top of the
// file) and the keys the decoder accepts in it, tables included.
func walkSchema(s schema, table []string, visit func(table, keys []string)) {
	keys := s.known(table)
	if keys == nil {
		return
	}
	visit(table, keys)
	for _, k := range keys {
		child := append(slices.Clone(table), k)
		if name, ok := freeTables[k]; ok && len(table) == 0 {
			walkSchema(s, append(child, name), visit)
			continue
		}
		walkSchema(s, child, visit)
	}
}

// headingsFor are the ways the reference names a table in a heading:
// "`[proxy]`", "`[[tls]]`", "`[users.NAME]`", "`[proxy] acme`".
func headingsFor(table []string) []string {
	dotted := strings.Join(table, ".")
	h := []string{"`[" + dotted + "]`", "`[[" + dotted + "]]`"}
	if len(table) == 2 {
		h = append(h, "`["+table[0]+"] "+table[1]+"`")
	}
	return h
}

func tableName(table []string) string {
	if len(table) == 0 {
		return "the top level"
	}
	return "[" + strings.Join(table, ".") + "]"
}

// tableSection finds the section whose heading names table.
func tableSection(doc string, table []string) (body, heading string, ok bool) {
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		for _, h := range headingsFor(table) {
			if strings.HasSuffix(strings.TrimSpace(line), " "+h) {
				body, _ = section(doc, line)
				return body, line, true
			}
		}
	}
	return "", "", false
}

// section is the text under the heading line, up to the next heading
// of the same or a higher level (subsections included).
func section(doc, heading string) (string, bool) {
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		return "", false
	}
	level := len(heading) - len(strings.TrimLeft(heading, "#"))
	rest := doc[i+len(heading)+2:]
	lines := strings.SplitAfter(rest, "\n")
	var b strings.Builder
	fenced := false
	for _, l := range lines {
		if strings.HasPrefix(l, "```") {
			fenced = !fenced
		}
		if !fenced && strings.HasPrefix(l, "#") {
			if n := len(l) - len(strings.TrimLeft(l, "#")); n <= level {
				break
			}
		}
		b.WriteString(l)
	}
	return b.String(), true
}

// mentions reports whether body names key in code: `key`, `[key]` or
// `[[key]]` (a key table's row, or a list such as [defaults]').
func mentions(body, key string) bool {
	for _, form := range []string{"`" + key + "`", "`[" + key + "]`", "`[[" + key + "]]`"} {
		if strings.Contains(body, form) {
			return true
		}
	}
	return false
}

// The walk must see what the decoder sees, or the test above proves
// nothing: every table the reference has, with keys from each raw struct.
func TestWalkSchemaSeesEveryTable(t *testing.T) {
	got := map[string][]string{}
	walkSchema(adminSchema, nil, func(table, keys []string) { got["admin "+tableName(table)] = keys })
	walkSchema(appSchema, nil, func(table, keys []string) { got["app "+tableName(table)] = keys })
	for name, want := range map[string][]string{
		"admin the top level": tomlKeys(rawAdmin{}),
		"admin [proxy]":       tomlKeys(rawProxy{}),
		"admin [proxy.acme]":  tomlKeys(rawACME{}),
		"admin [tls]":         tomlKeys(rawTLS{}),
		"admin [daemon]":      tomlKeys(rawDaemon{}),
		"admin [apps]":        tomlKeys(rawApps{}),
		"admin [defaults]":    tomlKeys(rawTunables{}),
		"admin [users.NAME]":  tomlKeys(rawUser{}),
		"app the top level":   tomlKeys(rawAppFile{}),
		"app [static]":        tomlKeys(rawStatic{}),
	} {
		if !slices.Equal(got[name], want) {
			t.Errorf("%s: walked %v, want %v", name, got[name], want)
		}
		delete(got, name)
	}
	for name := range got {
		t.Errorf("walked %s, which this test does not know", name)
	}
	// The top level of an app file holds the tunables too.
	for _, k := range tomlKeys(rawTunables{}) {
		if !slices.Contains(tomlKeys(rawAppFile{}), k) {
			t.Errorf("app file keys lack the tunable %q", k)
		}
	}
}
