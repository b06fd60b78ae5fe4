package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyhost/pyhost/control"
)

// fakeDaemon is a control.Backend with canned answers.
type fakeDaemon struct {
	apps      []control.AppStatus
	statusErr error
	progress  []string
	reloadErr error
	reopenErr error

	mu       sync.Mutex
	reloaded []string
	acted    []string
}

func (f *fakeDaemon) Status(_ context.Context, _ control.Caller, app string) ([]control.AppStatus, error) {
	if f.statusErr != nil {
		return nil, f.statusErr
	}
	if app == "" {
		return f.apps, nil
	}
	for _, a := range f.apps {
		if a.Name == app {
			return []control.AppStatus{a}, nil
		}
	}
	return nil, fmt.Errorf("app %q: %w", app, control.ErrNoSuchApp)
}

func (f *fakeDaemon) Act(_ context.Context, _ control.Caller, a control.Action, app string, progress func(string)) error {
	f.mu.Lock()
	f.acted = append(f.acted, string(a)+" "+app)
	f.mu.Unlock()
	progress(string(a) + " in progress")
	return nil
}

func (f *fakeDaemon) Logs(ctx context.Context, _ control.Caller, app string, n int, follow bool, out func(string) error) error {
	for i := 0; i < n; i++ {
		if err := out(fmt.Sprintf("%s line %d", app, i)); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeDaemon) ReloadConfig(ctx context.Context, c control.Caller, progress func(string)) error {
	progress("rescanned")
	return nil
}

func (f *fakeDaemon) Check(ctx context.Context, c control.Caller, path string) error {
	return nil
}

func (f *fakeDaemon) ReopenLogs(ctx context.Context, c control.Caller) error {
	return f.reopenErr
}

func (f *fakeDaemon) Reload(_ context.Context, _ control.Caller, app string, progress func(string)) error {
	f.mu.Lock()
	f.reloaded = append(f.reloaded, app)
	f.mu.Unlock()
	for _, p := range f.progress {
		progress(p)
	}
	return f.reloadErr
}

// startDaemon serves b on a socket in a temporary directory until the
// test ends.
func startDaemon(t *testing.T, b control.Backend) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "control.sock")
	ln, err := control.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- control.NewServer(b, nil).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return sock
}

// owned returns copies of apps owned by whoever runs the test, so that
// pyctl names them without a USER/ prefix.
func owned(apps ...control.AppStatus) []control.AppStatus {
	me := currentUser()
	out := slices.Clone(apps)
	for i := range out {
		out[i].User = me
	}
	return out
}

const traceback = `Traceback (most recent call last):
  File "/home/alice/blog/wsgi.py", line 3, in <module>
    import markdown
ModuleNotFoundError: No module named 'markdown'
`

