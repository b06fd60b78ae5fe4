package wsgiadapter

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The worker must run on every Python a Debian or Ubuntu LTS may still
// ship (3.8 and later) and import only the standard library.
func TestWorkerIsPython38StdlibOnly(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	script := filepath.Join(t.TempDir(), "pyhost_worker.py")
	if err := os.WriteFile(script, WorkerScript, 0o644); err != nil {
		t.Fatal(err)
	}
	check := `
import ast, sys
src = open(sys.argv[1]).read()
tree = ast.parse(src, feature_version=(3, 8))
stdlib = getattr(sys, "stdlib_module_names", None)
for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        names = [node.module or ""]
    for n in names:
        top = n.split(".")[0]
        if stdlib is not None and top not in stdlib:
            print("non-stdlib import:", n)
            sys.exit(1)
print("ok")
`
	out, err := exec.Command(py, "-c", check, script).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("worker script check failed: %v\n%s", err, out)
	}
}
