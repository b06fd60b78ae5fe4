// Command pyhost-sandbox is the tenant sandbox's trampoline: pyhostd
// starts each sandboxed fork server and worker through it, as root in a
// new mount namespace, and it builds the app's view, drops to the app's
// user and executes the app's command (package sandbox/trampoline). It
// is no command of a user's: run by hand it refuses.
//
// It is a binary of its own, apart from pyhostd, only for speed: it runs
// at every such start, and this one initializes nothing but the standard
// library (pyhostd sandbox-exec, the fallback, does the same work after
// tens of milliseconds of pyhostd's own start-up). Keep its imports to
// the trampoline package; `go list -deps ./cmd/pyhost-sandbox` shows
// them.
package main

import (
	"fmt"
	"os"

	"github.com/pyhost/pyhost/sandbox/trampoline"
)

func main() {
	err := trampoline.Exec(os.Args[1:])
	// Its stderr is the app's log.
	fmt.Fprintf(os.Stderr, "pyhost sandbox: %v\n", err)
	os.Exit(127)
}
