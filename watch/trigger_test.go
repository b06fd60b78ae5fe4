package watch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyhost/pyhost/privdrop"
)

// TestStatAs: a trigger is judged with its owner's rights, through the
// path as written and as resolved.
func TestStatAs(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	// t.TempDir's parent is private to us; open it for the stranger.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	open := filepath.Join(base, "open")
	closed := filepath.Join(base, "closed")
	inner := filepath.Join(closed, "inner") // searchable, but inside a private dir
	os.Mkdir(open, 0o755)
	os.Mkdir(closed, 0o700)
	os.Mkdir(inner, 0o755)
	for _, d := range []string{open, closed, inner} {
		write(t, filepath.Join(d, "restart.txt"), "")
	}
	os.Symlink(inner, filepath.Join(open, "tmp")) // open/tmp -> closed/inner
	me := uint32(os.Getuid())
	stranger := privdrop.Credential{UID: me + 4242, GID: 4242, Username: "stranger"}
	if err := privdrop.CheckAccess(stranger, base, privdrop.Execute); err != nil {
		t.Skipf("the temp directory is private here: %v", err)
	}
	owner := privdrop.Credential{UID: me, GID: uint32(os.Getgid()), Username: "owner"}

	cases := []struct {
		c    privdrop.Credential
		path string
		ok   bool
	}{
		{stranger, filepath.Join(open, "restart.txt"), true},
		{stranger, filepath.Join(closed, "restart.txt"), false},
		{stranger, filepath.Join(open, "tmp", "restart.txt"), false}, // the link leads into closed
		{owner, filepath.Join(closed, "restart.txt"), true},
		{owner, filepath.Join(open, "tmp", "restart.txt"), true},
	}
	for _, c := range cases {
		_, err := StatAs(c.c)(c.path)
		if (err == nil) != c.ok {
			t.Errorf("%s stat %s: %v, want ok=%v", c.c, c.path, err, c.ok)
		}
	}

	// In a watcher: the stranger's trigger behind the link never fires,
	// and that is said once.
	trig := filepath.Join(open, "tmp", "restart.txt")
	h := start(t, Options{Triggers: []string{trig}, Stat: StatAs(stranger)})
	for i := range 3 {
		later := time.Now().Add(time.Duration(i+1) * time.Minute)
		os.Chtimes(filepath.Join(inner, "restart.txt"), later, later)
		h.quiet(inner)
	}
	if n := strings.Count(h.log.String(), "reload trigger not checked"); n != 1 {
		t.Errorf("refusal logged %d times, want once:\n%s", n, h.log)
	}
}
