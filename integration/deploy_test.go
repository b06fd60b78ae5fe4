package integration

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
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
