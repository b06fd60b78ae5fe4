package integration

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestServeStaticFlag: --static URL=DIR serves as [[static]] does: the
// file, a Range of it, 404 for a missing file and for a symlink out of
// the directory, and the app for the rest.
func TestServeStaticFlag(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{
		"wsgi.py":            validated(basicApp),
		"assets/hello.txt":   "static hello\n",
		"outside/secret.txt": "secret\n",
	})
	os.Symlink(filepath.Join(dir, "outside", "secret.txt"), filepath.Join(dir, "assets", "leak.txt"))
	s := startServe(t, dir, "--static", "/static/=assets", "wsgi.py")
	cases := []struct {
		path, rng string
		code      int
		body      string
	}{
		{"/static/hello.txt", "", 200, "static hello\n"},
		{"/static/hello.txt", "bytes=7-11", 206, "hello"},
		{"/static/missing.txt", "", 404, ""},
		{"/static/leak.txt", "", 404, ""},
		{"/pid", "", 200, ""}, // the app still answers the rest
	}
	for _, c := range cases {
		req, _ := http.NewRequest("GET", s.URL+c.path, nil)
		if c.rng != "" {
			req.Header.Set("Range", c.rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || (c.body != "" && string(b) != c.body) {
			t.Errorf("GET %s (Range %q): %d %q, want %d %q", c.path, c.rng, resp.StatusCode, b, c.code, c.body)
		}
	}
}

// TestServeStaticFlagRefused: a --static that cannot be served is a
// usage error before anything starts.
func TestServeStaticFlagRefused(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(basicApp)})
	s := launch(t, dir, serveArgs("--static", "/static/=nothere", "wsgi.py")...)
	if err := s.waitExit(30 * time.Second); err == nil {
		t.Fatalf("serve with a missing --static directory exited 0:\n%s", s.out)
	}
}

const deployApp = `
def application(environ, start_response):
    body = VERSION.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`

func versioned(v string) string { return "VERSION = \"" + v + "\"\n" + deployApp }

// answers reports whether url answers 200 with body want.
func answers(url, want string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == 200 && string(b) == want
}

// TestServeReload: with --reload an edit is served within a few seconds;
// an edit that does not import keeps the old code serving and prints the
// traceback; fixing it is picked up again.
func TestServeReload(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": versioned("one")})
	s := startServe(t, dir, "--reload", "wsgi.py")
	if _, body := get(t, s.URL+"/"); body != "one" {
		t.Fatalf("before the edit: %q", body)
	}
	write := func(src string) {
		t.Helper()
		// Written whole and renamed over, as editors save.
		tmp := filepath.Join(dir, ".wsgi.py.tmp")
		if err := os.WriteFile(tmp, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "wsgi.py")); err != nil {
			t.Fatal(err)
		}
	}
	write(versioned("two"))
	eventually(t, 5*time.Second, "the edit served", func() bool { return answers(s.URL+"/", "two") })
	s.waitLine(regexp.MustCompile(`reload of .*wsgi\.py changed`), 5*time.Second)

	write("VERSION = (\n" + deployApp)
	s.waitLine(regexp.MustCompile(`SyntaxError`), 10*time.Second)
	s.waitLine(regexp.MustCompile(`reload failed; the running version keeps serving`), 10*time.Second)
	if _, body := get(t, s.URL+"/"); body != "two" {
		t.Fatalf("after a broken edit: %q, want the old code's answer", body)
	}

	write(versioned("three"))
	eventually(t, 5*time.Second, "the fixed edit served", func() bool { return answers(s.URL+"/", "three") })
}