func TestRunAgainstDaemon(t *testing.T) {
	two := owned(blog, api)
	tests := []struct {
		name    string
		daemon  *fakeDaemon
		args    []string // "--socket SOCK" is appended unless an arg is "SOCK"
		code    int
		stdout  string
		stderr  string
		reloads []string // apps the daemon was asked to reload
	}{
		{
			name:   "status",
			daemon: &fakeDaemon{apps: two},
			args:   []string{"status"},
			stdout: renderStatus(two, currentUser()),
		},
		{
			name:   "status of one app, flags first",
			daemon: &fakeDaemon{apps: two},
			args:   []string{"--socket", "SOCK", "status", "api"},
			stdout: renderStatus(two[1:], currentUser()),
		},
		{
			name:   "status of a missing app",
			daemon: &fakeDaemon{apps: two},
			args:   []string{"status", "nope"},
			code:   exitFailure,
			stderr: "pyctl: app \"nope\": no such app\n",
		},
		{
			name:   "status denied",
			daemon: &fakeDaemon{statusErr: fmt.Errorf("uid 1001 may not deploy: %w", control.ErrAccessDenied)},
			args:   []string{"status"},
			code:   exitFailure,
			stderr: "pyctl: uid 1001 may not deploy: access denied\n",
		},
		{
			name:    "reload",
			daemon:  &fakeDaemon{apps: two, progress: []string{"starting 2 new workers", "new workers ready", "old workers drained"}},
			args:    []string{"reload", "blog"},
			stdout:  "starting 2 new workers\nnew workers ready\nold workers drained\nreloaded blog\n",
			reloads: []string{"blog"},
		},
		{
			name:    "reload the only app",
			daemon:  &fakeDaemon{apps: owned(hello)},
			args:    []string{"reload"},
			stdout:  "reloaded hello\n",
			reloads: []string{"hello"},
		},
		{
			name:   "reload without naming one of two",
			daemon: &fakeDaemon{apps: two},
			args:   []string{"reload"},
			code:   exitUsage,
			stderr: "pyctl: name the app: one of api, blog\n",
		},
		{
			name: "reload fails to import",
			daemon: &fakeDaemon{
				apps:      two,
				progress:  []string{"starting 2 new workers"},
				reloadErr: &control.ReloadError{App: "blog", Reason: "new worker failed to import the app", Detail: traceback},
			},
			args:    []string{"reload", "blog"},
			code:    exitFailure,
			stdout:  "starting 2 new workers\n",
			stderr:  "pyctl: reload blog failed: new worker failed to import the app\n" + traceback,
			reloads: []string{"blog"},
		},
		{
			name:    "reload denied",
			daemon:  &fakeDaemon{reloadErr: fmt.Errorf("app %q belongs to alice: %w", "blog", control.ErrAccessDenied)},
			args:    []string{"reload", "blog"},
			code:    exitFailure,
			stderr:  "pyctl: reload blog: app \"blog\" belongs to alice: access denied\n",
			reloads: []string{"blog"},
		},
		{
			name:   "reopen-logs",
			daemon: &fakeDaemon{},
			args:   []string{"reopen-logs"},
			stdout: "logs reopened\n",
		},
		{
			name:   "reopen-logs denied",
			daemon: &fakeDaemon{reopenErr: fmt.Errorf("%w: only root may reopen the daemon's logs", control.ErrAccessDenied)},
			args:   []string{"reopen-logs", "--if-running"},
			code:   exitFailure,
			stderr: "pyctl: reopen-logs: access denied: only root may reopen the daemon's logs\n",
		},
		{
			name:   "reopen-logs failed",
			daemon: &fakeDaemon{reopenErr: errors.New("alice/blog: open app log: no space left on device")},
			args:   []string{"reopen-logs"},
			code:   exitFailure,
			stderr: "pyctl: reopen-logs: daemon error: alice/blog: open app log: no space left on device\n",
		},
		{
			name:   "unknown command",
			daemon: &fakeDaemon{},
			args:   []string{"frobnicate"},
			code:   exitUsage,
			stderr: "pyctl: unknown command \"frobnicate\" for \"pyctl\" (see 'pyctl --help')\n",
		},
		{
			name:   "misspelt command",
			daemon: &fakeDaemon{},
			args:   []string{"staus"},
			code:   exitUsage,
			stderr: "pyctl: unknown command \"staus\" for \"pyctl\"; did you mean status or start? (see 'pyctl --help')\n",
		},
		{
			name:   "unknown flag",
			daemon: &fakeDaemon{},
			args:   []string{"status", "--jsn"},
			code:   exitUsage,
			stderr: "pyctl: unknown flag: --jsn (see 'pyctl status --help')\n",
		},
		{
			name:   "too many apps",
			daemon: &fakeDaemon{},
			args:   []string{"reload", "a", "b"},
			code:   exitUsage,
			stderr: "pyctl: reload takes at most 1 APP, got 2 arguments: a b\n",
		},
		{
			name:   "completion of APP",
			daemon: &fakeDaemon{apps: two},
			args:   []string{"__complete", "--socket", "SOCK", "reload", "b"},
			stdout: "blog\trunning\n:4\n",
			stderr: "Completion ended with directive: ShellCompDirectiveNoFileComp\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := startDaemon(t, tt.daemon)
			args := slices.Clone(tt.args)
			if i := slices.Index(args, "SOCK"); i >= 0 {
				args[i] = sock
			} else {
				args = append(args, "--socket", sock)
			}
			var stdout, stderr bytes.Buffer
			code := run(args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, stderr.String())
			}
			if stdout.String() != tt.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout.String(), tt.stdout)
			}
			if stderr.String() != tt.stderr {
				t.Errorf("stderr:\n%q\nwant:\n%q", stderr.String(), tt.stderr)
			}
			tt.daemon.mu.Lock()
			defer tt.daemon.mu.Unlock()
			if !slices.Equal(tt.daemon.reloaded, tt.reloads) {
				t.Errorf("daemon reloaded %q, want %q", tt.daemon.reloaded, tt.reloads)
			}
		})
	}
}

