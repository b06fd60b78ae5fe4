package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/pyhost/pyhost/control"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}

func TestRenderStatusGolden(t *testing.T) {
	tests := []struct {
		name string
		me   string
		apps []control.AppStatus
	}{
		{"status-user.golden", "alice", []control.AppStatus{blog, api}},
		{"status-root.golden", "root", []control.AppStatus{blog, api, shop}},
		{"status-express.golden", "alice", []control.AppStatus{hello}},
		{"status-empty.golden", "alice", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			golden(t, tt.name, []byte(renderStatus(tt.apps, tt.me)))
		})
	}
}

// TestStatusJSONGolden pins the field names scripts rely on.
func TestStatusJSONGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := writeJSON(&buf, []control.AppStatus{blog, shop}); err != nil {
		t.Fatal(err)
	}
	golden(t, "status.json.golden", buf.Bytes())

	buf.Reset()
	if err := writeJSON(&buf, nil); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != "[]\n" {
		t.Errorf("no apps as JSON: %q, want []", got)
	}
}

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		in   uint64
		want string
	}{
		{0, "-"},
		{1, "1B"},
		{1023, "1023B"},
		{1024, "1.0KiB"},
		{1536, "1.5KiB"},
		{24536678, "23.4MiB"},
		{3 << 30, "3.0GiB"},
		{5 << 40, "5.0TiB"},
		{5 << 50, "5120.0TiB"},
	}
	for _, tt := range tests {
		if got := humanBytes(tt.in); got != tt.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHumanAge(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{-3, "0s"},
		{0, "0s"},
		{0.9, "0s"},
		{45, "45s"},
		{60, "1m00s"},
		{192, "3m12s"},
		{3600, "1h00m"},
		{7380, "2h03m"},
		{86400, "1d00h"},
		{90061, "1d01h"},
		{40 * 86400, "40d00h"},
	}
	for _, tt := range tests {
		if got := humanAge(tt.in); got != tt.want {
			t.Errorf("humanAge(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDomainsCell(t *testing.T) {
	tests := []struct {
		domains []string
		prefix  string
		want    string
	}{
		{[]string{"a.example.com"}, "/", "a.example.com"},
		{[]string{"a.example.com"}, "", "a.example.com"},
		{[]string{"a.example.com", "*.b.example.com"}, "/api", "a.example.com/api, *.b.example.com/api"},
		{nil, "/", "*"},
		{nil, "/api", "*/api"},
	}
	for _, tt := range tests {
		a := control.AppStatus{Domains: tt.domains, URLPrefix: tt.prefix}
		if got := domainsCell(a); got != tt.want {
			t.Errorf("domainsCell(%q, %q) = %q, want %q", tt.domains, tt.prefix, got, tt.want)
		}
	}
}

func TestRenderStatusSanitizes(t *testing.T) {
	a := control.AppStatus{Name: "x", State: "running", LastLog: []string{"\x1b]0;pwned\x07evil"}}
	got := renderStatus([]control.AppStatus{a}, "")
	if bytes.ContainsAny([]byte(got), "\x1b\x07") {
		t.Errorf("control characters reach the terminal: %q", got)
	}
}