// TestServeHUPRollsUnderLoad: SIGHUP rolls the app in serve (it used to
// kill it): under load from 4 clients no request fails and the new code
// answers after; each request gets a line on the terminal.
func TestServeHUPRollsUnderLoad(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": versioned("one")})
	s := startServe(t, dir, "--processes", "2", "wsgi.py")
	if _, body := get(t, s.URL+"/"); body != "one" {
		t.Fatalf("before: %q", body)
	}
	s.waitLine(regexp.MustCompile(`^\[wsgi\] GET / 200 \S+ 3B$`), 5*time.Second)
	if err := os.WriteFile(filepath.Join(dir, "wsgi.py"), []byte(versioned("two")), 0o644); err != nil {
		t.Fatal(err)
	}
	var (
		mu             sync.Mutex
		failed, served int
		sawTwo         bool
	)
	started := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 20 * time.Second}
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				resp, err := client.Get(s.URL + "/")
				ok := err == nil && resp.StatusCode == 200
				var b []byte
				if err == nil {
					b, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				served++
				if !ok {
					failed++
				}
				if string(b) == "two" {
					sawTwo = true
				}
				done := sawTwo && served >= 200
				mu.Unlock()
				once.Do(func() { close(started) })
				if done {
					return
				}
			}
		}()
	}
	<-started
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	// From the whole output: the 400 request lines may have overrun
	// waitLine's buffer.
	hupRE := regexp.MustCompile(`reload of \S+: SIGHUP`)
	eventually(t, 10*time.Second, "the reload logged", func() bool { return hupRE.MatchString(s.out.String()) })
	if failed > 0 {
		t.Errorf("%d of %d requests failed during the SIGHUP reload", failed, served)
	}
	eventually(t, 10*time.Second, "the new code served", func() bool { return answers(s.URL+"/", "two") })
	select {
	case <-s.exited:
		t.Fatalf("serve exited on SIGHUP: %v\n%s", s.exitErr, s.out)
	default:
	}
}

// TestTouchToReload (D2, system mode): touching the app file, or its
// reload_trigger, rolls the app once; a burst of 50 touches rolls it once
// or twice, not 50 times; a touched file that is now broken fails the
// reload as pyctl reload would, and the old workers keep serving.
func TestTouchToReload(t *testing.T) {
	t.Parallel()
	const ann = "pyh-dp-ann"
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"touch.test\"]\n", ann))
	a := makeUser(t, ann)
	deployNamed(t, a, "blog", "blog", `"touch.test"`, `reload_trigger = "~/blog/tmp/restart.txt"`)
	trigger := filepath.Join(a.home, "blog/tmp/restart.txt")
	writeOwned(t, a, trigger, "", 0o644)
	appFile := filepath.Join(userApps(a), "blog.toml")
	d.start()
	key := ann + "/blog"
	pid := func() string {
		_, body := d.get("touch.test", "/")
		return body
	}
	touches := 0
	touch := func(path string) {
		t.Helper()
		touches++
		// Distinct times: each touch is a change even within the
		// kernel's mtime tick.
		at := time.Now().Add(time.Duration(touches) * time.Second)
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
	count := func(re *regexp.Regexp) int { return len(re.FindAllString(d.logs.String(), -1)) }
	done := regexp.MustCompile(regexp.QuoteMeta("reload of " + key + " done"))
	rolled := func(what string, before int) {
		t.Helper()
		eventually(t, 10*time.Second, what+" rolls the app", func() bool { return count(done) > before })
	}

	first := pid()
	n := count(done)
	touch(appFile)
	rolled("touching the app file", n)
	if !strings.Contains(d.logs.String(), "reload of "+key+": "+appFile+" touched") {
		t.Errorf("the reload does not say what triggered it:\n%s", d.logs)
	}
	second := pid()
	if second == first {
		t.Errorf("the same worker answers after the reload: %s", second)
	}

	n = count(done)
	touch(trigger)
	rolled("touching the reload_trigger", n)
	if !strings.Contains(d.logs.String(), "reload of "+key+": "+trigger+" touched") {
		t.Errorf("the reload does not name the trigger:\n%s", d.logs)
	}
	if third := pid(); third == second {
		t.Errorf("the same worker answers after the trigger's reload: %s", third)
	}

	// A burst: 50 touches, then one touch of the app file as a marker.
	// The watcher reports in order, so once the marker's reload is
	// logged, every reload the burst made is too.
	byTrigger := regexp.MustCompile(regexp.QuoteMeta("reload of "+key+": ") + `[^\n]*` + regexp.QuoteMeta(trigger))
	before := count(byTrigger)
	for i := 0; i < 50; i++ {
		touch(trigger)
	}
	n = count(done)
	rolled("the burst", n)
	marker := regexp.MustCompile(regexp.QuoteMeta("reload of "+key+": ") + `[^\n]*` + regexp.QuoteMeta(appFile))
	markers := count(marker)
	touch(appFile)
	eventually(t, 10*time.Second, "the marker's reload", func() bool { return count(marker) > markers })
	if rolls := count(byTrigger) - before; rolls < 1 || rolls > 2 {
		t.Errorf("a burst of 50 touches rolled the app %d times, want 1 or 2", rolls)
	}

	// Broken, then touched: refused as pyctl reload would, logged, and
	// the running version keeps serving.
	writeOwned(t, a, appFile, "domains = [\"touch.test\"]\nscript = \"wsgi.py\"\ndirectory = \"~/blog\"\nprocesses = \"two\"\n", 0o644)
	failed := regexp.MustCompile(`reload failed; the running version keeps serving[^\n]*` + regexp.QuoteMeta(key))
	eventually(t, 10*time.Second, "the broken file's reload failing", func() bool { return count(failed) > 0 })
	if code, body := d.get("touch.test", "/"); code != 200 || !strings.HasPrefix(body, "blog ") {
		t.Errorf("after a broken app file: %d %q, want the old version serving", code, body)
	}
}

