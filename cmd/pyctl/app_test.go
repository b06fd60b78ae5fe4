package main

import (
	"errors"
	"testing"

	"github.com/pyhost/pyhost/control"
)

func TestPickAppNoneVisible(t *testing.T) {
	_, err := pickApp(nil, "alice")
	var ue usageError
	if !errors.Is(err, control.ErrNoSuchApp) || errors.As(err, &ue) {
		t.Fatalf("no app visible: %v, want ErrNoSuchApp and not a usage error", err)
	}
}

func TestPickApp(t *testing.T) {
	tests := []struct {
		name    string
		apps    []control.AppStatus
		me      string
		want    string
		wantErr string
	}{
		{"express: the one app", []control.AppStatus{hello}, "alice", "hello", ""},
		{"root: the one app is another user's", []control.AppStatus{shop}, "root", "bob/shop", ""},
		{"several, sorted", []control.AppStatus{blog, api}, "alice", "", "name the app: one of api, blog"},
		{"several users", []control.AppStatus{shop, blog}, "root", "", "name the app: one of alice/blog, bob/shop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pickApp(tt.apps, tt.me)
			if tt.wantErr != "" {
				var ue usageError
				if !errors.As(err, &ue) || err.Error() != tt.wantErr {
					t.Fatalf("pickApp = %q, %v; want usage error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("pickApp = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestAppRef(t *testing.T) {
	tests := []struct {
		app  control.AppStatus
		me   string
		want string
	}{
		{control.AppStatus{Name: "blog", User: "alice"}, "alice", "blog"},
		{control.AppStatus{Name: "blog", User: "alice"}, "root", "alice/blog"},
		{control.AppStatus{Name: "blog"}, "root", "blog"},
		{control.AppStatus{Name: "alice/blog", User: "alice"}, "root", "alice/blog"},
	}
	for _, tt := range tests {
		if got := appRef(tt.app, tt.me); got != tt.want {
			t.Errorf("appRef(%+v, %q) = %q, want %q", tt.app, tt.me, got, tt.want)
		}
	}
}
