package privdrop

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// LstatAs answers with the owner's rights, symlinked directories
// included, and leaves every thread with root's rights after.
func TestLstatAs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it changes a thread's fsuid")
	}
	base := t.TempDir()
	// t.TempDir's own parent is root's alone (0700): open both for the
	// test's other user.
	os.Chmod(filepath.Dir(base), 0o755)
	os.Chmod(base, 0o755)
	private := filepath.Join(base, "private")
	public := filepath.Join(base, "public")
	for _, d := range []string{private, public} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(private, 0o700) // root's alone
	link := filepath.Join(base, "link")
	if err := os.Symlink(private, link); err != nil {
		t.Fatal(err)
	}
	nobody := Credential{UID: 65534, GID: 65534, Username: "nobody"}

	if _, err := LstatAs(nobody, filepath.Join(public, "f")); err != nil {
		t.Errorf("a file in a directory nobody may search: %v", err)
	}
	for _, p := range []string{filepath.Join(private, "f"), filepath.Join(link, "f"), filepath.Join(private, "missing")} {
		if _, err := LstatAs(nobody, p); !errors.Is(err, fs.ErrPermission) {
			t.Errorf("%s as nobody: %v, want permission denied", p, err)
		}
	}
	// A group the credential holds opens a group-searchable directory.
	os.Chown(private, 0, 4242)
	os.Chmod(private, 0o710)
	if _, err := LstatAs(Credential{UID: 65534, GID: 65534, Groups: []uint32{4242}}, filepath.Join(private, "f")); err != nil {
		t.Errorf("through a supplementary group: %v", err)
	}
	os.Chmod(private, 0o700)

	// Every thread that ran one is root again: root's own stats of the
	// private file succeed from many goroutines afterwards.
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			LstatAs(nobody, filepath.Join(private, "f"))
			if _, err := os.Stat(filepath.Join(private, "f")); err != nil {
				t.Errorf("root after LstatAs: %v", err)
			}
		}()
	}
	wg.Wait()
}
