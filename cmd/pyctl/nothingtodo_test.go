package main

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/pyhost/pyhost/control"
)

// runningDaemon's start finds the app running and does nothing.
type runningDaemon struct{ fakeDaemon }

func (d *runningDaemon) Act(_ context.Context, _ control.Caller, a control.Action, app string, progress func(string)) error {
	progress("already running; nothing to do")
	return fmt.Errorf("%s %s: %w", a, app, control.ErrNothingToDo)
}

// pyctl start of a running app says what the daemon said, exit 0, and
// claims nothing was done: it printed "blog: start done" after "already
// running; nothing to do".
func TestStartThatDidNothingSaysNoDone(t *testing.T) {
	sock := startDaemon(t, &runningDaemon{fakeDaemon{apps: owned(control.AppStatus{Name: "blog"})}})
	var stdout, stderr bytes.Buffer
	if code := run([]string{"start", "blog", "--socket", sock}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d, want 0 (stderr %q)", code, stderr.String())
	}
	if got, want := stdout.String(), "already running; nothing to do\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
}
