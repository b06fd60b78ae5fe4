package master

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/applog"
)

// The last access lines of an app removed by reload-config arrive after
// it (the proxy sends a batch per 0.2 s) and go to its file, still open
// until the next reopen; they were dropped.
func TestAccessLinesAfterRemoval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blog.access.log")
	l, err := applog.Open(path, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	m := &Master{cfg: Config{Proxy: Proxy{AccessLogPerApp: true}}, log: hclog.NewNullLogger(), set: &appSet{}}
	m.access.logs = map[string]*applog.Log{"alice/blog": l} // opened while it ran
	m.onAccessLines("alice/blog", "last line\n")
	if b, err := os.ReadFile(path); err != nil || string(b) != "last line\n" {
		t.Errorf("access log after the app went: %q, %v", b, err)
	}
	if errs := m.reopenTenantAccess(); len(errs) != 0 || m.access.logs["alice/blog"] != nil {
		t.Errorf("reopen kept the removed app's log open: %v", errs)
	}
}
