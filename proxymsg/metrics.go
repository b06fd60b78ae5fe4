package proxymsg

import "time"

// Figures are what the master knows of the apps and of itself that the
// proxy exports as metrics (package metrics): the master does not serve
// HTTP, so it sends them down every few seconds and on a change. Each
// message replaces the one before, whole.
type Figures struct {
	// StartTime is when the daemon (the master) started.
	StartTime time.Time `json:"start_time"`
	// Reloads and ReloadFailures count reload-config (and SIGHUP in
	// system mode) since the daemon started: applied, and refused or
	// failed.
	Reloads        uint64       `json:"reloads"`
	ReloadFailures uint64       `json:"reload_failures"`
	Apps           []AppFigures `json:"apps"`
}

// AppFigures are one app's supervisor figures, taken from the status
// the control socket serves (control.AppStatus).
type AppFigures struct {
	User string `json:"user"`
	App  string `json:"app"`
	// State is the app's state (control's App* names).
	State string `json:"state"`
	// Workers counts the app's workers by state (control's Worker*
	// names).
	Workers map[string]int `json:"workers,omitempty"`
	// Restarts counts worker replacements by reason since the daemon
	// started (control's Restart* names).
	Restarts map[string]int `json:"restarts,omitempty"`
	// RSSBytes is the sum of its workers' resident memory.
	RSSBytes uint64 `json:"rss_bytes"`
	// CPUSeconds is the CPU time of the app's cgroup when it has one,
	// else of its workers, never going down (master: steadyCPU).
	CPUSeconds float64 `json:"cpu_seconds"`
	// The app's cgroup figures; 0 without a cgroup.
	OOMKills           int64 `json:"oom_kills,omitempty"`
	MemoryCurrentBytes int64 `json:"memory_current_bytes,omitempty"`
	MemoryMaxBytes     int64 `json:"memory_max_bytes,omitempty"`
	Tasks              int64 `json:"tasks,omitempty"`
}

// MetricsQuery asks the proxy for the Prometheus text of the series of
// Apps ("user/app" keys), or of every series when All is set, as
// `pyctl metrics` shows them (the master decides who may see what). The
// answer names the same ID.
type MetricsQuery struct {
	ID   uint64   `json:"id"`
	All  bool     `json:"all,omitempty"`
	Apps []string `json:"apps,omitempty"`
}

// MetricsAnswer is the proxy's answer to a MetricsQuery: the text
// exposition format, or why it has none.
type MetricsAnswer struct {
	ID    uint64 `json:"id"`
	Text  string `json:"text,omitempty"`
	Error string `json:"error,omitempty"`
}