// TestServeTouchAppFile: serve of an app file rolls the app when the
// file is touched, without --reload.
func TestServeTouchAppFile(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{
		"wsgi.py":  validated(basicApp),
		"app.toml": "script = \"wsgi.py\"\n",
	})
	s := startServe(t, dir, "app.toml")
	_, before := get(t, s.URL+"/pid")
	at := time.Now().Add(time.Second)
	if err := os.Chtimes(filepath.Join(dir, "app.toml"), at, at); err != nil {
		t.Fatal(err)
	}
	s.waitLine(regexp.MustCompile(`reload of \S+: \S+app\.toml touched`), 10*time.Second)
	eventually(t, 10*time.Second, "a new worker after the touch", func() bool {
		_, now := get(t, s.URL+"/pid")
		return now != before
	})
}

// TestPersistentStop (D5): enabled = false keeps an app stopped across
// daemon restarts, its domain held; pyctl start starts it until the next
// restart and says so; pyctl stop says how long its stop lasts.
func TestPersistentStop(t *testing.T) {
	// Not parallel: shares pyh-dp-ann with TestTouchToReload.
	const ann = "pyh-dp-ann"
	d := newSysd(t, fmt.Sprintf("[users.%s]\ndomains = [\"off.test\", \"on.test\"]\n", ann))
	a := makeUser(t, ann)
	deployNamed(t, a, "off", "off", `"off.test"`, "enabled = false")
	deployNamed(t, a, "on", "on", `"on.test"`, "")
	d.start()
	stopped := func(when string) {
		t.Helper()
		if code, body := d.get("off.test", "/"); code != 503 {
			t.Errorf("%s: the disabled app answered %d %q, want 503", when, code, body)
		}
		out, err := d.pyctl(ann, "status", "--json", "off")
		if err != nil || !strings.Contains(out, `"stopped"`) {
			t.Errorf("%s: pyctl status off: %v\n%s", when, err, out)
		}
	}
	stopped("at start")
	if code, body := d.get("on.test", "/"); code != 200 || !strings.HasPrefix(body, "on ") {
		t.Fatalf("the enabled app: %d %q", code, body)
	}

	out, err := d.pyctl(ann, "start", "off")
	if err != nil || !strings.Contains(out, "stays disabled") {
		t.Errorf("pyctl start of a disabled app: %v\n%s", err, out)
	}
	if code, body := d.get("off.test", "/"); code != 200 || !strings.HasPrefix(body, "off ") {
		t.Errorf("after pyctl start: %d %q", code, body)
	}

	out, err = d.pyctl(ann, "stop", "on")
	if err != nil || !strings.Contains(out, "until the next daemon restart; set enabled = false in") {
		t.Errorf("pyctl stop of an enabled app: %v\n%s", err, out)
	}

	d.restart()
	stopped("after a restart")
	if code, body := d.get("on.test", "/"); code != 200 || !strings.HasPrefix(body, "on ") {
		t.Errorf("the app stopped with pyctl stop, after a restart: %d %q, want it serving", code, body)
	}
	out, err = d.pyctl(ann, "stop", "off")
	if err != nil || !strings.Contains(out, "keeps it stopped across daemon restarts") {
		t.Errorf("pyctl stop of a disabled app: %v\n%s", err, out)
	}
}

