package metrics

import "testing"

func TestLabels(t *testing.T) {
	for m, want := range map[string]string{"GET": "GET", "PATCH": "PATCH", "OPTIONS": "OPTIONS", "get": "other", "BREW": "other", "": "other"} {
		if got := Methods[MethodIndex(m)]; got != want {
			t.Errorf("method %q: %s, want %s", m, got, want)
		}
	}
	for s, want := range map[int]string{200: "2xx", 204: "2xx", 301: "3xx", 404: "4xx", 499: "4xx", 500: "5xx", 599: "5xx", 600: "5xx", 0: "5xx", 101: "1xx"} {
		if got := Codes[CodeIndex(s)]; got != want {
			t.Errorf("status %d: %s, want %s", s, got, want)
		}
	}
	for key, want := range map[string][2]string{"alice/blog": {"alice", "blog"}, "blog": {"", "blog"}} {
		if u, a := SplitKey(key); u != want[0] || a != want[1] {
			t.Errorf("SplitKey(%q) = %q, %q", key, u, a)
		}
	}
}
