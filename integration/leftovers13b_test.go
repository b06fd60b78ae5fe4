package integration

import (
	"net/http"
	"strings"
	"testing"
)

// pyhostd serve off.toml, whose file says enabled = false, takes the
// file's word (docs/config.md: nothing starts until pyctl start) and says
// so: it printed "serving off on http://…" of an app answering 503.
// pyctl start then starts it, and a second start says it did nothing,
// with no "off: start done".
func TestLeftovers13bServeOfADisabledApp(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{
		"wsgi.py":  nameApp("off13b"),
		"off.toml": "script = \"wsgi.py\"\nenabled = false\n",
	})
	s := startServe(t, dir, "off.toml")
	out := s.out.String()
	if strings.Contains(out, "serving off on") || !strings.Contains(out, "off is disabled (enabled = false in ") || !strings.Contains(out, "it answers 503 until ") {
		t.Errorf("serve of a disabled app said:\n%s\nwant that it is disabled and answers 503", out)
	}
	if code, _ := get(t, s.URL+"/"); code != http.StatusServiceUnavailable {
		t.Errorf("GET of the disabled app: %d, want 503", code)
	}
	if got, err := pyctl(t, s, "start", "off"); err != nil || !strings.Contains(got, "off: start done") {
		t.Fatalf("pyctl start off: %v\n%s", err, got)
	}
	if code, body := get(t, s.URL+"/"); code != http.StatusOK || !strings.Contains(body, "off13b") {
		t.Errorf("GET after pyctl start: %d %q, want 200 from the app", code, body)
	}
	got, err := pyctl(t, s, "start", "off")
	if err != nil || !strings.Contains(got, "already running; nothing to do") || strings.Contains(got, "start done") {
		t.Errorf("pyctl start of the running app: %v\n%s\nwant 'already running; nothing to do', no 'start done', exit 0", err, got)
	}
}
