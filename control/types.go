package control

import (
	"context"
	"time"
)

// Caller is the identity of the process on the other end of a control
// connection, read from the kernel (SO_PEERCRED) when it connected. It
// cannot be forged by the client.
type Caller struct {
	UID uint32
	GID uint32
	PID int32
}

// IsRoot reports whether the caller runs as uid 0.
func (c Caller) IsRoot() bool { return c.UID == 0 }

// Worker states, as reported in WorkerStatus.State.
const (
	WorkerStarting = "starting"
	WorkerReady    = "ready"
	WorkerDraining = "draining"
	WorkerStopping = "stopping"
	WorkerGone     = "gone"
)

// App states, as reported in AppStatus.State.
const (
	AppStopped   = "stopped"
	AppStarting  = "starting"
	AppRunning   = "running"
	AppReloading = "reloading"
	AppFailing   = "failing"
	// AppIdle: no worker, stopped after idle_timeout without requests
	// (or not started yet); the next request starts one.
	AppIdle = "idle"
	// AppRefused: an app file the daemon did not load (a trust, claim or
	// quota check failed); LastError says why. Nothing of it runs.
	AppRefused = "refused"
)

// WorkerStatus is one worker process of an app. The JSON field names are
// part of the contract of `pyctl status --json`: add fields, never rename.
type WorkerStatus struct {
	ID         int       `json:"id"`
	PID        int       `json:"pid"`
	State      string    `json:"state"` // one of the Worker* constants
	RSSBytes   uint64    `json:"rss_bytes"`
	CPUSeconds float64   `json:"cpu_seconds"`
	Requests   uint64    `json:"requests"` // requests served so far
	Busy       int       `json:"busy"`     // threads holding a request now
	Threads    int       `json:"threads"`
	StartedAt  time.Time `json:"started_at"`
	AgeSeconds float64   `json:"age_seconds"` // at the time of the status call
}

// AppStatus is one app as a caller may see it. The JSON field names are
// part of the contract of `pyctl status --json`: add fields, never rename.
// The server sends nil slices as empty JSON arrays, never null.
type AppStatus struct {
	Name      string         `json:"name"`  // the app file's name without .toml
	User      string         `json:"user"`  // login name of the app's owner
	State     string         `json:"state"` // one of the App* constants
	Domains   []string       `json:"domains"`
	URLPrefix string         `json:"url_prefix"`
	Processes int            `json:"processes"` // configured worker count
	Threads   int            `json:"threads"`   // configured threads per worker
	Workers   []WorkerStatus `json:"workers"`
	Restarts  int            `json:"restarts"`
	LastError string         `json:"last_error"`
	LastLog   []string       `json:"last_log"` // last lines of the app's log, oldest first
	// AdminDeployed: the app's file is in the admin's admin_dir; its
	// user may see it but only root may act on it.
	AdminDeployed bool `json:"admin_deployed,omitempty"`

	// Containment (issue 14): the figures of the app's cgroup, its
	// workers and fork server and all they forked. Cgroup is the group's
	// path below the daemon's tree ("apps/alice/blog"), "" when the host
	// gives the app no cgroup (then every figure below is 0). A figure
	// the host does not keep is 0 too.
	Cgroup             string  `json:"cgroup"`
	MemoryCurrentBytes int64   `json:"memory_current_bytes"` // page cache included
	MemoryMaxBytes     int64   `json:"memory_max_bytes"`     // memory_max in force; 0 is no limit
	CgroupCPUSeconds   float64 `json:"cgroup_cpu_seconds"`   // user and system, since the group was made
	Tasks              int64   `json:"tasks"`                // processes and threads now
	OOMKills           int64   `json:"oom_kills"`            // processes the kernel's OOM killer killed, since the daemon started
	ThrottledSeconds   float64 `json:"throttled_seconds"`    // time held back by cpu_max
	// MemoryMaxPendingBytes is a lower memory_max the kernel has not
	// taken yet (v1 refuses one below what the app uses), retried as
	// workers exit; absent when none is pending.
	MemoryMaxPendingBytes int64 `json:"memory_max_pending_bytes,omitempty"`
	// RestartsByReason counts worker replacements since the daemon
	// started by why (the Restart* constants); Restarts stays the count
	// of crashes and OOM kills. Reasons with no restart are absent.
	RestartsByReason map[string]int `json:"restarts_by_reason"`
}

// Reasons a worker was replaced, the keys of AppStatus.RestartsByReason.
const (
	RestartCrash    = "crash"    // it exited or was killed, not by pyhost and not by the OOM killer
	RestartOOM      = "oom"      // the kernel's OOM killer killed it (memory_max reached)
	RestartMemory   = "memory"   // recycled for memory_limit
	RestartRequests = "requests" // recycled for max_requests
	RestartTimeout  = "timeout"  // killed for harakiri (a request over its timeout) or a hung start
	RestartReload   = "reload"   // replaced by a reload or pyctl restart
)

// Backend is what the control server asks; the daemon implements it.
//
// Implementations authorize: they must only show and act on what c may
// see (U5: a user their own apps, root all of them) and return an error
// wrapping ErrAccessDenied or ErrNoSuchApp otherwise. Returning
// ErrNoSuchApp for another user's app also hides that it exists. Any
// other error reaches the client as its message (code "internal"), so it
// must not tell the caller what it may not know.
//
// ctx is the request's context: it is cancelled when the client goes away
// (pyctl killed with Ctrl-C) and when the control server shuts down. A
// backend that wants a reload to finish regardless should detach with
// context.WithoutCancel.
type Backend interface {
	// Status returns the apps named by app that c may see, or all of
	// them when app is "". A named app that c may not see is an error.
	Status(ctx context.Context, c Caller, app string) ([]AppStatus, error)

	// Reload rolls app onto its current file and blocks until that is
	// done or has failed. It calls progress with one human-readable line
	// per step; progress may be called from any goroutine but not after
	// Reload has returned (such calls are dropped). A refused or aborted
	// reload is reported as a *ReloadError.
	Reload(ctx context.Context, c Caller, app string, progress func(msg string)) error

	// Act changes app's running state (restart, stop, start) and blocks
	// until that is done, calling progress like Reload does.
	Act(ctx context.Context, c Caller, action Action, app string, progress func(msg string)) error

	// Check validates the app file at path (absolute) for caller c as the
	// daemon would load it, without loading it. A refusal is a
	// *ReloadError whose Detail says why.
	Check(ctx context.Context, c Caller, path string) error

	// ReloadConfig re-reads the admin config and every app file (root
	// only): new apps start, removed ones stop, changed ones roll.
	ReloadConfig(ctx context.Context, c Caller, progress func(msg string)) error

	// ReopenLogs reopens every app log and the access log, as SIGUSR1
	// does, after logrotate moved them away (root and the daemon's own
	// user only). It returns once no line can go to the old files any
	// more: the proxy too has reopened the access log, so a logrotate
	// postrotate that waits for it may compress them at once.
	ReopenLogs(ctx context.Context, c Caller) error

	// Logs calls out with the last n lines of app's log, oldest first,
	// and, when follow is set, with every later line until ctx ends. An
	// error from out (the client went away) ends it.
	Logs(ctx context.Context, c Caller, app string, n int, follow bool, out func(line string) error) error
}

// Action is a change to an app's running state.
type Action string

// Actions for Backend.Act.
const (
	// ActionRestart replaces every worker the way a reload does, without
	// re-reading the app's settings.
	ActionRestart Action = "restart"
	// ActionStop stops every worker; the app answers 503 until started.
	ActionStop Action = "stop"
	// ActionStart starts a stopped app.
	ActionStart Action = "start"
)
