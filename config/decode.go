package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// How a file becomes a runtime value, for both the admin file and app
// files:
//
//  1. toml.Decode fills a raw struct that mirrors the file. Its leaves are
//     values (below), which accept any TOML type, and its tables are
//     toml.Primitive, decoded one by one; so the only error at this stage
//     is a syntax error, and one mistake never hides the others.
//  2. Every key of the file is checked against the schema (the raw
//     structs' toml tags); an unknown one is reported with the closest
//     known key. This catches what Undecoded cannot: the library matches
//     fields ignoring case, and pyhost does not.
//  3. One function per file builds the typed runtime value from the raw
//     struct, converting and range-checking every value and applying
//     defaults, so nothing downstream sees a raw string or a default.
//  4. Whatever MetaData.Undecoded still lists is refused too: a key no
//     code read never passes silently.
//
// Every problem is collected, located (locate.go) and returned together.

// value is one TOML value as the file wrote it, with set telling whether
// the file wrote it at all.
type value struct {
	v   any
	set bool
}

// UnmarshalTOML keeps data as it is; it never fails.
func (v *value) UnmarshalTOML(data any) error {
	v.v, v.set = data, true
	return nil
}

// schema says which keys a table may hold.
type schema struct {
	// known lists the valid keys of the table at parent (names, no
	// indices); nil for a table whose keys are free (env, users).
	known func(parent []string) []string
	// home says where a key of this file belongs, for a key written in
	// the wrong table: "processes" → "at the top of the file, before any
	// [table]". "" when the key is not one of this file's keys.
	home func(name string) string
}

type checker struct {
	problems
	md     toml.MetaData
	schema schema
	// skip holds keys already reported (unknown keys, tables of the
	// wrong type): nothing under them is reported again. skippedIn holds
	// the keys that contain one.
	skip, skippedIn map[string]bool
	// addrs are the listen addresses seen so far (admin file).
	addrs map[string]bool
}

// decode parses data into raw. It reports false, with the syntax error
// recorded, when data is not TOML.
func decode(file string, data []byte, maxSize int64, raw any, s schema) (*checker, bool) {
	c := &checker{problems: problems{file: file}, schema: s}
	if int64(len(data)) > maxSize {
		c.addError(&Error{Msg: fmt.Sprintf("the file is %d bytes; the limit is %s", len(data), FormatSize(maxSize))})
		return c, false
	}
	lines := scanKeyLines(string(data))
	if lines.tooDeep > 0 {
		c.addError(&Error{Line: lines.tooDeep, Msg: fmt.Sprintf("keys, tables or arrays are nested more than %d deep here; no pyhost setting is", maxNesting)})
		return c, false
	}
	md, err := toml.Decode(string(data), raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			c.addError(&Error{Line: syntaxErrorLine(string(data), pe), Msg: "not valid TOML: " + pe.Message})
		} else {
			c.addError(&Error{Msg: "not valid TOML: " + err.Error()})
		}
		return c, false
	}
	c.md = md
	c.lines = lines
	return c, true
}

// reportedIn reports whether a key inside p was reported unknown.
func (c *checker) reportedIn(p keyPath) bool { return c.skippedIn[p.String()] }

// syntaxErrorLine is the line of a syntax error. The library's line is
// one too far when the error is at the end of a line (it has counted the
// newline already), so count the lines up to the error's offset instead.
func syntaxErrorLine(data string, pe toml.ParseError) int {
	// The library reads past a byte order mark; Start is after it.
	for _, bom := range []string{"\xef\xbb\xbf", "\xff\xfe", "\xfe\xff"} {
		if strings.HasPrefix(data, bom) {
			data = data[len(bom):]
			break
		}
	}
	if pe.Position.Start < 0 || pe.Position.Start > len(data) {
		return pe.Position.Line
	}
	return 1 + strings.Count(data[:pe.Position.Start], "\n")
}

// under reports whether p is, or is inside, a key already reported.
func (c *checker) under(p keyPath) bool {
	for i := len(p); i > 0; i-- {
		if c.skip[p[:i].String()] {
			return true
		}
	}
	return false
}

// skipKey marks p as reported: nothing under it is reported again.
func (c *checker) skipKey(p keyPath) {
	if c.skip == nil {
		c.skip, c.skippedIn = map[string]bool{}, map[string]bool{}
	}
	c.skip[p.String()] = true
	for i := len(p) - 1; i > 0; i-- {
		c.skippedIn[p[:i].String()] = true
	}
}

