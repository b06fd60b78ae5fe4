package master

import (
	"reflect"
	"testing"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/privdrop"
)

func TestWantedTriggers(t *testing.T) {
	alice := privdrop.Credential{UID: 1000, Username: "alice"}
	bob := privdrop.Credential{UID: 1001, Username: "bob"}
	apps := []config.App{
		{Name: "blog", Cred: alice, File: "/home/alice/.pyhost/blog.toml", ReloadTrigger: "/home/alice/blog/tmp/restart.txt"},
		{Name: "shop", Cred: alice, File: "/home/alice/.pyhost/shop.toml", ReloadTrigger: "/home/alice/blog/tmp/restart.txt"},
		{Name: "wiki", Cred: bob, File: "/home/bob/.pyhost/wiki.toml"},
		{Name: "wsgi", Cred: bob}, // serve of a script: nothing to touch
	}
	got := wantedTriggers(apps)
	want := map[string]triggerOf{
		"/home/alice/.pyhost/blog.toml":    {keys: []string{"alice/blog"}, owner: alice},
		"/home/alice/.pyhost/shop.toml":    {keys: []string{"alice/shop"}, owner: alice},
		"/home/alice/blog/tmp/restart.txt": {keys: []string{"alice/blog", "alice/shop"}, owner: alice},
		"/home/bob/.pyhost/wiki.toml":      {keys: []string{"bob/wiki"}, owner: bob},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("wantedTriggers:\n got %v\nwant %v", got, want)
	}
}

func TestStatusFewLines(t *testing.T) {
	if got := fewLines("a\nb", 3, ""); got != "a\nb" {
		t.Errorf("short: %q", got)
	}
	if got, want := fewLines("1\n2\n3\n4\n5\n", 2, ""), "1\n2\n… 3 more lines (pyctl logs has the rest)"; got != want {
		t.Errorf("long: %q, want %q", got, want)
	}
	if got, want := fewLines("1\n2\n3", 1, checkHint("/x.toml")), "1\n… 2 more lines (pyctl check /x.toml lists them all)"; got != want {
		t.Errorf("refused: %q, want %q", got, want)
	}
	if got := lastLines([]string{"a", "b", "c"}, 2); !reflect.DeepEqual(got, []string{"b", "c"}) {
		t.Errorf("lastLines: %v", got)
	}
}
