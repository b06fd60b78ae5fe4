// Package supervisor owns the life of each app: its state machine
// (stopped, starting, running, reloading, failing), its workers' states
// (starting, ready, draining, stopping, gone), replacing dead workers with
// backoff, and the rolling reload. Each App is an actor: one goroutine owns
// all of its mutable state and everything else talks to it by message.
//
// The policies it applies are pure values (RestartTracker) tested without
// any process. Processes themselves are package daemons' business; what
// the proxy should route to is published as a channel.App.
package supervisor