// table decodes the table prim (at p) into dst, reporting a value of the
// wrong type as "must be want".
func (c *checker) table(prim toml.Primitive, p keyPath, dst any, want string) bool {
	err := c.md.PrimitiveDecode(prim, dst)
	// The library decodes a non-table into a map as an empty map, without
	// an error; ask for the key's type instead. (An implicit table, made
	// by a dotted key, has no type.)
	if t := c.md.Type(pathNames(p)...); err == nil && !hasIndex(p) && t != "" && t != "Hash" &&
		reflect.TypeOf(dst).Elem().Kind() == reflect.Map {
		err = errors.New("not a table")
	}
	if err != nil {
		got := ""
		if t := typeWord(c.md.Type(pathNames(p)...)); t != "" && !hasIndex(p) {
			got = ", got " + t
		}
		c.add(p.String(), "must be %s%s", want, got)
		c.skipKey(p)
		return false
	}
	return true
}

func pathNames(p keyPath) []string {
	var out []string
	for _, s := range p {
		if s.idx < 0 {
			out = append(out, s.name)
		}
	}
	return out
}

func hasIndex(p keyPath) bool {
	for _, s := range p {
		if s.idx >= 0 {
			return true
		}
	}
	return false
}

func typeWord(t string) string {
	return map[string]string{
		"Integer": "an integer", "Float": "a float", "Datetime": "a date", "String": "a string",
		"Bool": "a boolean", "Array": "an array", "Hash": "a table", "ArrayHash": "an array of tables",
	}[t]
}

// unknownKeys reports every key the schema does not know. It runs
// before the runtime value is built, so that building knows which tables
// had a misspelt key.
func (c *checker) unknownKeys() {
	// MetaData.Keys, not Undecoded: the tables are not decoded yet, and
	// the library matches struct fields ignoring case, while pyhost does
	// not ("Threads" is as unknown as "threadz").
	count := map[string]int{}
	for _, k := range c.md.Keys() {
		name := tomlKeyString(k)
		p := c.lines.locate(k, count[name])
		count[name]++
		c.checkKnown(p)
	}
}

// undecodedKeys reports what MetaData.Undecoded still lists once the
// runtime value is built: nothing, if the schema and the raw structs
// agree, but a key that no code read must never pass silently.
func (c *checker) undecodedKeys() {
	count := map[string]int{}
	for _, k := range c.md.Undecoded() {
		name := tomlKeyString(k)
		p := c.lines.locate(k, count[name])
		count[name]++
		if !c.under(p) && !c.checkKnown(p) {
			c.add(p.String(), "unknown key")
			c.skipKey(p)
		}
	}
}

// checkKnown reports the first step of p the schema does not know, if
// any, and whether it found one.
func (c *checker) checkKnown(p keyPath) bool {
	var parent []string
	for i, s := range p {
		if s.idx >= 0 {
			continue
		}
		// nil: a table of free keys (env, users), whose values may
		// still be tables with a schema (users.alice).
		if known := c.schema.known(parent); known != nil && !contains(known, s.name) {
			c.unknown(p[:i+1], parent, known)
			return true
		}
		parent = append(parent, s.name)
	}
	return false
}

func (c *checker) unknown(p keyPath, parent, known []string) {
	if c.under(p) {
		return
	}
	c.skipKey(p)
	name := p[len(p)-1].name
	if s := suggest(name, known); s != "" {
		if strings.EqualFold(s, name) {
			c.add(p.String(), "unknown key (did you mean %s? keys are lowercase)", s)
			return
		}
		c.add(p.String(), "unknown key (did you mean %s?)", s)
		return
	}
	if where := c.schema.home(name); where != "" {
		c.add(p.String(), "unknown key here; %s belongs %s", name, where)
		return
	}
	where := "here"
	if len(parent) == 0 {
		where = "at the top level"
	}
	c.add(p.String(), "unknown key; valid keys %s are %s", where, strings.Join(known, ", "))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// tomlKeys lists the keys of a raw struct, from its toml tags, sorted.
func tomlKeys(raw any) []string {
	var keys []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			if name, _, _ := strings.Cut(f.Tag.Get("toml"), ","); name != "" && name != "-" {
				keys = append(keys, name)
			}
		}
	}
	walk(reflect.TypeOf(raw))
	sort.Strings(keys)
	return keys
}

