package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The review of issue 13's restructuring (master's Catalog, syscatalog,
// one table of tunables, App.Config): what pyctl says and exits with,
// verb by verb and caller by caller, on a system daemon and an express
// one. The restructuring meant to change no behaviour; these pin the
// answers it must keep.

// rvRun is one pyctl answer: its output and exit status.
type rvRun struct {
	out  string
	code int
}

func rvExit(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// rvNoise are the parts of an answer that differ between runs.
var rvNoise = regexp.MustCompile(`\b\d+(\.\d+)?(s|ms|µs)?\b|/tmp/\S+`)

// transcript records every answer, normalized, for a side-by-side
// comparison of two builds (REVIEW13_TRANSCRIPT names the file).
type transcript struct{ b strings.Builder }

func (tr *transcript) add(label string, r rvRun) {
	fmt.Fprintf(&tr.b, "== %s (exit %d)\n%s\n", label, r.code, rvNoise.ReplaceAllString(strings.TrimSpace(r.out), "N"))
}

func (tr *transcript) save(t *testing.T, name string) {
	if dir := os.Getenv("REVIEW13_TRANSCRIPT"); dir != "" {
		os.WriteFile(filepath.Join(dir, name), []byte(tr.b.String()), 0o644)
	}
}

// TestReview13SystemVerbs: every verb as root, the app's owner, another
// listed user and an unlisted one, on a system daemon.
func TestReview13SystemVerbs(t *testing.T) {
	t.Parallel()
	own, oth, unl := makeUser(t, "rv13own"), makeUser(t, "rv13oth"), makeUser(t, "rv13unl")
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"blog.rv13\", \"adm.rv13\"]\n[users.%s]\ndomains = [\"shop.rv13\"]\n", own.name, oth.name))
	deployNamed(t, own, "blog", "blog", `"blog.rv13"`, "")
	deployNamed(t, oth, "shop", "shop", `"shop.rv13"`, "")
	// An app the admin deploys for own (admin_dir): own sees it, only
	// root changes it.
	writeOwned(t, own, filepath.Join(own.home, "adm", "wsgi.py"), nameApp("adm"), 0o644)
	writeFile(t, filepath.Join(d.adminDir(), "adm.toml"), fmt.Sprintf("user = %q\ndomains = [\"adm.rv13\"]\nscript = \"wsgi.py\"\ndirectory = %q\nprocesses = 1\n", own.name, filepath.Join(own.home, "adm")))
	d.start()
	var tr transcript
	defer tr.save(t, "system.txt")
	run := func(who string, args ...string) rvRun {
		out, err := d.pyctl(who, args...)
		r := rvRun{out, rvExit(err)}
		tr.add(who+": pyctl "+strings.Join(args, " "), r)
		return r
	}
	blogFile := filepath.Join(userApps(own), "blog.toml")
	admFile := filepath.Join(d.adminDir(), "adm.toml")
	for _, key := range []string{own.name + "/blog", own.name + "/adm", oth.name + "/shop"} {
		eventually(t, 60*time.Second, key+" running", func() bool {
			out, _ := d.pyctl("root", "status", key)
			return strings.Contains(out, " running ")
		})
	}
	// expect checks one answer: its exit status and a part of it.
	expect := func(who string, code int, part string, args ...string) {
		t.Helper()
		r := run(who, args...)
		if r.code != code || !strings.Contains(r.out, part) {
			t.Errorf("%s: pyctl %s: exit %d, want %d with %q:\n%s", who, strings.Join(args, " "), r.code, code, part, r.out)
		}
	}
	const (
		unlisted = "is not a user the admin allows to host apps"
		noSuch   = "no such app"
		rootOnly = "access denied: only root may"
		admins   = "is deployed by the admin (admin_dir); only root may"
	)
	for _, who := range []string{"root", own.name, oth.name, unl.name} {
		blog, adm := "blog", "adm"
		if who == "root" {
			blog, adm = own.name+"/blog", own.name+"/adm"
		}
		// Seeing: root and the owner see both apps; another listed user
		// sees neither; an unlisted one is turned away.
		for _, args := range [][]string{{"status", blog}, {"logs", "-n", "1", blog}, {"status", adm}} {
			switch who {
			case "root", own.name:
				expect(who, 0, "", args...)
			case oth.name:
				expect(who, 1, noSuch, args...)
			default:
				expect(who, 1, unlisted, args...)
			}
		}
		expect(who, 0, "pyhostd dev (system", "version")
		// Changing: the owner changes their own app, not the admin's.
		for _, verb := range []string{"reload", "restart", "stop", "start"} {
			switch who {
			case "root":
				expect(who, 0, "", verb, blog)
				expect(who, 0, "", verb, adm)
			case own.name:
				expect(who, 0, "", verb, blog)
				expect(who, 1, admins, verb, adm)
			case oth.name:
				expect(who, 1, noSuch, verb, blog)
				expect(who, 1, noSuch, verb, adm)
			default:
				expect(who, 1, unlisted, verb, blog)
			}
		}
		// Checking: as the file would run for its owner; another user's
		// file is not theirs to run.
		switch who {
		case "root":
			expect(who, 0, "ok", "check", blogFile)
			expect(who, 0, "ok", "check", admFile)
		case own.name:
			expect(who, 0, "ok", "check", blogFile)
		case oth.name:
			expect(who, 1, "is not owned by the app's owner", "check", blogFile)
		default:
			expect(who, 1, unlisted, "check", blogFile)
		}
		// The daemon's own business is root's.
		if who == "root" {
			expect(who, 0, "0 started, 0 rolled, 0 stopped, 3 unchanged", "reload-config")
			expect(who, 0, "logs reopened", "reopen-logs")
		} else {
			expect(who, 1, rootOnly+" reload the daemon's config", "reload-config")
			expect(who, 1, rootOnly+" reopen the daemon's logs", "reopen-logs")
		}
	}
}

