package supervisor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
)

// A reload whose new worker fails its warm-up reports that worker's
// traceback, however much the old generation writes meanwhile: here a
// first worker, still warming up when the reload began, fails its own
// warm-up on the same broken file and writes a longer traceback between
// the new worker's and its death. (With one ring of 50 lines for the
// whole app, the new worker's lines were gone by the time it was reaped,
// and pyctl reload said "warm-up GET / answered 500" and nothing else.)
func TestReloadWarmupTracebackSurvivesTheOldGeneration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		oldGo, oldDone := make(chan struct{}), make(chan struct{})
		var old *fakeProc
		var h *harness
		traceback := func(p *fakeProc, n int, last string) {
			p.spec.Output(p.pid, "Traceback (most recent call last):")
			for i := range n {
				p.spec.Output(p.pid, fmt.Sprintf("  File \"/srv/blog/views.py\", line %d, in <module>", i))
			}
			p.spec.Output(p.pid, last)
		}
		w := &fakeWarmer{answer: func(ctx context.Context, socket string) error {
			if socket == old.spec.Socket {
				<-oldGo
				traceback(old, 60, "SyntaxError: old worker")
				close(oldDone)
				return &WarmupError{Path: "/", Status: 500}
			}
			var p *fakeProc
			for _, q := range h.st.live() {
				if q.spec.Socket == socket {
					p = q
				}
			}
			traceback(p, 10, "SyntaxError: new worker")
			close(oldGo)
			<-oldDone
			return &WarmupError{Path: "/", Status: 500}
		}}
		h = start(t, testConfig(1), warmupOpts(w))
		old = h.st.proc(t, 0)
		old.becomeReady() // warming up, until the new one has failed
		synctest.Wait()
		var progress []string
		done := h.reload(testConfig(1), &progress)
		h.st.proc(t, 1).becomeReady()
		synctest.Wait()
		err, ok := result(done)
		var rerr *ReloadError
		if !ok || !errors.As(err, &rerr) {
			t.Fatalf("reload: %v (answered %v), want a ReloadError", err, ok)
		}
		if !strings.Contains(rerr.Reason, "warm-up GET / answered 500") {
			t.Errorf("reason %q", rerr.Reason)
		}
		if !strings.HasSuffix(rerr.Traceback, "SyntaxError: new worker") || strings.Contains(rerr.Traceback, "old worker") {
			t.Errorf("the reload's traceback is not the new worker's own:\n%s", rerr.Traceback)
		}
		// The old worker's failure has its own traceback too.
		if s := h.status(); !strings.Contains(s.LastError, "SyntaxError") {
			t.Errorf("status: last error %q", s.LastError)
		}
	})
}

func TestWorkerTails(t *testing.T) {
	var tails workerTails
	for i := range 40 {
		tails.add(7, fmt.Sprint("seven ", i))
		tails.add(8, fmt.Sprint("eight ", i))
	}
	got := strings.Split(tails.take(7), "\n")
	if len(got) != tailLines || got[0] != "seven 10" || got[len(got)-1] != "seven 39" {
		t.Errorf("tail of 7: %d lines, %q … %q; want its last %d", len(got), got[0], got[len(got)-1], tailLines)
	}
	if s := tails.take(7); s != "" {
		t.Errorf("taken twice: %q", s)
	}
	if s := tails.take(9); s != "" {
		t.Errorf("a worker that wrote nothing: %q", s)
	}
	if !strings.HasSuffix(tails.take(8), "eight 39") {
		t.Error("8's tail lost")
	}
}
