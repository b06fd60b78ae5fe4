package privdrop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckAccess(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	open := filepath.Join(dir, "open")
	closed := filepath.Join(dir, "closed")
	os.Mkdir(open, 0o755)
	os.Mkdir(closed, 0o700)
	for _, d := range []string{open, closed} {
		os.WriteFile(filepath.Join(d, "app.py"), nil, 0o644)
	}
	os.WriteFile(filepath.Join(open, "secret.py"), nil, 0o600)
	me := uint32(os.Getuid())
	stranger := Credential{UID: me + 4242, GID: 4242, Username: "stranger"}
	owner := Credential{UID: me, GID: uint32(os.Getgid()), Username: "owner"}
	// t.TempDir's parents may be private to their owner (0700); only
	// judge what is under dir for the stranger.
	if err := CheckAccess(stranger, dir, Execute); err != nil {
		t.Skipf("the temp directory is private here: %v", err)
	}
	cases := []struct {
		c    Credential
		path string
		want uint32
		ok   bool
		msg  string
	}{
		{stranger, filepath.Join(open, "app.py"), Read, true, ""},
		{stranger, filepath.Join(closed, "app.py"), Read, false, "cannot enter " + closed},
		{stranger, filepath.Join(open, "secret.py"), Read, false, "cannot read " + filepath.Join(open, "secret.py")},
		{owner, filepath.Join(closed, "app.py"), Read, true, ""},
		{stranger, filepath.Join(open, "app.py"), Execute, false, "cannot run"},
		{Credential{UID: 0}, filepath.Join(closed, "app.py"), Read, true, ""},
	}
	for _, c := range cases {
		err := CheckAccess(c.c, c.path, c.want)
		if (err == nil) != c.ok || (err != nil && !strings.Contains(err.Error(), c.msg)) {
			t.Errorf("%s %s want %d: %v (want ok=%v, message with %q)", c.c.Username, c.path, c.want, err, c.ok, c.msg)
		}
	}
}
