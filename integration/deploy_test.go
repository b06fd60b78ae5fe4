package integration

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestServeStaticFlag: --static URL=DIR serves as [[static]] does: the
// file, a Range of it, 404 for a missing file and for a symlink out of
// the directory, and the app for the rest.
func TestServeStaticFlag(t *testing.T) {
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
	dir := writeApp(t, map[string]string{"wsgi.py": validated(basicApp)})
	s := launch(t, dir, serveArgs("--static", "/static/=nothere", "wsgi.py")...)
	if err := s.waitExit(30e9); err == nil {
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
