package proxy

// pickWorker is the load-balancing decision: among workers that take new
// requests and have a free thread, the one with the fewest requests in
// flight; ties go to the earliest in the list, which keeps a lightly
// loaded app on few processes and their caches warm. A worker draining,
// or one the proxy saw die or hang (down), takes nothing new. It returns
// -1 when no worker can take a request now.
func pickWorker(ws []*upstream) int {
	best := -1
	for i, w := range ws {
		if !w.routable() || w.inflight >= w.threads {
			continue
		}
		if best < 0 || w.inflight < ws[best].inflight {
			best = i
		}
	}
	return best
}
