package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

const whoApp = `
import json

def application(environ, start_response):
    keys = ("REMOTE_ADDR", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
            "HTTP_X_REQUEST_ID", "wsgi.url_scheme", "HTTP_X_SPOOF")
    body = json.dumps({k: environ.get(k) for k in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
`

// whoami sends a request claiming, through X-Forwarded-* and X-Request-Id,
// to come from 198.51.100.7 over https, and returns what the app saw and
// the request id the client got.
func whoami(t *testing.T, s *server) (map[string]*string, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.URL+"/", nil)
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "www.site.test")
	req.Header.Set("X-Request-Id", "lb-42")
	req.Header.Set("X_Spoof", "underscore")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var seen map[string]*string
	if err := json.Unmarshal(b, &seen); err != nil {
		t.Fatalf("%d %s: %v", resp.StatusCode, b, err)
	}
	return seen, resp.Header.Get("X-Request-Id")
}

func TestForwardedHeadersFromTrustedProxiesOnly(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(whoApp)})
	str := func(p *string) string {
		if p == nil {
			return "<none>"
		}
		return *p
	}

	// Nobody trusted: the client's claims are replaced, not passed on.
	s := startServe(t, dir, "wsgi.py")
	seen, rid := whoami(t, s)
	want := map[string]string{
		"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "127.0.0.1", "HTTP_X_FORWARDED_PROTO": "http",
		"wsgi.url_scheme": "http", "HTTP_X_SPOOF": "<none>",
	}
	for k, v := range want {
		if got := str(seen[k]); got != v {
			t.Errorf("untrusted: %s = %q, want %q", k, got, v)
		}
	}
	if got := str(seen["HTTP_X_REQUEST_ID"]); got == "lb-42" || got != rid {
		t.Errorf("untrusted: the app saw request id %q, the client got %q; want pyhost's own, the same", got, rid)
	}
	if got := str(seen["HTTP_X_FORWARDED_HOST"]); got == "www.site.test" {
		t.Errorf("untrusted: X-Forwarded-Host %q passed on", got)
	}
	s.stop(10 * time.Second)

	// Loopback trusted (a local nginx in front): its word is taken.
	s = startServe(t, dir, "--trusted-proxy", "127.0.0.1", "wsgi.py")
	seen, rid = whoami(t, s)
	want = map[string]string{
		"REMOTE_ADDR": "198.51.100.7", "HTTP_X_FORWARDED_FOR": "198.51.100.7, 127.0.0.1",
		"HTTP_X_FORWARDED_PROTO": "https", "wsgi.url_scheme": "https", "HTTP_X_FORWARDED_HOST": "www.site.test",
		"HTTP_X_REQUEST_ID": "lb-42", "HTTP_X_SPOOF": "<none>",
	}
	for k, v := range want {
		if got := str(seen[k]); got != v {
			t.Errorf("trusted: %s = %q, want %q", k, got, v)
		}
	}
	if rid != "lb-42" {
		t.Errorf("trusted: the client got request id %q, want the proxy's lb-42 kept", rid)
	}
}
