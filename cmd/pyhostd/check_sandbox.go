package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	"github.com/pyhost/pyhost/sandbox"
)

// reportSandbox prints how sandboxed apps would start (docs/admin-guide.md,
// "Tenant privacy"): through which trampoline, and whether this host lets
// a root daemon make the mount namespace at all. A container without
// CAP_SYS_ADMIN, or a unit with RestrictNamespaces=yes, refuses it, and
// every sandboxed app would then fail to start: better said by check than
// found in each app's log.
func reportSandbox(w io.Writer, probe func() error) {
	exe, err := os.Executable()
	t, why := sandbox.Find(exe, err)
	if why == "" {
		fmt.Fprintf(w, "sandbox: apps start through %s\n", t.Path)
	} else {
		fmt.Fprintf(w, "warning: sandbox: no usable pyhost-sandbox (%s): apps start through pyhostd %s, which adds pyhostd's start-up to each start\n", why, sandbox.Command)
	}
	if os.Geteuid() != 0 {
		return // only a root daemon sandboxes; nothing to probe as a user
	}
	if err := probe(); err != nil {
		fmt.Fprintf(w, "warning: sandbox: cannot make a mount namespace here (%v): apps with sandbox on (the default) will fail to start; allow them sandbox = false ([users.NAME] allow_unsandboxed = true) or give the daemon CAP_SYS_ADMIN\n", err)
	}
}

// probeMountNamespace starts /bin/true in a mount namespace of its own,
// as the trampoline's start does.
func probeMountNamespace() error {
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	return cmd.Run()
}
