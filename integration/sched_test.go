package integration

import (
	"strconv"
	"testing"
)

// schedApp answers the scheduling policy of the thread serving the
// request, and of a process it starts.
const schedApp = `import os, subprocess

def application(environ, start_response):
    own = os.sched_getscheduler(0)
    child = subprocess.run(["/usr/bin/python3", "-c", "import os; print(os.sched_getscheduler(0))"],
                           capture_output=True, text=True).stdout.strip()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%d %s" % (own, child)).encode()]
`

// Workers run under SCHED_BATCH, so a request the proxy writes does not
// make the woken worker preempt the proxy (wsgiadapter/pyhost_worker.py,
// _batch_scheduling); request threads and the processes an app starts
// inherit it. Both ways a worker starts: forked by the fork server, and
// directly (PYHOST_FORK_SERVER=0).
func TestWorkersRunSchedBatch(t *testing.T) {
	t.Parallel()
	const schedBatch = 3 // SCHED_BATCH in <sched.h>
	want := strconv.Itoa(schedBatch) + " " + strconv.Itoa(schedBatch)
	for _, env := range [][]string{nil, {"PYHOST_FORK_SERVER=0"}} {
		dir := writeApp(t, map[string]string{"wsgi.py": schedApp})
		s := startServeEnv(t, dir, env, "--threads", "2", "wsgi.py")
		if code, body := get(t, s.URL+"/"); code != 200 || body != want {
			t.Errorf("env %v: GET / = %d %q, want 200 %q (the request thread's policy, its child's)", env, code, body, want)
		}
	}
}
