package main

import (
	"time"

	"github.com/pyhost/pyhost/control"
)

var started = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// Apps as alice's and root's status would show them.
var (
	blog = control.AppStatus{
		Name: "blog", User: "alice", State: control.AppRunning,
		Domains: []string{"blog.alice.example.com", "www.alice.example.com"}, URLPrefix: "/",
		Processes: 2, Threads: 4,
		Workers: []control.WorkerStatus{
			{ID: 1, PID: 4121, State: control.WorkerReady, RSSBytes: 24536678, CPUSeconds: 1.52, Requests: 1024, Busy: 1, Threads: 4, StartedAt: started, AgeSeconds: 192},
			{ID: 3, PID: 4188, State: control.WorkerStarting, Threads: 4, StartedAt: started.Add(time.Minute), AgeSeconds: 1.4},
		},
		Restarts:  3,
		LastError: "worker 2 exited with status 1",
		Cgroup:    "apps/alice/blog", MemoryCurrentBytes: 327155712, MemoryMaxBytes: 512 << 20,
		CgroupCPUSeconds: 12.34, Tasks: 14, OOMKills: 1, ThrottledSeconds: 0.42,
		RestartsByReason: map[string]int{control.RestartCrash: 2, control.RestartOOM: 1, control.RestartMemory: 4},
		LastLog: []string{
			"Traceback (most recent call last):",
			"  File \"/home/alice/blog/wsgi.py\", line 3, in <module>",
			"ModuleNotFoundError: No module named 'markdown'",
		},
	}
	api = control.AppStatus{
		Name: "api", User: "alice", State: control.AppReloading,
		Domains: []string{"alice.example.com"}, URLPrefix: "/api",
		Processes: 1, Threads: 8,
		Workers: []control.WorkerStatus{
			{ID: 1, PID: 3977, State: control.WorkerDraining, RSSBytes: 1288490188, CPUSeconds: 7321.4, Requests: 981233, Busy: 8, Threads: 8, StartedAt: started, AgeSeconds: 90061},
			{ID: 2, PID: 4201, State: control.WorkerReady, RSSBytes: 1536, CPUSeconds: 0.31, Requests: 2, Busy: 0, Threads: 8, StartedAt: started, AgeSeconds: 3700},
		},
	}
	shop = control.AppStatus{
		Name: "shop", User: "bob", State: control.AppStopped,
		Domains: []string{"shop.example.org"}, URLPrefix: "/",
		Processes: 2, Threads: 4, Workers: []control.WorkerStatus{}, LastLog: []string{},
	}
	// hello is express mode's one app: any Host.
	hello = control.AppStatus{
		Name: "hello", User: "alice", State: control.AppRunning,
		Domains: []string{}, URLPrefix: "/", Processes: 1, Threads: 4,
		Workers: []control.WorkerStatus{
			{ID: 1, PID: 52011, State: control.WorkerReady, RSSBytes: 19922944, CPUSeconds: 0.2, Requests: 5, Busy: 0, Threads: 4, StartedAt: started, AgeSeconds: 45},
		},
		LastLog: []string{},
	}
)
