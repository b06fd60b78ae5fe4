package proxy

import "testing"

func TestPickWorker(t *testing.T) {
	w := func(inflight, threads int, draining bool) *upstream {
		return &upstream{inflight: inflight, threads: threads, draining: draining}
	}
	down := func(inflight, threads int) *upstream {
		return &upstream{inflight: inflight, threads: threads, down: true}
	}
	cases := []struct {
		name string
		ws   []*upstream
		want int
	}{
		{"none", nil, -1},
		{"idle first wins ties", []*upstream{w(0, 4, false), w(0, 4, false)}, 0},
		{"least busy", []*upstream{w(3, 4, false), w(1, 4, false), w(2, 4, false)}, 1},
		{"full is skipped", []*upstream{w(4, 4, false), w(3, 4, false)}, 1},
		{"all full", []*upstream{w(4, 4, false), w(2, 2, false)}, -1},
		{"draining is skipped", []*upstream{w(0, 4, true), w(3, 4, false)}, 1},
		{"only draining", []*upstream{w(0, 4, true)}, -1},
		// A dead worker fails at once and so always looks least busy: it
		// must not be picked at all, or it takes every request.
		{"down is skipped though idle", []*upstream{down(0, 4), w(3, 4, false)}, 1},
		{"only down", []*upstream{down(0, 4), down(0, 4)}, -1},
	}
	for _, c := range cases {
		if got := pickWorker(c.ws); got != c.want {
			t.Errorf("%s: pickWorker = %d, want %d", c.name, got, c.want)
		}
	}
}
