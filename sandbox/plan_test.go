package sandbox

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/privdrop"
)

// steps is a Plan written as "kind path" lines, for table tests.
func steps(p Plan) []string {
	out := make([]string, len(p.Steps))
	for i, s := range p.Steps {
		out[i] = string(s.Kind) + " " + s.Path
	}
	return out
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Input
		want []string
	}{{
		name: "debian: home under /home, pyhost's directories elsewhere",
		in: Input{Home: "/home/alice", Keep: []string{"/home/alice/blog", "/run/pyhost/pyhost_worker.py", "/usr/bin"},
			Hide: []string{"/run/pyhost", "/var/lib/pyhost", "/var/log/pyhost", "/etc/pyhost/apps.d"}},
		want: []string{
			"tmpfs /dev/shm", "tmpfs /home", "tmpfs /tmp",
			"bind /home/alice",
			"tmpfs /etc/pyhost/apps.d", "tmpfs /run/pyhost", "tmpfs /var/lib/pyhost", "tmpfs /var/log/pyhost",
			"bind /run/pyhost/pyhost_worker.py",
			"proc /proc",
		},
	}, {
		name: "a home elsewhere: its parent is covered too",
		in:   Input{Home: "/srv/homes/alice", Hide: []string{"/run/pyhost"}},
		want: []string{"tmpfs /dev/shm", "tmpfs /home", "tmpfs /srv/homes", "tmpfs /tmp", "bind /srv/homes/alice", "tmpfs /run/pyhost", "proc /proc"},
	}, {
		name: "a home under a system directory: only /home",
		in:   Input{Home: "/var/www", Keep: []string{"/var/www/app"}},
		want: []string{"tmpfs /dev/shm", "tmpfs /home", "tmpfs /tmp", "proc /proc"},
	}, {
		name: "a deeper home under /home: /home covers it",
		in:   Input{Home: "/home/staff/alice"},
		want: []string{"tmpfs /dev/shm", "tmpfs /home", "tmpfs /tmp", "bind /home/staff/alice", "proc /proc"},
	}, {
		name: "no home: nothing bound back, nothing above / covered",
		in:   Input{Home: "/"},
		want: []string{"tmpfs /dev/shm", "tmpfs /home", "tmpfs /tmp", "proc /proc"},
	}, {
		name: "a relative home is ignored",
		in:   Input{Home: "alice"},
		want: []string{"tmpfs /dev/shm", "tmpfs /home", "tmpfs /tmp", "proc /proc"},
	}, {
		name: "kept paths under a cover, outside the home, each once",
		in:   Input{Home: "/home/alice", Keep: []string{"/home/shared/venv", "/home/shared/venv/lib", "/home/shared/venv", "/tmp/app"}},
		want: []string{"tmpfs /dev/shm", "tmpfs /home", "tmpfs /tmp", "bind /home/alice", "bind /home/shared/venv", "bind /tmp/app", "proc /proc"},
	}, {
		name: "a state directory inside the home is still hidden, the script in it kept",
		in:   Input{Home: "/home/alice", Keep: []string{"/home/alice/state/pyhost_worker.py"}, Hide: []string{"/home/alice/state"}},
		want: []string{"tmpfs /dev/shm", "tmpfs /home", "tmpfs /tmp", "bind /home/alice", "tmpfs /home/alice/state", "bind /home/alice/state/pyhost_worker.py", "proc /proc"},
	}, {
		name: "test layout: everything of pyhost's under /tmp",
		in: Input{Home: "/home/alice", Keep: []string{"/tmp/it/run/pyhost_worker.py"},
			Hide: []string{"/tmp/it/run", "/tmp/it/log", "/tmp/it/lib", "/tmp/it/run"}},
		want: []string{"tmpfs /dev/shm", "tmpfs /home", "tmpfs /tmp", "bind /home/alice",
			"tmpfs /tmp/it/lib", "tmpfs /tmp/it/log", "tmpfs /tmp/it/run", "bind /tmp/it/run/pyhost_worker.py", "proc /proc"},
	}, {
		name: "a similar name is not inside",
		in:   Input{Home: "/home/alice", Keep: []string{"/home/alice-data"}, Hide: []string{"/home/alice/x"}},
		want: []string{"tmpfs /dev/shm", "tmpfs /home", "tmpfs /tmp", "bind /home/alice", "bind /home/alice-data", "tmpfs /home/alice/x", "proc /proc"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := steps(New(tc.in)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("New(%+v):\n got %s\nwant %s", tc.in, strings.Join(got, "; "), strings.Join(tc.want, "; "))
			}
		})
	}
}

func TestNewModes(t *testing.T) {
	p := New(Input{Home: "/home/alice", Hide: []string{"/run/pyhost"}})
	for _, s := range p.Steps {
		want := uint32(0)
		switch {
		case s.Kind == Tmpfs && (s.Path == "/tmp" || s.Path == "/dev/shm"):
			want = TmpMode
		case s.Kind == Tmpfs:
			want = coverMode
		}
		if s.Mode != want {
			t.Errorf("%s %s: mode %o, want %o", s.Kind, s.Path, s.Mode, want)
		}
	}
}

func TestForApp(t *testing.T) {
	app := config.App{
		Name:       "blog",
		Cred:       privdrop.Credential{UID: 1001, GID: 1001, Username: "alice", Home: "/home/alice"},
		Script:     "/srv/www/blog/wsgi.py",
		Directory:  "/srv/www/blog",
		Python:     "/home/shared/venv/bin/python",
		PythonPath: []string{"/home/shared/lib"},
	}
	if p := ForApp(app, "/run/pyhost/pyhost_worker.py"); p != nil {
		t.Fatalf("an app without a Sandbox got a plan: %v", steps(*p))
	}
	app.Sandbox = &config.Sandbox{Hide: []string{"/run/pyhost", "/var/log/pyhost"}}
	p := ForApp(app, "/run/pyhost/pyhost_worker.py")
	want := []string{"tmpfs /dev/shm", "tmpfs /home", "tmpfs /tmp", "bind /home/alice", "bind /home/shared/lib", "bind /home/shared/venv",
		"tmpfs /run/pyhost", "tmpfs /var/log/pyhost", "bind /run/pyhost/pyhost_worker.py", "proc /proc"}
	if got := steps(*p); !reflect.DeepEqual(got, want) {
		t.Errorf("ForApp:\n got %s\nwant %s", strings.Join(got, "; "), strings.Join(want, "; "))
	}
	if Wrapper(nil) != nil {
		t.Error("Wrapper(nil) is not nil")
	}
}
