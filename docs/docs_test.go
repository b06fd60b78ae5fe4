// Package docs_test checks the user documentation against itself and the
// code: every requirement tag a Go file cites is explained in
// requirements.md, and every relative link in docs/ and the README leads
// to a file and a heading that exist. The docs are part of each feature;
// a renamed heading or a tag with no entry is a broken promise a reader
// meets first.
package docs_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// tagRe matches a requirement tag as cited in code: a letter of a
// requirement family and a number, standing alone (so "0xC1", "S3Bucket"
// and "P99" do not count).
var tagRe = regexp.MustCompile(`\b([RSUTCDO])([0-9]{1,2})\b`)

func TestRequirementTagsDocumented(t *testing.T) {
	anchors := anchorsOf(t, "requirements.md")
	cited := map[string][]string{} // tag -> files citing it
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || d.Name() == "results") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		cs, err := comments(path, b)
		if err != nil {
			return err
		}
		for _, c := range cs {
			for _, m := range tagRe.FindAllStringSubmatch(c, -1) {
				tag := m[1] + m[2]
				cited[tag] = append(cited[tag], path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(cited) == 0 {
		t.Fatal("no requirement tag found in any Go comment: is the walk looking at the repository?")
	}
	var missing []string
	for tag, files := range cited {
		if !anchors[strings.ToLower(tag)] {
			missing = append(missing, tag+" (cited in "+files[0]+")")
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("requirement tag %s has no entry in docs/requirements.md", m)
	}
}

// comments returns the text of a Go file's comments.
func comments(path string, src []byte) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, g := range f.Comments {
		out = append(out, g.Text())
	}
	return out, nil
}

// linkRe matches a markdown link's target: [text](target).
var linkRe = regexp.MustCompile(`\]\(([^)\s]+)\)`)

func TestRelativeLinksResolve(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md", "../bench/README.md")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range linkRe.FindAllStringSubmatch(stripCode(string(b)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			dest := f
			if path != "" {
				dest = filepath.Join(filepath.Dir(f), path)
				if _, err := os.Stat(dest); err != nil {
					t.Errorf("%s: link %q: %v", f, target, err)
					continue
				}
			}
			if anchor == "" || !strings.HasSuffix(dest, ".md") {
				continue
			}
			if !anchorsOf(t, dest)[anchor] {
				t.Errorf("%s: link %q: no heading or anchor %q in %s", f, target, anchor, dest)
			}
		}
	}
}

// stripCode drops fenced code blocks, where "](...)" is code, not a link.
func stripCode(s string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			continue
		}
		if !in {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

var (
	explicitAnchorRe = regexp.MustCompile(`<a id="([^"]+)"></a>`)
	slugDropRe       = regexp.MustCompile("[^a-z0-9 _-]")
)

// anchorsOf returns the anchors a markdown file offers: GitHub's heading
// slugs (lower case, punctuation dropped, spaces to hyphens, repeats
// numbered) and explicit <a id> anchors.
func anchorsOf(t *testing.T, file string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	seen := map[string]int{}
	for _, line := range strings.Split(stripCode(string(b)), "\n") {
		for _, m := range explicitAnchorRe.FindAllStringSubmatch(line, -1) {
			out[m[1]] = true
		}
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		slug := slugDropRe.ReplaceAllString(strings.ToLower(h), "")
		slug = strings.ReplaceAll(slug, " ", "-")
		if n := seen[slug]; n > 0 {
			out[slug+"-"+strconv.Itoa(n)] = true
		} else {
			out[slug] = true
		}
		seen[slug]++
	}
	return out
}
