package supervisor

import (
	"testing"

	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/workerproc"
)

func TestForkKeyNamesWhatWorkersInherit(t *testing.T) {
	base := workerproc.Spec{
		Path: "/usr/bin/python3",
		Dir:  "/srv/blog",
		Env:  []string{"PATH=/usr/bin", "HOME=/home/alice"},
		Cred: privdrop.Credential{UID: 1000, GID: 1000, Username: "alice", Groups: []uint32{1000, 27}},
		// What differs per worker must not split the server.
		Socket: "/run/w1.sock",
	}
	same := base
	same.Socket = "/run/w2.sock"
	same.ForkArgs = []string{"--threads", "8"}
	if forkKey(base) != forkKey(same) {
		t.Errorf("socket and worker arguments changed the key")
	}
	changes := map[string]func(*workerproc.Spec){
		"interpreter": func(s *workerproc.Spec) { s.Path = "/srv/blog/.venv/bin/python" },
		"directory":   func(s *workerproc.Spec) { s.Dir = "/srv/other" },
		"environment": func(s *workerproc.Spec) { s.Env = append(append([]string{}, s.Env...), "DJANGO_SETTINGS_MODULE=x") },
		"user":        func(s *workerproc.Spec) { s.Cred.UID, s.Cred.Username = 1001, "bob" },
		"groups":      func(s *workerproc.Spec) { s.Cred.Groups = []uint32{1000} },
		"group":       func(s *workerproc.Spec) { s.Cred.GID = 27 },
	}
	for what, change := range changes {
		s := base
		s.Cred.Groups = append([]uint32{}, base.Cred.Groups...)
		change(&s)
		if forkKey(s) == forkKey(base) {
			t.Errorf("a change of %s kept the fork server", what)
		}
	}
}

func TestFirstLossCountsAServerOnce(t *testing.T) {
	var c core
	a, b := &workerproc.ForkServer{}, &workerproc.ForkServer{}
	if !c.firstLoss(a) || c.firstLoss(a) || c.firstLoss(a) {
		t.Errorf("three workers lost with server a: want only the first counted")
	}
	if !c.firstLoss(b) {
		t.Errorf("server b's first loss not counted")
	}
	c.closeForkServers()
	if !c.firstLoss(a) {
		t.Errorf("after the app stopped, a new loss must count again")
	}
}