func TestRunStatusJSON(t *testing.T) {
	apps := []control.AppStatus{blog, shop}
	sock := startDaemon(t, &fakeDaemon{apps: apps})
	var stdout, stderr bytes.Buffer
	if code := run([]string{"status", "--json", "--socket", sock}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	golden(t, "status.json.golden", stdout.Bytes())
	var got []control.AppStatus
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, apps) {
		t.Errorf("status --json decodes to\n%+v\nwant\n%+v", got, apps)
	}
}

func TestRunWithoutDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	for _, args := range [][]string{{"status"}, {"reload", "blog"}, {"reload"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append(args, "--socket", sock), &stdout, &stderr)
			if code != exitFailure {
				t.Errorf("exit %d, want %d", code, exitFailure)
			}
			want := "pyctl: no pyhost daemon at " + sock + " (is it running? set --socket or PYHOST_SOCKET)\n"
			if stderr.String() != want {
				t.Errorf("stderr %q, want %q", stderr.String(), want)
			}
		})
	}
}

// The logrotate rule runs reopen-logs --if-running whether pyhost runs
// or not: a stopped daemon is no failure there, and says nothing.
func TestReopenLogsIfRunning(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"reopen-logs", "--if-running", "--socket", sock}, &stdout, &stderr); code != exitOK || stdout.Len()+stderr.Len() != 0 {
		t.Errorf("--if-running without a daemon: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := run([]string{"reopen-logs", "--socket", sock}, &stdout, &stderr); code != exitFailure || !strings.Contains(stderr.String(), "no pyhost daemon at "+sock) {
		t.Errorf("without a daemon: exit %d, stderr %q", code, stderr.String())
	}
}

func TestSocketChoice(t *testing.T) {
	tests := []struct {
		flag, env, want string
	}{
		{"", "", defaultSocket},
		{"", "/tmp/env.sock", "/tmp/env.sock"},
		{"/tmp/flag.sock", "/tmp/env.sock", "/tmp/flag.sock"},
	}
	for _, tt := range tests {
		c := &cli{socketFlag: tt.flag, getenv: func(k string) string {
			if k == socketEnv {
				return tt.env
			}
			return ""
		}}
		if got := c.socket(); got != tt.want {
			t.Errorf("flag %q env %q: socket %q, want %q", tt.flag, tt.env, got, tt.want)
		}
	}
}

func TestRunSocketFromEnvironment(t *testing.T) {
	sock := startDaemon(t, &fakeDaemon{apps: owned(hello)})
	t.Setenv(socketEnv, sock)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"reload"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if got := stdout.String(); got != "reloaded hello\n" {
		t.Errorf("stdout %q", got)
	}
}

func TestRunHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"status", "--help"}, {"reload", "-h"}, {"help", "reload"}, {"completion", "bash"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(args, &stdout, &stderr); code != exitOK {
				t.Errorf("exit %d: %s", code, stderr.String())
			}
			if stdout.Len() == 0 || stderr.Len() != 0 {
				t.Errorf("stdout %d bytes, stderr %q", stdout.Len(), stderr.String())
			}
		})
	}
}

// TestReportKeepsErrorsOnOneLine covers messages no daemon should send
// but one might.
func TestReportKeepsErrorsOnOneLine(t *testing.T) {
	c := &cli{parsed: true}
	var stderr bytes.Buffer
	c.stderr = &stderr
	if code := c.report(nil, errors.New("first\nsecond\x1b[31m")); code != exitFailure {
		t.Errorf("exit %d", code)
	}
	if got, want := stderr.String(), "pyctl: first second?[31m\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
}
