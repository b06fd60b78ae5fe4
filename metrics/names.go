// Package metrics owns pyhost's Prometheus metrics: their names and
// labels (the contract docs/metrics.md, the Grafana dashboard, the alert
// rules and `pyctl top` build on), the collector of the figures the
// master pushes down to the proxy (workers, restarts, memory, CPU, the
// daemon's own), and the per-tenant view of a scrape. The request-side
// instruments live beside the code they count, in the proxy; this
// package never serves HTTP itself.
package metrics

// The metric names. Renaming one breaks dashboards and `pyctl top`: add,
// never rename.
const (
	HTTPRequests        = "pyhost_http_requests_total"                      // counter {user,app,method,code}
	HTTPRequestDuration = "pyhost_http_request_duration_seconds"            // histogram {user,app}
	QueueWait           = "pyhost_queue_wait_seconds"                       // histogram {user,app}
	QueueLength         = "pyhost_queue_length"                             // gauge {user,app}
	ThreadsBusy         = "pyhost_threads_busy"                             // gauge {user,app}
	ThreadsTotal        = "pyhost_threads_total"                            // gauge {user,app}
	StaticBytes         = "pyhost_static_bytes_total"                       // counter {user,app}
	RequestBytes        = "pyhost_http_request_bytes_total"                 // counter {user,app}
	ResponseBytes       = "pyhost_http_response_bytes_total"                // counter {user,app}
	Workers             = "pyhost_workers"                                  // gauge {user,app,state}
	WorkerRestarts      = "pyhost_worker_restarts_total"                    // counter {user,app,reason}
	AppState            = "pyhost_app_state"                                // gauge {user,app,state}: 1 for the current one
	AppRSS              = "pyhost_app_rss_bytes"                            // gauge {user,app}
	AppCPU              = "pyhost_app_cpu_seconds_total"                    // counter {user,app}
	AppOOMKills         = "pyhost_app_oom_kills_total"                      // counter {user,app}
	AppMemory           = "pyhost_app_memory_bytes"                         // gauge {user,app}: the cgroup's memory.current
	AppMemoryMax        = "pyhost_app_memory_max_bytes"                     // gauge {user,app}: memory_max, 0 none
	AppTasks            = "pyhost_app_tasks"                                // gauge {user,app}: the cgroup's pids.current
	BuildInfo           = "pyhost_build_info"                               // gauge {version,goversion} = 1
	StartTime           = "pyhost_start_time_seconds"                       // gauge
	ConfigReloads       = "pyhost_config_reloads_total"                     // counter {result}
	CertExpiry          = "pyhost_tls_certificate_expiry_timestamp_seconds" // gauge {name}
)

// Methods are the values of the method label: the common ones, and
// "other" for the rest, so a client cannot make up series.
var Methods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}

// MethodIndex is m's index in Methods.
func MethodIndex(m string) int {
	switch m {
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "DELETE":
		return 4
	case "PATCH":
		return 5
	case "OPTIONS":
		return 6
	}
	return 7
}

// Codes are the values of the code label, by status class.
var Codes = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// CodeIndex is the index in Codes of a status: its class, 5xx for
// anything out of range.
func CodeIndex(status int) int {
	if status < 100 || status > 599 {
		return 4
	}
	return status/100 - 1
}

// WorkerStates are the values of pyhost_workers' state label, all of
// them always present (0 when none); AppStates pyhost_app_state's.
var (
	WorkerStates = [...]string{"starting", "ready", "draining", "stopping"}
	AppStates    = [...]string{"stopped", "starting", "running", "reloading", "failing"}
)

// RestartReasons are the values of pyhost_worker_restarts_total's reason
// label, all of them always present.
var RestartReasons = [...]string{"crash", "oom", "memory", "requests", "timeout", "reload"}

// SplitKey splits an app key "user/app" into its labels.
func SplitKey(key string) (user, app string) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:]
		}
	}
	return "", key
}
