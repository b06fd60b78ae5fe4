package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Error is one problem in a config file, located as precisely as the file
// allows. Its text is "FILE:LINE: KEY: MSG"; ":LINE" is left out when Line
// is 0 and "KEY: " when Key is empty, so every problem reads the same way
// in `pyhostd check`, `pyctl check` and the daemon's log.
type Error struct {
	// File is the file's path as the caller gave it; "" leaves it out.
	File string
	// Line is 1-based; 0 when the problem is the file as a whole (its
	// name, a missing key) or no line could be found.
	Line int
	// Key is the dotted key the problem is about, with array indices
	// counted from 0: "threads", "static[0].dir", "users.alice.max_memory".
	// Empty for a syntax error or the file as a whole.
	Key string
	// Msg says what is wrong and what would be valid.
	Msg string
	// Err is the underlying cause for errors.Is and errors.As (for
	// example privdrop.ErrRoot), or nil. It is not printed: Msg says it.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

// Errors is every problem found in one file, sorted by line (problems
// with the file as a whole, Line 0, first). Its text is one Error per
// line. Parsers return a non-empty Errors or nil, never an empty one.
// Past 50 problems, a last Error (Line 0, no Key) counts the rest.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is and errors.As look at each Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// problems collects the Errors of one file; lines locates keys in it.
type problems struct {
	file  string
	lines *keyLines
	errs  Errors
	seen  map[string]bool // keys already reported, so one key gets one error
}

// add reports a problem with key, on the line where key (or the nearest
// enclosing key the file spells out) is written. Only the first problem
// with a key is kept: later ones are usually consequences of it.
func (p *problems) add(key, format string, args ...any) {
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	if key != "" && p.seen[key] {
		return
	}
	p.seen[key] = true
	p.errs = append(p.errs, &Error{File: p.file, Line: p.lines.line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

// addError reports a fully formed Error for this file.
func (p *problems) addError(e *Error) {
	e.File = p.file
	p.errs = append(p.errs, e)
}

// maxErrors bounds the problems reported for one file: past that, the
// rest are counted, not listed, as compilers do. (A hostile app file
// must not fill the daemon's log or `pyctl status`.)
const maxErrors = 50

// err is nil when nothing was reported, else the sorted Errors.
func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	out := append(Errors(nil), p.errs...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	if len(out) > maxErrors {
		more := len(out) - maxErrors
		out = append(out[:maxErrors], &Error{File: p.file, Msg: fmt.Sprintf("and %d more problems; fix the ones above first", more)})
	}
	return out
}

// suggest returns the known key closest to key by edit distance (case
// ignored), if that distance is at most 2, else "".
func suggest(key string, known []string) string {
	best, bestD := "", 3
	k := strings.ToLower(key)
	for _, c := range known {
		if d := editDistance(k, strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		// Keys are short; a long one is not a typo of any of them.
		if a == b {
			return 0
		}
		return 1 << 20
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// fileProblem is err as a problem of the file at path, in the form every
// problem is printed (FILE:LINE: KEY: MSG): err's own text when err is
// located in that file already (the parsers' and admitApp's errors
// are), else "path: " and err's text, so that no problem names its file
// twice. Refusal.Error is this.
func fileProblem(path string, err error) string {
	if locatedIn(path, err) {
		return err.Error()
	}
	return path + ": " + err.Error()
}

// locatedIn reports whether err's text starts with path, as an *Error or
// Errors of that file, perhaps marked as a policy refusal (whose text is
// the same).
func locatedIn(path string, err error) bool {
	switch e := err.(type) {
	case *Error:
		return e.File == path
	case Errors:
		// One file's Errors: every line names the same file.
		return len(e) > 0 && e[0].File == path
	case policyErr:
		return locatedIn(path, e.err)
	}
	return false
}
