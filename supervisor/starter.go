package supervisor

import (
	"time"

	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/workerproc"
)

// Proc is one running worker as the supervisor sees it. *workerproc.Process
// is the real one; tests use fakes.
type Proc interface {
	PID() int
	Socket() string
	StartedAt() time.Time
	// Ready is closed when the worker imported the app and serves.
	Ready() <-chan struct{}
	// Exited is closed once the worker is gone; ExitErr and ImportErr
	// are final from then on.
	Exited() <-chan struct{}
	ExitErr() error
	ImportErr() *workerproc.ImportError
	// Stop is SIGTERM, then SIGKILL to the group after grace; idempotent.
	Stop(grace time.Duration)
	Kill()
	DumpStacks()
	RSS() (int64, error)
	Stats() (workerproc.Stats, error)
}

// ForkServer is an app's fork server as the supervisor sees it.
// *workerproc.ForkServer is the real one.
type ForkServer interface {
	PID() int
	// Err says why it can no longer fork, or nil.
	Err() error
	IsReady() bool
	Exited() <-chan struct{}
	Retire()
	Kill()
	Close(grace time.Duration)
}

// Starter starts an app's processes.
type Starter interface {
	// StartWorker starts one worker; via, when not nil, is a fork server
	// this Starter started, to fork it from.
	StartWorker(spec workerproc.Spec, via ForkServer) (Proc, error)
	StartForkServer(spec workerproc.ForkServerSpec) (ForkServer, error)
}

// Clock is the time an App reads and waits on. Nil in Options: the real
// one.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d, unless stopped.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a Clock's pending call.
type Timer interface {
	// Stop cancels the call; false if it already ran or was stopped.
	Stop() bool
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// spawnerStarter starts processes with package workerproc from the
// spawner's thread.
type spawnerStarter struct{ sp *privdrop.Spawner }

func (s spawnerStarter) StartWorker(spec workerproc.Spec, via ForkServer) (Proc, error) {
	if via != nil {
		spec.ForkServer = via.(*workerproc.ForkServer) // only ours come back
	}
	p, err := workerproc.Start(s.sp, spec)
	if err != nil {
		return nil, err // not a typed nil in a Proc
	}
	return p, nil
}

func (s spawnerStarter) StartForkServer(spec workerproc.ForkServerSpec) (ForkServer, error) {
	fs, err := workerproc.StartForkServer(s.sp, spec)
	if err != nil {
		return nil, err
	}
	return fs, nil
}