// TestReview13ExpressVerbs: every verb as root and as the serve user on
// an express daemon.
func TestReview13ExpressVerbs(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to ask as two users")
	}
	dir := writeApp(t, map[string]string{"wsgi.py": nameApp("x")})
	s := startServe(t, dir, "wsgi.py")
	os.Chmod(filepath.Dir(s.Control), 0o755)
	os.Chmod(s.Control, 0o777)
	var tr transcript
	defer tr.save(t, "express.txt")
	run := func(who string, args ...string) rvRun {
		full := append([]string{"--socket", s.Control}, args...)
		var cmd *exec.Cmd
		if who == "root" {
			cmd = exec.Command(filepath.Join(binDir, "pyctl"), full...)
		} else {
			cmd = exec.Command("runuser", append([]string{"-u", who, "--", filepath.Join(binDir, "pyctl")}, full...)...)
		}
		out, err := cmd.CombinedOutput()
		r := rvRun{string(out), rvExit(err)}
		tr.add(who+": pyctl "+strings.Join(args, " "), r)
		return r
	}
	name := s.status()[0].Name
	expect := func(who string, code int, part string, args ...string) {
		t.Helper()
		r := run(who, args...)
		if r.code != code || !strings.Contains(r.out, part) {
			t.Errorf("%s: pyctl %s: exit %d, want %d with %q:\n%s", who, strings.Join(args, " "), r.code, code, part, r.out)
		}
	}
	// Whoever reaches serve's socket is allowed; the app is its user's
	// (and root's) to see and change; check has no policy to check by;
	// the daemon's own business is its user's, here root's.
	for _, who := range []string{"root", testUser, "nobody"} {
		mine := who != "nobody"
		for _, args := range [][]string{{"logs", "-n", "1", name}, {"reload", name}, {"restart", name}, {"stop", name}, {"start", name}} {
			if mine {
				expect(who, 0, "", args...)
			} else {
				expect(who, 1, "no such app", args...)
			}
		}
		if mine {
			expect(who, 0, name, "status")
		} else {
			expect(who, 0, "no apps", "status")
		}
		expect(who, 1, "this daemon runs one app in express mode", "check", filepath.Join(dir, "wsgi.py"))
		expect(who, 0, "pyhostd dev (serve", "version")
		if who == "root" {
			expect(who, 1, "express mode has no config to reload", "reload-config")
			expect(who, 0, "logs reopened", "reopen-logs")
		} else {
			expect(who, 1, "only root may reload the daemon's config", "reload-config")
			expect(who, 1, "only root may reopen the daemon's logs", "reopen-logs")
		}
	}
}

