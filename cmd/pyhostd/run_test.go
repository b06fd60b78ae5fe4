package main

import (
	"path/filepath"
	"testing"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/privdrop"
)

// The catalog's Problems is nil, not a typed nil config.Errors, when
// checkSystem finds none: a reload-config would otherwise fail on a
// good admin file with an empty error.
func TestCatalogProblemsNilWhenNone(t *testing.T) {
	dir := t.TempDir()
	src := "[proxy]\nuser = \"nobody\"\nlisten = [\"127.0.0.1:8080\"]\n[daemon]\nlog_dir = \"" + filepath.Join(dir, "log") + "\"\n"
	admin, err := config.ParseAdmin(filepath.Join(dir, "pyhost.toml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	opts := catalogOptions(filepath.Join(dir, "pyhost.toml"), nil, privdrop.Credential{})
	if err := opts.Problems(admin, nil); err != nil {
		t.Errorf("a good admin file: %v (%T)", err, err)
	}
	admin.Proxy.User = "root"
	if err := opts.Problems(admin, nil); err == nil {
		t.Error("root as the proxy's user is a problem")
	}
}
