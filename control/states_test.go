package control_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// `pyctl status --json` is a contract, and the states it reports come
// from package supervisor (an app's and a worker's life) and are sent to
// the proxy through package proxymsg. TestStateVocabularies fails when the
// three sets of state names diverge: a state the supervisor or the
// proxy's channel knows that control does not name (and so pyctl and
// scripts reading --json are not told of), or one control names that
// nothing produces. The constants are read from the packages' sources,
// so a new one cannot be forgotten here.
func TestStateVocabularies(t *testing.T) {
	ctlApps := consts(t, ".", "App", "")
	ctlWorkers := consts(t, ".", "Worker", "")
	supApps := consts(t, "../supervisor", "App", "AppState")
	supWorkers := consts(t, "../supervisor", "Worker", "WorkerState")
	chApps := consts(t, "../proxymsg", "App", "AppState")

	// Only the master says "refused": a file it did not load has no
	// supervisor, so no state of its own.
	const refused = "refused"
	want := union(supApps, chApps)
	want[refused] = true
	if !maps.Equal(ctlApps, want) {
		t.Errorf("control's app states %v, want the supervisor's %v, the channel's %v and %q", sorted(ctlApps), sorted(supApps), sorted(chApps), refused)
	}
	for s := range chApps {
		if !supApps[s] {
			t.Errorf("the channel's app state %q is no supervisor state", s)
		}
	}
	if !maps.Equal(ctlWorkers, supWorkers) {
		t.Errorf("control's worker states %v, want the supervisor's %v", sorted(ctlWorkers), sorted(supWorkers))
	}
	if len(supApps) == 0 || len(supWorkers) == 0 || len(chApps) == 0 {
		t.Fatalf("read no states (supervisor %v %v, channel %v): has a type been renamed?", supApps, supWorkers, chApps)
	}
}

// consts reads the string constants named prefix… from the non-test Go
// files of dir, those of type typ ("" for untyped ones), as a set of
// their values.
func consts(t *testing.T, dir, prefix, typ string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				if typeName(vs.Type) != typ {
					continue
				}
				for i, id := range vs.Names {
					if !strings.HasPrefix(id.Name, prefix) || i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					out[v] = true
				}
			}
		}
	}
	return out
}

func typeName(e ast.Expr) string {
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

func union(sets ...map[string]bool) map[string]bool {
	out := map[string]bool{}
	for _, s := range sets {
		maps.Copy(out, s)
	}
	return out
}

func sorted(s map[string]bool) []string {
	return slices.Sorted(maps.Keys(s))
}