// TestReview13ReloadConfigEdges: what reload-config does to apps whose
// files did not change when the admin config did. A [defaults] change
// changes every app's settings in force, so every app rolls onto it; a
// [users] max_memory change changes no app's settings (the user's
// cgroup takes it), so none rolls; nor does a disabled app whose file
// did not change.
func TestReview13ReloadConfigEdges(t *testing.T) {
	t.Parallel()
	own, oth := makeUser(t, "rv13edg"), makeUser(t, "rv13edh")
	users := func(defaults, maxMem string) string {
		return fmt.Sprintf("%s\n[users.%s]\ndomains = [\"e1.rv13\"]\nmax_memory = %q\n[users.%s]\ndomains = [\"e2.rv13\"]\n", defaults, own.name, maxMem, oth.name)
	}
	d := newSysd(t, users("", "1GiB"))
	deployNamed(t, own, "one", "one", `"e1.rv13"`, `memory_limit = "256MiB"`)
	deployNamed(t, oth, "two", "two", `"e2.rv13"`, "")
	d.start()
	var tr transcript
	defer tr.save(t, "edges.txt")
	reloadConfig := func(what string) string {
		t.Helper()
		out, err := d.pyctl("root", "reload-config")
		tr.add("reload-config: "+what, rvRun{out, rvExit(err)})
		if err != nil {
			t.Fatalf("reload-config (%s): %v\n%s", what, err, out)
		}
		return out
	}
	summary := regexp.MustCompile(`(\d+) started, (\d+) rolled, (\d+) stopped, (\d+) unchanged`)
	want := func(out, what, rolled, unchanged string) {
		t.Helper()
		m := summary.FindStringSubmatch(out)
		if m == nil || m[2] != rolled || m[4] != unchanged {
			t.Errorf("reload-config after %s: want %s rolled, %s unchanged; said:\n%s", what, rolled, unchanged, out)
		}
	}
	want(reloadConfig("nothing changed"), "nothing changed", "0", "2")
	d.writeAdmin(users("[defaults]\nmax_requests = 5000\n", "1GiB"))
	want(reloadConfig("[defaults] max_requests"), "a [defaults] change", "2", "0")
	want(reloadConfig("nothing changed since"), "nothing changed since the [defaults] change", "0", "2")
	d.writeAdmin(users("[defaults]\nmax_requests = 5000\n", "2GiB"))
	want(reloadConfig("[users] max_memory"), "a [users] max_memory change", "0", "2")
	// Disabled: the file's own watch stops the app; reload-config then
	// finds its settings in force (App.Disable) and leaves it.
	deployNamed(t, own, "one", "one", `"e1.rv13"`, "memory_limit = \"256MiB\"\nenabled = false")
	eventually(t, 30*time.Second, "one stopped by enabled = false", func() bool {
		out, _ := d.pyctl("root", "status", own.name+"/one")
		return strings.Contains(out, "stopped")
	})
	want(reloadConfig("one disabled"), "nothing but one disabled (and stopped by its watch)", "0", "2")
}

// TestReview13StopStartEdges: the verbs on an app in each of its states
// (running, stopped, disabled by its file), each asked twice, as its
// owner: every one succeeds, and leaves the app in the state it names.
// (pyctl start of a running app, disabled or not, leaves it alone and
// says "already running".)
func TestReview13StopStartEdges(t *testing.T) {
	t.Parallel()
	own := makeUser(t, "rv13ss")
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"ss.rv13\", \"off.rv13\"]\n", own.name))
	deployNamed(t, own, "ss", "ss", `"ss.rv13"`, "")
	deployNamed(t, own, "off", "off", `"off.rv13"`, "enabled = false")
	d.start()
	eventually(t, 60*time.Second, "ss running", func() bool {
		out, _ := d.pyctl(own.name, "status", "ss")
		return strings.Contains(out, " running ")
	})
	var tr transcript
	defer tr.save(t, "stopstart.txt")
	// run asks, and then asks status for the state the app is left in.
	run := func(want string, args ...string) {
		t.Helper()
		out, err := d.pyctl(own.name, args...)
		r := rvRun{out, rvExit(err)}
		tr.add(own.name+": pyctl "+strings.Join(args, " "), r)
		if r.code != 0 {
			t.Errorf("pyctl %s: exit %d:\n%s", strings.Join(args, " "), r.code, r.out)
		}
		st, _ := d.pyctl(own.name, "status", args[len(args)-1])
		if !strings.Contains(st, " "+want+" ") {
			t.Errorf("after pyctl %s: want %s:\n%s", strings.Join(args, " "), want, st)
		}
	}
	for _, app := range []string{"ss", "off"} {
		run("running", "start", app) // off begins stopped (enabled = false)
		run("stopped", "stop", app)
		run("stopped", "stop", app)
		if app == "ss" {
			run("running", "restart", app) // a stopped app's restart starts it
		} else {
			run("stopped", "restart", app) // enabled = false keeps it stopped
		}
		run("stopped", "stop", app)
		if app == "ss" {
			run("running", "reload", app)
		} else {
			run("stopped", "reload", app)
		}
		run("running", "start", app)
		run("running", "start", app)
	}
}
