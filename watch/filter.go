package watch

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// DefaultInclude is what a tree watch reports when Options.Include adds
// nothing: Python sources.
var DefaultInclude = []string{"*.py"}

// skippedDirs are never entered: caches, version control, virtual
// environments and JavaScript dependencies are large, churn on their own
// (pip, git gc, npm) and are not the app's code. Hidden directories are
// skipped by a separate rule.
var skippedDirs = map[string]bool{
	"__pycache__":   true,
	"node_modules":  true,
	"venv":          true,
	"site-packages": true,
}

// tempNames are the files editors and tools write beside the real one
// while saving: vim's swap files and its "4913" probe (it checks the
// directory is writable by creating that name), backups ending in "~",
// emacs's "#x#" autosaves, JetBrains' safe-write copies, Kate's swap.
// Hidden files (".#x" emacs locks, ".x.swp", gedit's .goutputstream-*)
// are covered by ".*".
var tempNames = []string{
	".*", "*.swp", "*.swo", "*.swn", "*.swx", "*~", "#*#", "4913",
	"*___jb_tmp___", "*___jb_old___", "*.kate-swp",
}

func isTemp(base string) bool {
	for _, p := range tempNames {
		if ok, _ := path.Match(p, base); ok {
			return true
		}
	}
	return false
}

// pattern is one compiled --reload-include/--reload-exclude glob.
type pattern struct {
	text string
	// segs is the pattern split on "/". A pattern of one segment matches
	// a path's base name at any depth; otherwise it matches the whole
	// path relative to the root, segment by segment, "**" standing for
	// any number of directories (zero included).
	segs []string
	// temp: the pattern's last element, read as a file name, is itself a
	// temporary name ("*.swp", "*~", ".env"), so it asks for such files
	// explicitly; "*" or "**/*" does not.
	temp bool
}

func compilePatterns(globs []string) ([]pattern, error) {
	var ps []pattern
	for _, g := range globs {
		p, err := compilePattern(g)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func compilePattern(g string) (pattern, error) {
	s := filepath.ToSlash(strings.TrimSpace(g))
	s = strings.TrimPrefix(s, "./")
	anchored := strings.HasPrefix(s, "/")
	s = strings.Trim(s, "/")
	if s == "" {
		return pattern{}, fmt.Errorf("empty watch pattern %q", g)
	}
	segs := strings.Split(s, "/")
	for _, seg := range segs {
		if seg == "" || seg == "." || seg == ".." {
			return pattern{}, fmt.Errorf("watch pattern %q: empty, . or .. element", g)
		}
		// path.Match checks the whole pattern's syntax even when the
		// name does not match.
		if _, err := path.Match(seg, ""); err != nil {
			return pattern{}, fmt.Errorf("watch pattern %q: %w", g, err)
		}
	}
	if anchored && len(segs) == 1 {
		// "/app.py": only the root's own app.py, not every app.py.
		segs = append([]string{""}, segs...)
	}
	return pattern{text: g, segs: segs, temp: isTemp(segs[len(segs)-1])}, nil
}

// match reports whether rel (slash-separated, relative to the root, no
// leading "./") matches.
func (p pattern) match(rel string) bool {
	if len(p.segs) == 1 {
		ok, _ := path.Match(p.segs[0], path.Base(rel))
		return ok
	}
	segs := p.segs
	if segs[0] == "" { // anchored single name
		segs = segs[1:]
	}
	return matchSegs(segs, strings.Split(rel, "/"))
}

func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for len(pat) > 0 && pat[0] == "**" {
				pat = pat[1:]
			}
			if len(pat) == 0 {
				return true
			}
			for i := range name {
				if matchSegs(pat, name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// filter decides what a tree watch reports. It is pure: the walker and
// the event handler ask it about relative paths, and it never touches the
// file system.
type filter struct {
	include []pattern // the user's, added to DefaultInclude
	exclude []pattern
	def     []pattern
}

func newFilter(include, exclude []string) (*filter, error) {
	inc, err := compilePatterns(include)
	if err != nil {
		return nil, err
	}
	exc, err := compilePatterns(exclude)
	if err != nil {
		return nil, err
	}
	def, err := compilePatterns(DefaultInclude)
	if err != nil {
		return nil, err
	}
	return &filter{include: inc, exclude: exc, def: def}, nil
}

// skipDir reports whether the directory at rel (base name name) is left
// out of the watch, with everything under it.
func (f *filter) skipDir(rel string) bool {
	name := path.Base(rel)
	if skippedDirs[name] || strings.HasPrefix(name, ".") {
		return true
	}
	return matchAny(f.exclude, rel)
}

// wantFile reports whether a change to the file at rel is reported.
// Order: an exclude wins; then a user include (a temporary file only when
// the include names temporary files explicitly); temporary files are
// dropped; then the default include.
func (f *filter) wantFile(rel string) bool {
	if matchAny(f.exclude, rel) {
		return false
	}
	temp := isTemp(path.Base(rel))
	for _, p := range f.include {
		if p.match(rel) && (!temp || p.temp) {
			return true
		}
	}
	if temp {
		return false
	}
	return matchAny(f.def, rel)
}

func matchAny(ps []pattern, rel string) bool {
	for _, p := range ps {
		if p.match(rel) {
			return true
		}
	}
	return false
}
