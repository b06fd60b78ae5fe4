package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/accesslog"
	"github.com/pyhost/pyhost/proxymsg"
)

// staticProxy routes any host to a stopped app (so anything that reaches
// the app answers 503) with "/static/" served from a fresh directory:
// site.css, sub/app.js, a subdirectory, a symlink inside and one out.
func staticProxy(t *testing.T) (*Proxy, string) {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "static")
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "site.css"), []byte("body{color:red}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "sub", "app.js"), []byte("let x = 1;\n"), 0o644)
	os.WriteFile(filepath.Join(base, "secret.txt"), []byte("password\n"), 0o644)
	os.Symlink("site.css", filepath.Join(dir, "alias.css"))
	os.Symlink(filepath.Join(base, "secret.txt"), filepath.Join(dir, "out.txt"))
	os.Symlink("..", filepath.Join(dir, "up"))
	p := New(hclog.NewNullLogger(), nil)
	p.Update(proxymsg.Table{Serial: 1, Apps: []proxymsg.App{{
		Key: "alice/blog", Prefix: "/", State: proxymsg.AppStopped,
		Static: []proxymsg.StaticMount{{URL: "/static/", Dir: dir}},
	}}})
	return p, dir
}

func do(t *testing.T, p *Proxy, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	return w
}

func TestStaticServesFiles(t *testing.T) {
	p, _ := staticProxy(t)
	w := do(t, p, "GET", "/static/site.css", nil)
	if w.Code != 200 || w.Body.String() != "body{color:red}\n" || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/css") {
		t.Fatalf("GET site.css: %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	etag := w.Header().Get("ETag")
	if etag == "" || w.Header().Get("Last-Modified") == "" || w.Header().Get("X-Request-Id") == "" {
		t.Errorf("headers %v: want ETag, Last-Modified, X-Request-Id", w.Header())
	}
	if w := do(t, p, "GET", "/static/site.css", map[string]string{"If-None-Match": etag}); w.Code != 304 {
		t.Errorf("If-None-Match: %d, want 304", w.Code)
	}
	if w := do(t, p, "GET", "/static/site.css", map[string]string{"If-Modified-Since": "Tue, 01 Jan 2999 00:00:00 GMT"}); w.Code != 304 {
		t.Errorf("If-Modified-Since in the future: %d, want 304", w.Code)
	}
	if w := do(t, p, "GET", "/static/site.css", map[string]string{"Range": "bytes=5-9"}); w.Code != 206 || w.Body.String() != "color" {
		t.Errorf("Range: %d %q, want 206 \"color\"", w.Code, w.Body)
	}
	if w := do(t, p, "HEAD", "/static/sub/app.js", nil); w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Length") != "11" {
		t.Errorf("HEAD: %d, body %d bytes, length %q", w.Code, w.Body.Len(), w.Header().Get("Content-Length"))
	}
	if w := do(t, p, "GET", "/static/alias.css", nil); w.Code != 200 {
		t.Errorf("a symlink inside the directory: %d, want 200", w.Code)
	}
}

func TestStaticRefuses(t *testing.T) {
	p, _ := staticProxy(t)
	cases := []struct {
		method, target string
		code           int
	}{
		{"GET", "/static/", 404},                  // no listing
		{"GET", "/static", 404},                   // the mount itself
		{"GET", "/static/sub", 404},               // a directory
		{"GET", "/static/sub/", 404},              //
		{"GET", "/static/missing.css", 404},       //
		{"GET", "/static/../secret.txt", 404},     // climbing
		{"GET", "/static/%2e%2e/secret.txt", 404}, // encoded
		{"GET", "/static/sub/%2E%2E/../secret.txt", 404},
		{"GET", "/static/out.txt", 404},       // a symlink out
		{"GET", "/static/up/secret.txt", 404}, // a symlink to the parent
		{"POST", "/static/site.css", 405},     //
	}
	for _, c := range cases {
		w := do(t, p, c.method, c.target, nil)
		if w.Code != c.code {
			t.Errorf("%s %s: %d, want %d", c.method, c.target, w.Code, c.code)
		}
		if body, _ := io.ReadAll(w.Body); strings.Contains(string(body), "password") {
			t.Errorf("%s %s leaked the secret", c.method, c.target)
		}
	}
	if w := do(t, p, "POST", "/static/site.css", nil); w.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("405 without Allow: %v", w.Header())
	}
}

func TestStaticLeavesTheRestToTheApp(t *testing.T) {
	p, _ := staticProxy(t)
	// The app is stopped: reaching it answers 503.
	for _, target := range []string{"/", "/staticfiles/site.css", "/static.css", "/blog/static/site.css"} {
		if w := do(t, p, "GET", target, nil); w.Code != http.StatusServiceUnavailable {
			t.Errorf("GET %s: %d, want the app's 503", target, w.Code)
		}
	}
}

func TestStaticFIFODoesNotBlock(t *testing.T) {
	p, dir := staticProxy(t)
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan int, 1)
	go func() { done <- do(t, p, "GET", "/static/pipe", nil).Code }()
	select {
	case code := <-done:
		if code != 404 {
			t.Errorf("GET a FIFO: %d, want 404", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("GET a FIFO blocked the proxy (a tenant could pile up threads)")
	}
}

// A proxy running as another user than the app's owner serves nothing
// with its own rights: not from a directory the owner does not own, not a
// file that is not world-readable.
func TestStaticForeignOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another uid")
	}
	const tenant = 4242 // not us: the proxy is "foreign" to this owner
	base := t.TempDir()
	own := filepath.Join(base, "own")
	os.Mkdir(own, 0o755)
	os.WriteFile(filepath.Join(own, "public.css"), []byte("ok\n"), 0o644)
	os.WriteFile(filepath.Join(own, "private.key"), []byte("secret\n"), 0o640)
	os.Chown(own, tenant, tenant)
	notOwn := filepath.Join(base, "logs") // like /var/log/pyhost, root's
	os.Mkdir(notOwn, 0o755)
	os.WriteFile(filepath.Join(notOwn, "access.log"), []byte("everyone's requests\n"), 0o644)
	p := New(hclog.NewNullLogger(), nil)
	p.Update(proxymsg.Table{Serial: 1, Apps: []proxymsg.App{{
		Key: "alice/blog", Prefix: "/", State: proxymsg.AppStopped,
		Static: []proxymsg.StaticMount{
			{URL: "/static/", Dir: own, Owner: tenant},
			{URL: "/logs/", Dir: notOwn, Owner: tenant},
		},
	}}})
	cases := []struct {
		target string
		code   int
	}{
		{"/static/public.css", 200},
		{"/static/private.key", 403},
		{"/logs/access.log", 403},
	}
	for _, c := range cases {
		if w := do(t, p, "GET", c.target, nil); w.Code != c.code {
			t.Errorf("GET %s: %d, want %d", c.target, w.Code, c.code)
		}
	}
}

// With the access log on, static files still go out through the
// ResponseWriter's ReadFrom (sendfile), and the log counts their bytes.
func TestStaticThroughTheAccessLog(t *testing.T) {
	p, _ := staticProxy(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	al, err := accesslog.Open(logPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.SetAccessLog(al)
	if w := do(t, p, "GET", "/static/site.css", nil); w.Code != 200 || w.Body.String() != "body{color:red}\n" {
		t.Fatalf("GET: %d %q", w.Code, w.Body)
	}
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(logPath)
	if !strings.Contains(string(b), `"GET /static/site.css HTTP/1.1" 200 16 `) {
		t.Errorf("access log %q: want the file's 16 bytes counted", b)
	}
	var _ io.ReaderFrom = &recorder{}
}
