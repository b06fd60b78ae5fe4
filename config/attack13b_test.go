package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/pyhost/pyhost/privdrop"
)

// tasks_max is held to the app's own processes and threads wherever
// they come together, not only in one app file: a serve flag that
// raises processes over the file's tasks_max is refused as the same
// file with that processes is (serve took it, and its workers could not
// start their threads), and a [defaults] tasks_max below what the
// [defaults] processes and threads need is an error of pyhost.toml, at
// its line (it was taken, and every app file that sets none of the
// three was refused naming a key it does not hold).
func TestTasksMaxHeldWhereverItMeetsProcesses(t *testing.T) {
	// The file alone is fine; with processes 64 it is refused.
	src := "app = \"m:app\"\ntasks_max = 100\n"
	app, _, err := ParseAppFile(appPath, []byte(src), alice, Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ParseAppFile(appPath, []byte(src+"processes = 64\n"), alice, Defaults{}); err == nil || !strings.Contains(err.Error(), "tasks_max: 100 is fewer tasks") {
		t.Fatalf("the file with processes = 64: %v, want it refused", err)
	}
	// serve blog.toml --processes 64: Apply, then Validate (applyFlags).
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	sf := AddServeFlags(fs)
	if err := fs.Parse([]string{"--processes", "64"}); err != nil {
		t.Fatal(err)
	}
	if err := sf.Apply(&app, fs.Changed); err != nil {
		t.Fatal(err)
	}
	if err := app.Validate(); err == nil || !strings.Contains(err.Error(), "tasks_max: 100 is fewer tasks than the app needs to run: processes 64 x (threads 4 + 2) + 1") {
		t.Errorf("serve blog.toml --processes 64, with tasks_max = 100 in the file: %v, want it refused as the file is", err)
	}

	// [defaults]: refused at its line; with threads lowered to fit, taken.
	_, err = ParseAdmin("/etc/pyhost/pyhost.toml", []byte("[defaults]\ntasks_max = 5\n"))
	want := "/etc/pyhost/pyhost.toml:2: defaults.tasks_max: 5 is fewer tasks than an app of the defaults needs to run: processes 1 x (threads 4 + 2) + 1"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("[defaults] tasks_max = 5:\n got %v\nwant %s…", err, want)
	}
	adm, err := ParseAdmin("/etc/pyhost/pyhost.toml", []byte("[defaults]\ntasks_max = 5\nthreads = 1\n"))
	if err != nil {
		t.Fatalf("[defaults] tasks_max = 5 with threads = 1 (1 x 3 + 1 = 4 tasks): %v", err)
	}
	// An app file over that default's floor is told where tasks_max came from.
	_, _, err = ParseAppFile(appPath, []byte("app = \"m:app\"\nprocesses = 2\n"), alice, adm.Defaults)
	if err == nil || !strings.Contains(err.Error(), "tasks_max: 5 (the admin's [defaults]) is fewer tasks") {
		t.Errorf("an app of 2 processes under [defaults] tasks_max = 5: %v, want it told the 5 is the admin's default", err)
	}
}

