package main

import (
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/sandbox"
	"github.com/pyhost/pyhost/sandbox/trampoline"
)

// The daemon's log says once which trampoline sandboxed apps start
// through (sandbox.Wrap): pyhost-sandbox, or this binary's fallback.
func init() {
	sandbox.Logger = func() hclog.Logger { return newLogger("pyhostd", os.Stderr).Named("sandbox") }
}

// sandboxExec is the hidden `pyhostd sandbox-exec`, the fallback
// trampoline a sandboxed app's fork server and workers start through
// when pyhost-sandbox is not installed (package sandbox, Wrap). main
// dispatches it before cobra: it runs at every such start, so it does as
// little as it can, and it is no command of the user's (it needs root
// and a mount namespace of its own anyway). Its stderr is the app's log.
// It reports false for any other command line.
func sandboxExec(args []string) (int, bool) {
	if len(args) == 0 || args[0] != sandbox.Command {
		return 0, false
	}
	err := trampoline.Exec(args[1:])
	fmt.Fprintf(os.Stderr, "pyhost sandbox: %v\n", err)
	return 127, true
}