// describe renders a value for "got ..." in a message.
func describe(x any) string {
	switch t := x.(type) {
	case string:
		if len(t) > 60 {
			t = t[:57] + "..."
		}
		return strconv.Quote(t)
	case int64:
		return strconv.FormatInt(t, 10)
	case float64:
		f := strconv.FormatFloat(t, 'g', -1, 64)
		if !strings.ContainsAny(f, ".eIN") {
			f += ".0" // 4.0, not 4, which would look like a valid integer
		}
		return f
	case bool:
		return strconv.FormatBool(t)
	case time.Time:
		return "a date"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%v", x)
}

// Typed conversions. Each returns ok=false when the key is absent or its
// value is wrong (then reported); the caller keeps its default.

func (c *checker) str(v value, p keyPath, want string) (string, bool) {
	if !v.set {
		return "", false
	}
	s, ok := v.v.(string)
	if !ok {
		c.add(p.String(), "must be %s, got %s", want, describe(v.v))
		return "", false
	}
	if strings.IndexByte(s, 0) >= 0 {
		c.add(p.String(), "must be %s without NUL characters", want)
		return "", false
	}
	return s, true
}

func (c *checker) boolean(v value, p keyPath, example string) (bool, bool) {
	if !v.set {
		return false, false
	}
	b, ok := v.v.(bool)
	if !ok {
		c.add(p.String(), "must be true or false, like %s, got %s", example, describe(v.v))
		return false, false
	}
	return b, true
}

// each calls fn, in order, for each string of the array v (at p), with
// its key p[i]; elements that are not strings are reported instead. want
// and wantOne name what the array and an element should hold. It returns
// the array's length, or -1 when v is absent or not an array (reported).
func (c *checker) each(v value, p keyPath, want, wantOne, example string, fn func(s string, at keyPath)) int {
	if !v.set {
		return -1
	}
	arr, isArr := v.v.([]any)
	if !isArr {
		c.add(p.String(), "must be an array of %s, like %s, got %s", want, example, describe(v.v))
		return -1
	}
	for i, e := range arr {
		if s, ok := c.str(value{e, true}, p.index(i), wantOne); ok {
			fn(s, p.index(i))
		}
	}
	return len(arr)
}

// intRange is an integer key's valid range; zero, if not "", is what 0
// means when lo is 0 ("never").
type intRange struct {
	lo, hi int64
	zero   string
}

func (r intRange) String() string {
	if r.zero != "" && r.lo == 0 {
		return fmt.Sprintf("an integer from 0 (%s) to %d", r.zero, r.hi)
	}
	return fmt.Sprintf("an integer from %d to %d", r.lo, r.hi)
}

// contains reports whether n is in r.
func (r intRange) contains(n int64) bool { return n >= r.lo && n <= r.hi }

func (c *checker) integer(v value, p keyPath, r intRange) (int64, bool) {
	if !v.set {
		return 0, false
	}
	n, ok := v.v.(int64)
	if !ok || !r.contains(n) {
		c.add(p.String(), "must be %s, got %s", r, describe(v.v))
		return 0, false
	}
	return n, true
}

// sizeRange is a size key's valid range: 0 (meaning zero, if zero is not
// "") or lo to hi bytes.
type sizeRange struct {
	lo, hi int64
	zero   string
}

func (r sizeRange) String() string {
	s := fmt.Sprintf("a size from %s to %s", FormatSize(r.lo), FormatSize(r.hi))
	if r.zero != "" {
		s = fmt.Sprintf("0 (%s) or %s", r.zero, s)
	}
	return s + `, like "512MiB"`
}

// contains reports whether n is in r: 0 when r has a meaning for it.
func (r sizeRange) contains(n int64) bool {
	return (n == 0 && r.zero != "") || (n >= r.lo && n <= r.hi)
}

func (c *checker) size(v value, p keyPath, r sizeRange) (int64, bool) {
	if !v.set {
		return 0, false
	}
	var n int64
	switch t := v.v.(type) {
	case int64:
		n = t
	case string:
		var err error
		if n, err = ParseSize(t); err != nil {
			c.add(p.String(), "%v", err)
			return 0, false
		}
	default:
		c.add(p.String(), "must be %s, got %s", r, describe(v.v))
		return 0, false
	}
	if !r.contains(n) {
		c.add(p.String(), "must be %s, got %s", r, describe(v.v))
		return 0, false
	}
	return n, true
}

// durRange is a duration key's valid range, as sizeRange.
type durRange struct {
	lo, hi time.Duration
	zero   string
}

func (r durRange) String() string {
	s := fmt.Sprintf("a duration from %s to %s", formatDuration(r.lo), formatDuration(r.hi))
	if r.zero != "" {
		s = fmt.Sprintf("0 (%s) or %s", r.zero, s)
	}
	return s + `, like "30s"`
}

// contains reports whether d is in r, as sizeRange.contains.
func (r durRange) contains(d time.Duration) bool {
	return (d == 0 && r.zero != "") || (d >= r.lo && d <= r.hi)
}

func (c *checker) duration(v value, p keyPath, r durRange) (time.Duration, bool) {
	if !v.set {
		return 0, false
	}
	s, ok := v.v.(string)
	if !ok {
		if n, isInt := v.v.(int64); isInt && n != 0 {
			c.add(p.String(), "must be %s, got %d (a number without a unit; write %q)", r, n, strconv.FormatInt(n, 10)+"s")
			return 0, false
		}
		if n, isInt := v.v.(int64); isInt && n == 0 && r.zero != "" {
			return 0, true
		}
		c.add(p.String(), "must be %s, got %s", r, describe(v.v))
		return 0, false
	}
	d, err := ParseDuration(s)
	if err != nil {
		c.add(p.String(), "%v", err)
		return 0, false
	}
	if !r.contains(d) {
		c.add(p.String(), "must be %s, got %s", r, describe(v.v))
		return 0, false
	}
	return d, true
}
