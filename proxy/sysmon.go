package proxy

import "strings"

// The Go runtime's sysmon thread, which the proxy cannot configure, puts
// itself to sleep whenever it finds every processor idle, and the next
// system call on a woken processor wakes it again (a futex and a thread
// switch), after which it polls every 20 µs until it has found nothing
// to do 50 times in a row. The proxy runs one processor (GOMAXPROCS = half
// the CPUs) that goes idle between bursts of requests many times a
// second, so under load sysmon cycles through that sleep and wake-up
// continually: a quarter of the proxy's CPU samples under HTTP/2 hello
// (docs/benchmarks.md, "Session 7"). With schedtrace set the runtime
// never puts sysmon to that sleep ("so that it can print that
// information at the right time"); sysmon then backs off to one poll per
// 10 ms on its own. The period is the largest the runtime takes: its one
// line goes out only once CLOCK_MONOTONIC passes the period (uptime
// above 24.8 days) and then every 24.8 days.
const sysmonGODEBUG = "schedtrace=2147483647"

// SysmonEnv is the environment the proxy runs in: env with
// sysmonGODEBUG added to GODEBUG, and whether that changed anything. The
// runtime reads GODEBUG's schedtrace only as a process starts, so the
// master sets it in the environment it starts the proxy with
// (master/proxy.go). A GODEBUG that already sets schedtrace is left as
// it is.
func SysmonEnv(env []string) ([]string, bool) {
	out := make([]string, 0, len(env)+1)
	found := false
	for _, kv := range env {
		v, ok := strings.CutPrefix(kv, "GODEBUG=")
		if !ok {
			out = append(out, kv)
			continue
		}
		if found {
			continue // a duplicate: the runtime reads the first
		}
		found = true
		for _, s := range strings.Split(v, ",") {
			if strings.HasPrefix(s, "schedtrace=") {
				return env, false
			}
		}
		if v != "" {
			v += ","
		}
		out = append(out, "GODEBUG="+v+sysmonGODEBUG)
	}
	if !found {
		out = append(out, "GODEBUG="+sysmonGODEBUG)
	}
	return out, true
}
