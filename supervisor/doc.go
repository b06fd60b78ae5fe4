// Package supervisor owns the life of each app: its state (stopped,
// starting, running, reloading, failing, idle), its workers' states
// (starting, ready, draining, stopping, gone), replacing dead workers with
// backoff, recycling them, idling, the owner's stop and start, and the
// rolling reload.
//
// Every decision is made by a core (core.go), a plain value fed one event
// at a time with the time it happened, which returns effects: start a
// worker, stop one with a grace, kill one, set a timer, write a line.
// The App (app.go) is an actor: one goroutine owns the core, turns what
// happens (a worker ready or reaped, a timer, a call such as Reload) into
// events, and carries out the effects through a Starter and a Clock,
// which tests replace. The app's state is derived from the core's fields
// in one place (core.state) and every change is checked against the
// legal moves (state.go).
//
// The policies it applies are pure values too (RestartTracker,
// PlanRecycles, CheckMemory). Processes themselves are package workerproc'
// business; what the proxy should route to is published as a
// proxymsg.App.
package supervisor
