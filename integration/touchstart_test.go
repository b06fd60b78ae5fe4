package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// TestTouchRightAfterStart (D2): a touch of the app file the moment
// pyhostd run says it serves rolls the app: the watch is set up before
// the daemon is ready. Also a check of the harness: sysd.start used to
// return on the proxy's "proxy serving:" line, before any app had
// started and before the watch existed, so TestTouchToReload's first
// touch was sometimes lost (seen once in CI, under load); with that
// start this test failed 8 of 8 runs.
func TestTouchRightAfterStart(t *testing.T) {
	t.Parallel()
	const ann = "pyh-ts-ann"
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"ts.test\"]\n", ann))
	a := makeUser(t, ann)
	deployNamed(t, a, "blog", "blog", `"ts.test"`, "")
	appFile := filepath.Join(userApps(a), "blog.toml")
	d.start()
	at := time.Now().Add(time.Second) // a change even within the mtime tick
	if err := os.Chtimes(appFile, at, at); err != nil {
		t.Fatal(err)
	}
	done := regexp.MustCompile(regexp.QuoteMeta("reload of " + ann + "/blog done"))
	eventually(t, 10*time.Second, "the touch right after start rolls the app", func() bool {
		return done.MatchString(d.logs.String())
	})
}
