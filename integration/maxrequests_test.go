package integration

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pidApp answers its pid after 10 ms of work: quick enough for 150
// requests in a couple of seconds, slow enough that a replacement worker
// (tens of milliseconds to start) is ready long before 100 more arrive.
const pidApp = `
import os, time

def application(environ, start_response):
    time.sleep(0.01)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`

var budgetRecycleRE = regexp.MustCompile(`recycling worker: .*pid=(\d+) reason=requests detail="served (\d+) requests \(max_requests 50\)"`)

// TestMaxRequestsRecyclesAtTheBudget is issue 9 item 12: max_requests
// was polled once a second, so a fast app served thousands of requests
// past it on one worker. The proxy now reports the request that spends a
// worker's budget, and the replacement starts then. The poll is set to an
// hour here, so only that report can recycle: 150 sequential requests with
// max_requests 50 must see more than one process, each (but the last) take
// at least its budget, and the recycle be decided at the budget, not later.
func TestMaxRequestsRecyclesAtTheBudget(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(pidApp)})
	s := startServeEnv(t, dir, []string{"PYHOST_CHECK_INTERVAL=1h"}, "--processes", "1", "--max-requests", "50", "wsgi.py")
	var runs []string // pid of each run of consecutive requests
	served := map[string]int{}
	for i := 0; i < 150; i++ {
		code, pid := get(t, s.URL+"/") // fails the test on a transport error
		if code != http.StatusOK {
			t.Fatalf("request %d: status %d (%q)", i, code, pid)
		}
		if len(runs) == 0 || runs[len(runs)-1] != pid {
			if served[pid] > 0 {
				t.Fatalf("request %d went back to pid %s after its replacement served", i, pid)
			}
			runs = append(runs, pid)
		}
		served[pid]++
	}
	counts := make([]string, len(runs))
	for i, pid := range runs {
		counts[i] = pid + ":" + strconv.Itoa(served[pid])
	}
	t.Logf("requests by worker pid, in order: %s", strings.Join(counts, " "))
	if len(runs) < 2 {
		t.Fatalf("150 sequential requests with max_requests 50 were all served by pid %s", runs[0])
	}
	for _, pid := range runs[:len(runs)-1] {
		// A budget is max_requests less up to an eighth of jitter.
		if served[pid] < 50-50/8 {
			t.Errorf("pid %s was replaced after %d requests, under its budget", pid, served[pid])
		}
	}
	m := budgetRecycleRE.FindStringSubmatch(s.waitLine(budgetRecycleRE, 5*time.Second))
	if n, _ := strconv.Atoi(m[2]); m[1] != runs[0] || n < 50-50/8 || n > 50 {
		t.Errorf("the first recycle was of pid %s at %s requests; want pid %s at its budget (%d to 50)", m[1], m[2], runs[0], 50-50/8)
	}
	if st := s.status(); len(st) != 1 || st[0].Restarts != 0 {
		t.Fatalf("a recycle was counted as a crash: %+v", st)
	}
}
