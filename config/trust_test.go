package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyhost/pyhost/privdrop"
)

// trustAdmin lets alice deploy blog.example.com.
var trustAdmin = Admin{
	Path:     "/etc/pyhost/pyhost.toml",
	Defaults: BuiltinDefaults(),
	Users:    map[string]UserPolicy{"alice": {Domains: []string{"blog.example.com"}}},
}

// What decides the code an app runs is checked Trusted (U4); what the
// proxy only reads, and a python looked up on PATH, are not.
func TestAdmitAppWantsTrust(t *testing.T) {
	src := `domains = ["blog.example.com"]
script = "wsgi.py"
directory = "~/blog"
python = "~/venv/bin/python"
python_path = ["~/lib", "/usr/lib/python3/dist-packages"]
static = [{ url = "/static/", dir = "~/blog/static" }, { url = "/all/", dir = "~/blog" }]
`
	app, meta, err := ParseAppFile(appPath, []byte(src), alice, BuiltinDefaults())
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]uint32
	record := func(_ privdrop.Credential, want map[string]uint32) error { got = want; return nil }
	if err := admitApp(trustAdmin, alice, app, meta, nil, record); err != nil {
		t.Fatal(err)
	}
	const rx, trusted = privdrop.Read | privdrop.Execute, privdrop.Trusted
	const dir, file = privdrop.Directory, privdrop.RegularFile
	want := map[string]uint32{
		"/home/alice/blog":               rx | trusted | dir, // a static dir too: still trusted
		"/home/alice/blog/wsgi.py":       privdrop.Read | trusted | file,
		"/home/alice/venv/bin/python":    privdrop.Execute | privdrop.Interpreter | file,
		"/home/alice/lib":                rx | trusted, // a directory or a zip file
		"/usr/lib/python3/dist-packages": rx | trusted,
		"/home/alice/blog/static":        rx | dir,
		"/home/alice":                    privdrop.UserSite, // whatever python is
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("paths checked:\n got %v\nwant %v", got, want)
	}

	app.Python = "python3"
	if err := admitApp(trustAdmin, alice, app, meta, nil, record); err != nil {
		t.Fatal(err)
	}
	if _, ok := got["python3"]; ok {
		t.Errorf("python3 (looked up on PATH) was checked as a path: %v", got)
	}
}

// inProcess checks as __access does, in this process (so with the test's
// rights, not the app owner's).
func inProcess(cred privdrop.Credential, want map[string]uint32) error {
	var errs []error
	for p, bits := range want {
		switch {
		case bits&privdrop.Interpreter != 0:
			errs = append(errs, privdrop.CheckInterpreter(privdrop.Lstat, filepath.Glob, cred.UID, p))
		case bits&privdrop.Trusted != 0:
			errs = append(errs, privdrop.CheckTrusted(privdrop.Lstat, cred.UID, p))
		}
	}
	return errors.Join(errs...)
}

// The reported case (issue 9): directory = "~/wdir" after
// mkdir -m 777 ~/wdir was admitted, so another user could plant code.
func TestAdmitAppRefusesWorldWritableDirectory(t *testing.T) {
	base := t.TempDir()
	me := privdrop.Credential{UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Username: "alice", Home: base}
	if me.IsRoot() {
		me.UID, me.GID = 4242, 4242 // apps never run as root: give the files to someone
	}
	if err := privdrop.CheckTrusted(privdrop.Lstat, me.UID, base); err != nil {
		t.Skipf("the temp directory cannot be trusted here (as root it is root's): %v", err)
	}
	wdir := filepath.Join(base, "wdir")
	script := filepath.Join(wdir, "wsgi.py")
	os.Mkdir(wdir, 0o755)
	os.WriteFile(script, nil, 0o644)
	os.Chown(wdir, int(me.UID), int(me.GID))
	os.Chown(script, int(me.UID), int(me.GID))
	src := fmt.Sprintf("domains = [\"blog.example.com\"]\nscript = \"wsgi.py\"\ndirectory = %q\n", wdir)
	app, meta, err := ParseAppFile(filepath.Join(base, "blog.toml"), []byte(src), me, BuiltinDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if err := admitApp(trustAdmin, me, app, meta, nil, inProcess); err != nil {
		t.Fatalf("a 0755 directory of the owner's: %v", err)
	}

	os.Chmod(wdir, 0o777)
	err = admitApp(trustAdmin, me, app, meta, nil, inProcess)
	var ue *privdrop.UntrustedError
	msg := wdir + " is writable by group or others (mode 0777); run chmod go-w " + wdir
	if !errors.As(err, &ue) || ue.Bad != wdir || !strings.Contains(err.Error(), msg) {
		t.Errorf("a 0777 directory: %v; want an untrusted-path error with %q", err, msg)
	}
}
