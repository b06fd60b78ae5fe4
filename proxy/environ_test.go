package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func envMap(t *testing.T, r *http.Request, ri reqInfo) map[string]string {
	t.Helper()
	env := buildEnviron(nil, r, ri)
	if len(env)%2 != 0 {
		t.Fatalf("odd environ %v", env)
	}
	m := map[string]string{}
	for i := 0; i < len(env); i += 2 {
		if _, dup := m[env[i]]; dup {
			t.Fatalf("key %s twice", env[i])
		}
		m[env[i]] = env[i+1]
	}
	return m
}

func TestBuildEnviron(t *testing.T) {
	r := httptest.NewRequest("POST", "http://blog.example.com:8080/api/caf%C3%A9/x?q=1&r=%20", strings.NewReader("hello"))
	r.Header.Add("Accept", "text/html")
	r.Header.Add("Accept", "text/plain")
	r.Header.Add("Cookie", "a=1")
	r.Header.Add("Cookie", "b=2")
	r.Header.Set("Content-Type", "text/plain")
	r.Header["X_Forwarded_For"] = []string{"6.6.6.6"}
	r.Header.Set("Connection", "keep-alive")
	r.Header.Set("X-Request-Id", "spoofed")
	m := envMap(t, r, reqInfo{prefix: "/api", scheme: "http", requestID: "rid-1", remoteAddr: "192.0.2.1", remotePort: "5555", serverPort: "8080"})

	want := map[string]string{
		"REQUEST_METHOD":    "POST",
		"SCRIPT_NAME":       "/api",
		"PATH_INFO":         "/caf\xc3\xa9/x",
		"QUERY_STRING":      "q=1&r=%20",
		"REQUEST_URI":       "http://blog.example.com:8080/api/caf%C3%A9/x?q=1&r=%20",
		"SERVER_NAME":       "blog.example.com",
		"SERVER_PORT":       "8080",
		"REMOTE_ADDR":       "192.0.2.1",
		"REMOTE_PORT":       "5555",
		"CONTENT_TYPE":      "text/plain",
		"CONTENT_LENGTH":    "5",
		"HTTP_ACCEPT":       "text/html, text/plain",
		"HTTP_COOKIE":       "a=1; b=2",
		"HTTP_HOST":         "blog.example.com:8080",
		"HTTP_X_REQUEST_ID": "rid-1",
		"wsgi.url_scheme":   "http",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	for _, k := range []string{"HTTP_X_FORWARDED_FOR", "HTTP_CONNECTION", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"} {
		if v, ok := m[k]; ok {
			t.Errorf("%s present (%q); it must be dropped", k, v)
		}
	}
}

func TestBuildEnvironRootPrefixAndNoBody(t *testing.T) {
	r := httptest.NewRequest("GET", "/x/y", nil)
	m := envMap(t, r, reqInfo{prefix: "/", scheme: "https"})
	if m["SCRIPT_NAME"] != "" || m["PATH_INFO"] != "/x/y" {
		t.Errorf("SCRIPT_NAME %q PATH_INFO %q", m["SCRIPT_NAME"], m["PATH_INFO"])
	}
	if _, ok := m["CONTENT_LENGTH"]; ok {
		t.Errorf("CONTENT_LENGTH set for a request without a body")
	}
	if m["wsgi.url_scheme"] != "https" {
		t.Errorf("scheme %q", m["wsgi.url_scheme"])
	}
	r = httptest.NewRequest("GET", "/api", nil)
	if m := envMap(t, r, reqInfo{prefix: "/api"}); m["SCRIPT_NAME"] != "/api" || m["PATH_INFO"] != "" {
		t.Errorf("mount point itself: SCRIPT_NAME %q PATH_INFO %q", m["SCRIPT_NAME"], m["PATH_INFO"])
	}
}

func TestCGIName(t *testing.T) {
	for in, want := range map[string]string{"User-Agent": "HTTP_USER_AGENT", "X-Custom-Thing": "HTTP_X_CUSTOM_THING", "Dnt": "HTTP_DNT"} {
		if got := cgiName(in); got != want {
			t.Errorf("cgiName(%q) = %q, want %q", in, got, want)
		}
	}
}