// TestServeStableSocket (D4): serve run by a user with XDG_RUNTIME_DIR
// listens for pyctl at $XDG_RUNTIME_DIR/pyhost/APP.sock, and pyctl run
// by that user with no --socket finds it (no system daemon here).
func TestServeStableSocket(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("runs serve as the test user: needs root")
	}
	if _, err := os.Stat("/run/pyhost/control.sock"); err == nil {
		t.Skip("a system daemon runs here; pyctl would ask it")
	}
	dir := writeApp(t, map[string]string{"wsgi.py": validated(basicApp)})
	xdg, err := os.MkdirTemp(baseDir, "xdg-")
	if err != nil {
		t.Fatal(err)
	}
	u, err := user.Lookup(testUser)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	os.Chown(xdg, uid, uid)
	os.Chmod(xdg, 0o700)
	as := func(bin string, args ...string) *exec.Cmd {
		cmd := exec.Command("runuser", append([]string{"-u", testUser, "--", "env", "XDG_RUNTIME_DIR=" + xdg, "PYHOST_SOCKET=", filepath.Join(binDir, bin)}, args...)...)
		cmd.Dir = dir
		return cmd
	}
	serve := as("pyhostd", "serve", "--listen", "127.0.0.1:0", "--python", python, "wsgi.py")
	serve.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, _ := serve.StdoutPipe()
	serve.Stderr = io.Discard
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		serve.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		syscall.Kill(-serve.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			syscall.Kill(-serve.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	want := filepath.Join(xdg, "pyhost", "wsgi.sock")
	deadline := time.After(30 * time.Second)
	for found := false; !found; {
		select {
		case l := <-lines:
			if m := controlRE.FindStringSubmatch(l); m != nil {
				if m[1] != want {
					t.Fatalf("control socket %s, want %s", m[1], want)
				}
				found = true
			}
		case <-exited:
			t.Fatal("serve exited before serving")
		case <-deadline:
			t.Fatal("serve did not print its control socket within 30s")
		}
	}
	b, err := as("pyctl", "status").CombinedOutput()
	if err != nil || !strings.Contains(string(b), "wsgi") {
		t.Errorf("pyctl status with no --socket: %v\n%s", err, b)
	}
}

// TestServeReloadBadGlob: a glob that cannot match is a usage error
// before anything starts.
func TestServeReloadBadGlob(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(basicApp)})
	s := launch(t, dir, serveArgs("--reload", "--reload-include", "[", "wsgi.py")...)
	err := s.waitExit(30 * time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("serve --reload-include '[': %v, want exit status 2\n%s", err, s.out)
	}
}

// A Django project imports its URLconf and views at the first request,
// not at import: the shape D3's warm-up exists for.
func djangoWarmupFiles(views string) map[string]string {
	return map[string]string{
		"proj/__init__.py": "",
		"proj/settings.py": `SECRET_KEY = "test"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "proj.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
`,
		"proj/urls.py":  "from django.urls import path\nfrom proj import views\nurlpatterns = [path('', views.index)]\n",
		"proj/views.py": views,
		"wsgi.py":       "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'proj.settings')\nfrom django.core.wsgi import get_wsgi_application\napplication = get_wsgi_application()\n",
	}
}

func djangoView(v string) string {
	return "from django.http import HttpResponse\ndef index(request):\n    return HttpResponse(" + strconv.Quote(v) + ")\n"
}

