package config

import (
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Finding the line of a key.
//
// BurntSushi/toml v1.6.0 keeps a position for each key but does not export
// it (only a ParseError carries one), and for an array of tables it keeps
// one position per key name, not one per [[table]]. So pyhost finds lines
// itself: after the library has accepted a file, scanKeyLines walks the
// same text with a small scanner that knows just enough TOML (comments,
// the four kinds of strings, arrays, inline tables, [table] and
// [[array]] headers, dotted and quoted keys) to record the line of every
// key and array element, with array indices counted the way the error
// messages count them. It runs only on text the library parsed, so it
// need not diagnose anything; on any other text it still terminates and
// never panics (FuzzKeyLines), it just may know fewer lines.
//
// It also guards the library: BurntSushi/toml takes time quadratic in
// the depth of nesting (32 s for one 120 KB dotted key), and app files
// come from users. So the scanner runs first, in time linear in the
// file, and a file nested deeper than maxNesting is refused before the
// library sees it.

// maxNesting bounds the keys and arrays nested in one another; pyhost's
// files need 4.
const maxNesting = 32

// seg is one step of a key path: a table key, or an index into an array.
type seg struct {
	name string
	idx  int // -1 for a name
}

type keyPath []seg

func (p keyPath) key(name string) keyPath {
	return append(p[:len(p):len(p)], seg{name: name, idx: -1})
}

func (p keyPath) index(i int) keyPath {
	return append(p[:len(p):len(p)], seg{idx: i})
}

// String renders p as the messages show keys: "static[0].dir",
// `users."j.doe".max_apps`.
func (p keyPath) String() string {
	var b strings.Builder
	for _, s := range p {
		if s.idx >= 0 {
			b.WriteString("[" + strconv.Itoa(s.idx) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(quoteKey(s.name))
	}
	return b.String()
}

// names drops the indices: the key as toml.Key spells it.
func (p keyPath) names() string {
	var b strings.Builder
	for _, s := range p {
		if s.idx < 0 {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(quoteKey(s.name))
		}
	}
	return b.String()
}

// tomlKeyString renders a toml.Key the way keyPath.names does.
func tomlKeyString(k toml.Key) string {
	var p keyPath
	for _, s := range k {
		p = p.key(s)
	}
	return p.names()
}

func quoteKey(s string) string {
	if s == "" {
		return `""`
	}
	for i := 0; i < len(s); i++ {
		if !isBareKeyChar(s[i]) {
			return strconv.Quote(s)
		}
	}
	return s
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// keyLines knows where the keys of one file are.
type keyLines struct {
	lines map[string]int // keyPath.String() → line of its first mention
	// occ lists, for each key as toml.Key spells it, the paths of its
	// occurrences in file order, so the n-th time MetaData reports
	// "static.url" can be told to be static[n].url.
	occ map[string][]keyPath
	// tooDeep is the line where the file nests deeper than maxNesting,
	// or 0. The scan stops there.
	tooDeep int
}

// line of key, or of the nearest enclosing key the file mentions; 0 when
// none is known (or k is nil).
func (k *keyLines) line(key string) int {
	if k == nil {
		return 0
	}
	for key != "" {
		if l, ok := k.lines[key]; ok {
			return l
		}
		key = parentKey(key)
	}
	return 0
}

// locate turns the n-th occurrence of a toml.Key into its indexed path.
func (k *keyLines) locate(key toml.Key, n int) keyPath {
	if k != nil {
		if ps := k.occ[tomlKeyString(key)]; n < len(ps) {
			return ps[n]
		}
	}
	var p keyPath
	for _, s := range key {
		p = p.key(s)
	}
	return p
}

// parentKey drops the last step of a rendered path: "a.b[2]" → "a.b",
// `a."x.y"` → "a".
func parentKey(key string) string {
	cut, inQuote := 0, false
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && (c == '.' || c == '['):
			cut = i
		}
	}
	return key[:cut]
}

type lineScanner struct {
	s    string
	i    int
	line int
	kl   *keyLines
	// aot counts the [[tables]] seen under each array path, and holds
	// the current element of each array of tables.
	aotCount map[string]int
	aotCur   map[string]int
}

// scanKeyLines records the line of every key and array element in src.
func scanKeyLines(src string) *keyLines {
	kl := &keyLines{lines: map[string]int{}, occ: map[string][]keyPath{}}
	sc := &lineScanner{s: src, line: 1, kl: kl, aotCount: map[string]int{}, aotCur: map[string]int{}}
	for _, bom := range []string{"\xef\xbb\xbf", "\xff\xfe", "\xfe\xff"} {
		if strings.HasPrefix(src, bom) {
			sc.i = len(bom)
			break
		}
	}
	sc.top()
	return kl
}

func (sc *lineScanner) eof() bool { return sc.i >= len(sc.s) }

// abort stops the scan of a file nested too deep.
func (sc *lineScanner) abort() {
	if sc.kl.tooDeep == 0 {
		sc.kl.tooDeep = sc.line
	}
	sc.i = len(sc.s)
}

func (sc *lineScanner) peek() byte { return sc.s[sc.i] }
func (sc *lineScanner) at(prefix string) bool {
	return strings.HasPrefix(sc.s[sc.i:], prefix)
}

// mark records where p is mentioned; occurrence says whether MetaData
// lists it as a key of its own (headers and key/value pairs, not array
// elements or the implicit tables of dotted keys).
func (sc *lineScanner) mark(p keyPath, line int, occurrence bool) {
	k := p.String()
	if _, ok := sc.kl.lines[k]; !ok {
		sc.kl.lines[k] = line
	}
	if occurrence {
		n := p.names()
		sc.kl.occ[n] = append(sc.kl.occ[n], p)
	}
}

func (sc *lineScanner) top() {
	var ctx keyPath
	for !sc.eof() {
		switch c := sc.peek(); c {
		case ' ', '\t', '\r':
			sc.i++
		case '\n':
			sc.line++
			sc.i++
		case '#':
			sc.skipComment()
		case '[':
			ctx = sc.header()
			sc.skipLine()
		default:
			start := sc.i
			sc.keyValue(ctx)
			if sc.i == start {
				sc.i++
			}
			sc.skipLine()
		}
	}
}

func (sc *lineScanner) skipComment() {
	for !sc.eof() && sc.peek() != '\n' {
		sc.i++
	}
}

// skipLine skips the rest of the line (a comment, blanks), not its end.
func (sc *lineScanner) skipLine() { sc.skipComment() }

func (sc *lineScanner) skipBlanks() {
	for !sc.eof() && (sc.peek() == ' ' || sc.peek() == '\t') {
		sc.i++
	}
}

// skipSpace skips blanks, line ends and comments (inside arrays and
// inline tables).
func (sc *lineScanner) skipSpace() {
	for !sc.eof() {
		switch sc.peek() {
		case ' ', '\t', '\r':
			sc.i++
		case '\n':
			sc.line++
			sc.i++
		case '#':
			sc.skipComment()
		default:
			return
		}
	}
}

// header reads "[a.b]" or "[[a.b]]" and returns the new context.
func (sc *lineScanner) header() keyPath {
	defer func() {
		if sc.kl.tooDeep > 0 {
			sc.i = len(sc.s)
		}
	}()
	line := sc.line
	array := sc.at("[[")
	if array {
		sc.i += 2
	} else {
		sc.i++
	}
	names := sc.keyNames()
	if len(names) == 0 {
		return nil
	}
	var p keyPath
	for _, n := range names[:len(names)-1] {
		p = sc.resolve(p.key(n))
	}
	p = p.key(names[len(names)-1])
	if array {
		sc.mark(p, line, false) // the array itself: its first [[table]]
		k := p.String()
		n := sc.aotCount[k]
		sc.aotCount[k] = n + 1
		sc.aotCur[k] = n
		p = p.index(n)
	} else {
		p = sc.resolve(p)
	}
	sc.mark(p, line, true)
	return p
}

// resolve adds the current element's index if p names an array of tables.
func (sc *lineScanner) resolve(p keyPath) keyPath {
	if n, ok := sc.aotCur[p.String()]; ok {
		return p.index(n)
	}
	return p
}

// keyValue reads "a.b = value" in ctx.
func (sc *lineScanner) keyValue(ctx keyPath) {
	line := sc.line
	names := sc.keyNames()
	if len(names) == 0 {
		return
	}
	p := ctx
	for _, n := range names[:len(names)-1] {
		p = p.key(n)
		sc.mark(p, line, false)
	}
	p = p.key(names[len(names)-1])
	sc.mark(p, line, true)
	sc.skipBlanks()
	if sc.eof() || sc.peek() != '=' {
		return
	}
	sc.i++
	sc.value(p)
}

// keyNames reads a dotted key; it stops after the key and its blanks.
func (sc *lineScanner) keyNames() []string {
	var names []string
	for {
		sc.skipBlanks()
		if sc.eof() {
			return names
		}
		var name string
		switch sc.peek() {
		case '"':
			name = sc.basicString()
		case '\'':
			name = sc.literalString()
		default:
			start := sc.i
			for !sc.eof() && isBareKeyChar(sc.peek()) {
				sc.i++
			}
			if sc.i == start {
				return names
			}
			name = sc.s[start:sc.i]
		}
		names = append(names, name)
		if len(names) > maxNesting {
			sc.abort()
			return nil
		}
		sc.skipBlanks()
		if sc.eof() || sc.peek() != '.' {
			return names
		}
		sc.i++
	}
}

// basicString reads a one-line "string" and returns its value.
func (sc *lineScanner) basicString() string {
	start := sc.i
	sc.i++
	for !sc.eof() && sc.peek() != '"' && sc.peek() != '\n' {
		if sc.peek() == '\\' && sc.i+1 < len(sc.s) && sc.s[sc.i+1] != '\n' {
			sc.i++
		}
		sc.i++
	}
	if !sc.eof() && sc.peek() == '"' {
		sc.i++
	}
	raw := sc.s[start:sc.i]
	if v, err := strconv.Unquote(raw); err == nil {
		return v
	}
	return strings.Trim(raw, `"`)
}

// literalString reads a one-line 'string'.
func (sc *lineScanner) literalString() string {
	sc.i++
	start := sc.i
	for !sc.eof() && sc.peek() != '\'' && sc.peek() != '\n' {
		sc.i++
	}
	v := sc.s[start:sc.i]
	if !sc.eof() && sc.peek() == '\'' {
		sc.i++
	}
	return v
}

// multiline skips a """ or ”' string; the opening quotes are at sc.i.
func (sc *lineScanner) multiline(q string, escapes bool) {
	sc.i += 3
	for !sc.eof() {
		switch {
		case escapes && sc.peek() == '\\':
			sc.i++
			if !sc.eof() {
				if sc.peek() == '\n' {
					sc.line++
				}
				sc.i++
			}
		case sc.at(q):
			sc.i += 3
			// Up to two more quotes belong to the content: """a"""".
			for n := 0; n < 2 && !sc.eof() && sc.peek() == q[0]; n++ {
				sc.i++
			}
			return
		case sc.peek() == '\n':
			sc.line++
			sc.i++
		default:
			sc.i++
		}
	}
}

// value skips one value of key p, recording the keys and elements in it.
func (sc *lineScanner) value(p keyPath) {
	if len(p) > maxNesting {
		sc.abort()
		return
	}
	sc.skipBlanks()
	if sc.eof() {
		return
	}
	switch c := sc.peek(); {
	case sc.at(`"""`):
		sc.multiline(`"""`, true)
	case sc.at(`'''`):
		sc.multiline(`'''`, false)
	case c == '"':
		sc.basicString()
	case c == '\'':
		sc.literalString()
	case c == '[':
		sc.i++
		for n := 0; ; n++ {
			sc.skipSpace()
			for !sc.eof() && sc.peek() == ',' {
				sc.i++
				sc.skipSpace()
			}
			if sc.eof() {
				return
			}
			if sc.peek() == ']' {
				sc.i++
				return
			}
			e := p.index(n)
			sc.mark(e, sc.line, false)
			start := sc.i
			sc.value(e)
			if sc.i == start {
				sc.i++
			}
		}
	case c == '{':
		sc.i++
		for {
			sc.skipSpace()
			for !sc.eof() && sc.peek() == ',' {
				sc.i++
				sc.skipSpace()
			}
			if sc.eof() {
				return
			}
			if sc.peek() == '}' {
				sc.i++
				return
			}
			start := sc.i
			sc.keyValue(p)
			if sc.i == start {
				sc.i++
			}
		}
	default:
		// A number, boolean or date: it ends where a separator begins
		// (a date may contain a blank, so blanks do not end it).
		for !sc.eof() && !strings.ContainsRune(",]}#\n", rune(sc.peek())) {
			sc.i++
		}
	}
}