// A tenant's check of another tenant's file is answered as what it is:
// the file is theirs (the daemon loads it for them), so it is theirs, or
// root's, to check. It said the file "is not owned by the app's owner",
// which the master turned into "the daemon would refuse this file"; the
// daemon runs it. A link of the caller's own to that file is the
// caller's, and refused as Discover refuses it in their user_dir.
func TestCheckOfAnotherTenantsFile(t *testing.T) {
	f := newCheckFixture(t)
	bobs := f.write(filepath.Join(f.bob.Home, ".config/pyhost/apps/shop.toml"), f.bob.UID, fmt.Sprintf(goodApp, "bob.test"))
	err := f.run(f.alice, bobs)
	want := bobs + ": " + bobs + " is not owned by the app's owner (you, uid 51001) but by ck-bob (uid 51002), as whom it runs: it is ck-bob's to check (or root's: sudo pyctl check checks it as ck-bob's)"
	if err == nil || err.Error() != want || !errors.Is(err, ErrNotYours) {
		t.Errorf("alice checking bob's file:\n got %v\nwant %s", err, want)
	}
	if err := f.run(f.bob, bobs); err != nil {
		t.Errorf("bob checking his own file: %v", err)
	}
	// bob's file in alice's user_dir (a directory she let him write) is
	// refused among her files, as Discover refuses it there.
	mine := f.write(filepath.Join(f.admin.Apps.UserDirOf(f.alice.Home), "blog.toml"), f.alice.UID, fmt.Sprintf(goodApp, "alice.test"))
	planted := filepath.Join(filepath.Dir(mine), "planted.toml")
	if err := os.WriteFile(planted, []byte(fmt.Sprintf(goodApp, "bob.test")), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(planted, int(f.bob.UID), int(f.bob.GID))
	if err := f.run(f.alice, planted); err == nil || errors.Is(err, ErrNotYours) || !errors.Is(err, ErrUntrusted) {
		t.Errorf("alice checking bob's file in her user_dir: %v, want it refused as untrusted, as Discover refuses it", err)
	}
	link := filepath.Join(f.alice.Home, "shop-link.toml")
	if err := os.Symlink(bobs, link); err != nil {
		t.Fatal(err)
	}
	os.Lchown(link, int(f.alice.UID), int(f.alice.GID))
	if err := f.run(f.alice, link); err == nil || errors.Is(err, ErrNotYours) || !errors.Is(err, ErrUntrusted) {
		t.Errorf("alice checking her link to bob's file: %v, want it refused as untrusted (Discover refuses it so)", err)
	}
}

// serve's proxy-limit flags say a duration as the tunables' flags and
// the docs do ("25h"), not as Go prints it ("25h0m0s").
func TestProxyLimitFlagsSayDurationsAsTheDocs(t *testing.T) {
	l := ProxyLimits{SendTimeout: 25 * time.Hour, KeepaliveTimeout: DefaultKeepaliveTimeout, ClientBodyTimeout: DefaultClientBodyTimeout, MaxConnections: DefaultMaxConnections}
	err := l.Validate(func(key string) string { return "--" + flagName(key) })
	if err == nil || !strings.Contains(err.Error(), "--send-timeout: ") || !strings.Contains(err.Error(), "got 25h") || strings.Contains(err.Error(), "25h0m0s") {
		t.Errorf("--send-timeout 25h: %v, want it said as 25h", err)
	}
}

// A link in a tenant's own user_dir to a file of admin_dir is one of
// their app files: Discover reads it among theirs and refuses it (the
// file it reaches is root's), and pyhostd check and pyctl status say so.
// Their pyctl check of it said it was the admin's to check; it says
// what the daemon says.
func TestCheckOfALinkInTheUserDirToAdminDir(t *testing.T) {
	f := newCheckFixture(t)
	site := f.write(filepath.Join(f.adminDir, "site.toml"), 0, "user = \"ck-alice\"\n"+fmt.Sprintf(goodApp, "alice.test"))
	dir := f.admin.Apps.UserDirOf(f.alice.Home)
	f.write(filepath.Join(dir, "blog.toml"), f.alice.UID, fmt.Sprintf(goodApp, "alice.test"))
	link := filepath.Join(dir, "site.toml")
	if err := os.Symlink(site, link); err != nil {
		t.Fatal(err)
	}
	os.Lchown(link, int(f.alice.UID), int(f.alice.GID))
	err := f.run(f.alice, link)
	if err == nil || errors.Is(err, ErrAdminDir) || !errors.Is(err, ErrUntrusted) {
		t.Errorf("alice checking her link to an admin_dir file in her user_dir: %v, want it refused as untrusted, as Discover refuses it", err)
	}
	if err := f.run(f.alice, site); !errors.Is(err, ErrAdminDir) {
		t.Errorf("alice checking the admin_dir file itself: %v, want ErrAdminDir", err)
	}
	// Root's check of the link is for whoever the file runs as, alice,
	// among whose files the daemon refuses it; of the admin's file, ok.
	root := privdrop.Credential{Username: "root", Home: "/root"}
	if err := f.run(root, link); err == nil || !errors.Is(err, ErrUntrusted) {
		t.Errorf("root checking alice's link in her user_dir: %v, want it refused as the daemon refuses it", err)
	}
	if err := f.run(root, site); err != nil {
		t.Errorf("root checking the admin_dir file: %v", err)
	}
}
