package integration

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

func TestStaticMountServedByTheProxy(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{
		"wsgi.py":            validated(basicApp),
		"static/hello.txt":   "static hello\n",
		"static/css/a.css":   "a{}\n",
		"outside/secret.txt": "secret\n",
	})
	os.Symlink(filepath.Join(dir, "outside", "secret.txt"), filepath.Join(dir, "static", "leak.txt"))
	toml := "script = \"" + filepath.Join(dir, "wsgi.py") + "\"\n" +
		"[[static]]\nurl = \"/static/\"\ndir = \"" + filepath.Join(dir, "static") + "\"\n"
	if err := os.WriteFile(filepath.Join(dir, "app.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, dir, "app.toml")
	cases := []struct {
		path string
		code int
		body string
	}{
		{"/static/hello.txt", 200, "static hello\n"},
		{"/static/css/a.css", 200, "a{}\n"},
		{"/static/leak.txt", 404, ""},
		{"/static/../outside/secret.txt", 404, ""},
		{"/static/", 404, ""},
		{"/pid", 200, ""}, // the app still answers the rest
	}
	for _, c := range cases {
		req, _ := http.NewRequest("GET", s.URL+c.path, nil)
		req.URL.Opaque = c.path // send ".." as is, unclean
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || (c.body != "" && string(b) != c.body) {
			t.Errorf("GET %s: %d %q, want %d %q", c.path, resp.StatusCode, b, c.code, c.body)
		}
	}
}
