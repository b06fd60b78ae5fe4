package supervisor

import "fmt"

// WorkerState is where a worker is in its life.
type WorkerState string

// Worker states. The only moves are those in workerMoves.
const (
	WorkerStarting WorkerState = "starting" // spawned, importing the app
	WorkerReady    WorkerState = "ready"    // routed to by the proxy
	WorkerDraining WorkerState = "draining" // no new requests; in-flight finish
	WorkerStopping WorkerState = "stopping" // SIGTERM sent
	WorkerGone     WorkerState = "gone"     // reaped
)

var workerMoves = map[WorkerState][]WorkerState{
	WorkerStarting: {WorkerReady, WorkerStopping, WorkerGone},
	WorkerReady:    {WorkerDraining, WorkerStopping, WorkerGone},
	WorkerDraining: {WorkerStopping, WorkerGone},
	WorkerStopping: {WorkerGone},
}

// AppState is where an app is in its life.
type AppState string

// App states.
const (
	AppStopped   AppState = "stopped"
	AppStarting  AppState = "starting"
	AppRunning   AppState = "running"
	AppReloading AppState = "reloading"
	AppFailing   AppState = "failing"
	// AppIdle: all workers stopped after idle_timeout without requests;
	// the next request starts one.
	AppIdle AppState = "idle"
)

// The app's state is derived (core.state), never set; these are the
// changes one event may make, and Handle checks each against them. An
// app with idle_timeout begins idle: stopped (not run yet) to idle. A
// reload may begin on a stopped app (it starts it on the fresh code, and
// it is stopped again if the new code fails), on an idle one (which is
// idle again if it fails) and on one still starting (a crash loop being
// fixed); a reload that ends with no worker ready leaves it starting.
var appMoves = map[AppState][]AppState{
	AppStopped:   {AppStarting, AppReloading, AppIdle},
	AppStarting:  {AppRunning, AppFailing, AppStopped, AppReloading},
	AppRunning:   {AppReloading, AppFailing, AppStopped, AppStarting, AppIdle},
	AppReloading: {AppRunning, AppFailing, AppStopped, AppIdle, AppStarting},
	AppFailing:   {AppStarting, AppRunning, AppStopped, AppReloading},
	AppIdle:      {AppStarting, AppReloading, AppStopped},
}

// ErrIllegalMove is wrapped by every refused state transition.
var ErrIllegalMove = fmt.Errorf("illegal state transition")

func canMove[S comparable](moves map[S][]S, from, to S) bool {
	for _, s := range moves[from] {
		if s == to {
			return true
		}
	}
	return false
}

func checkWorkerMove(from, to WorkerState) error {
	if !canMove(workerMoves, from, to) {
		return fmt.Errorf("%w: worker %s → %s", ErrIllegalMove, from, to)
	}
	return nil
}

func checkAppMove(from, to AppState) error {
	if from == to {
		return nil
	}
	if !canMove(appMoves, from, to) {
		return fmt.Errorf("%w: app %s → %s", ErrIllegalMove, from, to)
	}
	return nil
}
