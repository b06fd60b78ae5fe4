package main

import (
	"fmt"
	"os"

	"github.com/pyhost/pyhost/sandbox"
)

// sandboxExec is the hidden `pyhostd sandbox-exec`, the trampoline a
// sandboxed app's fork server and workers start through (package
// sandbox, Wrap). main dispatches it before cobra: it runs at every such
// start, so it does as little as it can, and it is no command of the
// user's (it needs root and a mount namespace of its own anyway).
// Its stderr is the app's log.
// It reports false for any other command line.
func sandboxExec(args []string) (int, bool) {
	if len(args) == 0 || args[0] != sandbox.Command {
		return 0, false
	}
	err := sandbox.Exec(args[1:])
	fmt.Fprintf(os.Stderr, "pyhost sandbox: %v\n", err)
	return 127, true
}
