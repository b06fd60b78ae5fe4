package control

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// idleBackend's start finds nothing to do (the app runs).
type idleBackend struct{ fakeBackend }

func (b *idleBackend) Act(ctx context.Context, c Caller, a Action, app string, progress func(string)) error {
	progress("already running; nothing to do")
	return fmt.Errorf("%s: %w", app, ErrNothingToDo)
}

// A start that did nothing is no failure, and the client learns it from
// the reply's last line, not from the daemon's words: pyctl printed
// "APP: start done" after "already running; nothing to do".
func TestActNothingToDo(t *testing.T) {
	cl := NewClient(startServer(t, &idleBackend{}))
	var got []string
	err := cl.Act(context.Background(), ActionStart, "blog", func(s string) { got = append(got, s) })
	if !errors.Is(err, ErrNothingToDo) || len(got) != 1 {
		t.Fatalf("start: %v %q, want ErrNothingToDo after the progress line", err, got)
	}
	var re *ReloadError
	if errors.As(err, &re) {
		t.Errorf("nothing to do came as a refusal: %v", err)
	}
}
