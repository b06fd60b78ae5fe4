package privdrop

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The test binary doubles as the child process: with PYHOST_PRIVDROP_HELPER
// set it prints what the kernel says about itself and exits.
func TestMain(m *testing.M) {
	if os.Getenv("PYHOST_PRIVDROP_HELPER") == "report" {
		report()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func report() {
	b, _ := os.ReadFile("/proc/self/status")
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		for _, k := range []string{"Uid:", "Gid:", "Groups:", "NoNewPrivs:"} {
			if strings.HasPrefix(line, k) {
				fmt.Println(line)
			}
		}
	}
	fmt.Printf("Pgid:\t%d\t%d\n", syscall.Getpgrp(), os.Getpid())
	for _, kv := range os.Environ() {
		fmt.Println("ENV\t" + kv)
	}
}

func TestCleanEnv(t *testing.T) {
	c := Credential{UID: 1000, Username: "alice", Home: "/home/alice"}
	env := CleanEnv(c, map[string]string{"DJANGO_SETTINGS_MODULE": "blog.settings", "LANG": "de_DE.UTF-8", "NOTIFY_SOCKET": "/run/x", "LISTEN_FDS": "3"})
	got := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	want := map[string]string{
		"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/home/alice", "USER": "alice", "LOGNAME": "alice",
		"LANG": "de_DE.UTF-8", "DJANGO_SETTINGS_MODULE": "blog.settings",
	}
	if len(got) != len(want) {
		t.Errorf("environment %v, want exactly %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
}

func TestSysProcAttrAlwaysSetsGroupsForRoot(t *testing.T) {
	a := SysProcAttr(Credential{UID: 1000, GID: 1000})
	if !a.Setpgid || a.Pdeathsig != syscall.SIGKILL {
		t.Errorf("attr %+v lacks its own process group or parent-death signal", a)
	}
	if os.Geteuid() == 0 {
		if a.Credential == nil || a.Credential.Groups == nil || a.Credential.NoSetGroups {
			t.Errorf("root spawning uid 1000: credential %+v must set groups explicitly", a.Credential)
		}
	}
}

func TestLookup(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Skip("no passwd entry for the current user:", err)
	}
	c, err := Lookup(me.Username)
	if err != nil {
		t.Fatal(err)
	}
	if strconv.Itoa(int(c.UID)) != me.Uid || c.Home != me.HomeDir {
		t.Errorf("Lookup(%s) = %+v", me.Username, c)
	}
	byID, err := Lookup(me.Uid)
	if err != nil || byID.UID != c.UID {
		t.Errorf("Lookup by uid %s = %+v, %v", me.Uid, byID, err)
	}
	if _, err := Lookup("no-such-user-pyhost"); err == nil {
		t.Error("unknown user found")
	}
}

// TestSpawnedChildCredentials checks, as root, what a child started the
// way workers are started really is: uid, gid, supplementary groups, no
// new privileges, its own process group, and nothing of our environment.
func TestSpawnedChildCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to another user")
	}
	c, err := Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody:", err)
	}
	// A supplementary group the user is not in by the group database: the
	// child must get exactly the groups we pass.
	c.Groups = []uint32{c.GID, 4242}
	sp, err := NewSpawner()
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	cmd := exec.Command(self)
	os.Setenv("PYHOST_CANARY", "leak")
	defer os.Unsetenv("PYHOST_CANARY")
	cmd.Env = append(CleanEnv(c, nil), "PYHOST_PRIVDROP_HELPER=report")
	cmd.SysProcAttr = SysProcAttr(c)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// The test binary sits in a root-only temp directory; the child opens
	// it by the kernel's link, as pyhostd does for its proxy.
	cmd.Path = "/proc/self/exe"
	if err := sp.Start(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	lines := map[string]string{}
	var env []string
	for _, l := range strings.Split(out.String(), "\n") {
		k, v, _ := strings.Cut(l, "\t")
		if k == "ENV" {
			env = append(env, v)
			continue
		}
		lines[k] = strings.Join(strings.Fields(v), " ")
	}
	uid, gid := strconv.Itoa(int(c.UID)), strconv.Itoa(int(c.GID))
	checks := map[string]string{
		"Uid:":        strings.Repeat(uid+" ", 3) + uid,
		"Gid:":        strings.Repeat(gid+" ", 3) + gid,
		"NoNewPrivs:": "1",
	}
	for k, want := range checks {
		if lines[k] != want {
			t.Errorf("child %s %q, want %q\n%s", k, lines[k], want, out.String())
		}
	}
	groups := strings.Fields(lines["Groups:"])
	sort.Strings(groups)
	if want := []string{"4242", gid}; strings.Join(groups, " ") != strings.Join(want, " ") {
		t.Errorf("child groups %v, want exactly %v", groups, want)
	}
	if pg := strings.Fields(lines["Pgid:"]); len(pg) != 2 || pg[0] != pg[1] {
		t.Errorf("child is not the leader of its own process group: %q", lines["Pgid:"])
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "PYHOST_CANARY=") {
			t.Errorf("the daemon's environment leaked into the child: %s", kv)
		}
	}
}

func TestGroupHasNoMembers(t *testing.T) {
	etc := "root:x:0:\nusers:x:100:alice,bob\nalice:x:1001:\nbob:x:1002:carol\n"
	for name, want := range map[string]bool{"alice": true, "bob": false, "users": false, "nobody": false, "root": true} {
		if got := groupHasNoMembers(etc, name); got != want {
			t.Errorf("groupHasNoMembers(%q) = %v, want %v", name, got, want)
		}
	}
}
