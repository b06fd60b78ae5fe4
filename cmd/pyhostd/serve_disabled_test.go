package main

import (
	"strings"
	"testing"

	"github.com/pyhost/pyhost/config"
)

// pyhostd serve off.toml, whose file says enabled = false, keeps it
// stopped (the file's word, as everywhere) and says so: it printed
// "serving off on http://…" of an app that answered 503.
func TestServingLineOfADisabledApp(t *testing.T) {
	app := config.App{Name: "off", File: "/home/alice/off.toml", Processes: 1, Threads: 4, Disabled: true}
	got := servingLine(app, "http://127.0.0.1:8000/", "alice", "pyctl")
	want := "pyhost: off is disabled (enabled = false in /home/alice/off.toml): on http://127.0.0.1:8000/ it answers 503 until pyctl start off (1 process x 4 threads, as alice)"
	if got != want || strings.Contains(got, "serving") {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	app.Disabled = false
	if got, want := servingLine(app, "http://127.0.0.1:8000/", "alice", "pyctl"), "pyhost: serving off on http://127.0.0.1:8000/ (1 process x 4 threads, as alice)"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