// TestWarmupDjango (D3): with --warmup /, a reload whose views.py does
// not compile (Django finds out at the first request, after the import
// that a reload checks) fails its warm-up: pyctl reload says so with the
// traceback, the old workers serve throughout with no failed request
// under load, and a fixed views.py rolls in.
func TestWarmupDjango(t *testing.T) {
	t.Parallel()
	if exec.Command(python, "-c", "import django").Run() != nil {
		t.Skip("Django is not installed (Debian: python3-django)")
	}
	dir := writeApp(t, djangoWarmupFiles(djangoView("one")))
	s := startServe(t, dir, "--processes", "2", "--threads", "2", "--warmup", "/", "wsgi.py")
	if _, body := get(t, s.URL+"/"); body != "one" {
		t.Fatalf("before: %q", body)
	}
	// Both first workers ready (warmed up) before views.py changes:
	// Django imports views at the first request, so a first worker still
	// warming up when the broken file lands fails on it too, outside the
	// reload this test is about.
	eventually(t, 30*time.Second, "both first workers ready", func() bool {
		st := s.status()
		if len(st) != 1 || len(st[0].Workers) != 2 {
			return false
		}
		for _, w := range st[0].Workers {
			if w.State != "ready" {
				return false
			}
		}
		return true
	})

	var failed, served atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 20 * time.Second}
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Bounded: at most 2,000 requests a client, or until stopped.
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(s.URL + "/")
				if err != nil {
					failed.Add(1)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				served.Add(1)
				if resp.StatusCode != 200 || (string(b) != "one" && string(b) != "two") {
					failed.Add(1)
				}
			}
		}()
	}
	pyctl := func(args ...string) (string, error) {
		out, err := exec.Command(filepath.Join(binDir, "pyctl"), append([]string{"--socket", s.Control}, args...)...).CombinedOutput()
		return string(out), err
	}

	if err := os.WriteFile(filepath.Join(dir, "proj/views.py"), []byte("from django.http import HttpResponse\ndef index(request)\n    return HttpResponse('broken')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := pyctl("reload")
	if err == nil || !strings.Contains(out, "warm-up") || !strings.Contains(out, "SyntaxError") {
		t.Errorf("pyctl reload with a views.py that does not compile: %v\n%s", err, out)
	}
	if _, body := get(t, s.URL+"/"); body != "one" {
		t.Errorf("after the failed warm-up: %q, want the old code's answer", body)
	}

	if err := os.WriteFile(filepath.Join(dir, "proj/views.py"), []byte(djangoView("two")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := pyctl("reload"); err != nil {
		t.Errorf("pyctl reload of the fixed views.py: %v\n%s", err, out)
	}
	if _, body := get(t, s.URL+"/"); body != "two" {
		t.Errorf("after the fixed reload: %q", body)
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || served.Load() == 0 {
		t.Errorf("%d of %d requests failed during the reloads", failed.Load(), served.Load())
	}
}

// TestWarmup500Aborts (D3): a warm-up path answering 500 aborts the
// reload with the status named, and the old code keeps serving.
func TestWarmup500Aborts(t *testing.T) {
	t.Parallel()
	app := func(v, ready string) string {
		return "VERSION = " + strconv.Quote(v) + "\n" + `
def application(environ, start_response):
    if environ["PATH_INFO"] == "/ready":
        start_response("` + ready + `", [("Content-Type", "text/plain")])
        return [b"ready?"]
    body = VERSION.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`
	}
	dir := writeApp(t, map[string]string{"wsgi.py": app("one", "200 OK")})
	s := startServe(t, dir, "--warmup", "/ready", "wsgi.py")
	if err := os.WriteFile(filepath.Join(dir, "wsgi.py"), []byte(app("two", "500 Internal Server Error")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(binDir, "pyctl"), "--socket", s.Control, "reload").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "/ready") || !strings.Contains(string(out), "500") {
		t.Errorf("pyctl reload with /ready answering 500: %v\n%s", err, out)
	}
	if _, body := get(t, s.URL+"/"); body != "one" {
		t.Errorf("after the failed warm-up: %q, want the old code's answer", body)
	}
}

// TestUmask (D6): workers create files with the app's umask, 027 unless
// its app file says otherwise, and so do the processes they start.
func TestUmask(t *testing.T) {
	t.Parallel()
	const app = `import os, subprocess
def application(environ, start_response):
    path = os.path.join(os.path.dirname(__file__), "out", environ["PATH_INFO"].strip("/"))
    with open(path, "w") as f:
        f.write("x")
    subprocess.run(["touch", path + ".child"], check=True)
    modes = "%o %o" % (os.stat(path).st_mode & 0o777, os.stat(path + ".child").st_mode & 0o777)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [modes.encode()]
`
	for _, c := range []struct{ file, want string }{
		{"script = \"wsgi.py\"\n", "640 640"},
		{"script = \"wsgi.py\"\numask = \"022\"\n", "644 644"},
	} {
		dir := writeApp(t, map[string]string{"wsgi.py": app, "app.toml": c.file, "out/.keep": ""})
		os.Chmod(filepath.Join(dir, "out"), 0o777)
		s := startServe(t, dir, "app.toml")
		if code, body := get(t, s.URL+"/f"); code != 200 || body != c.want {
			t.Errorf("%q: %d %q, want modes %s", c.file, code, body, c.want)
		}
	}
}
