//go:build linux && (386 || arm)

package trampoline

import "golang.org/x/sys/unix"

// The calls that take 32-bit ids (drop): on 386 and arm the plain ones
// take 16-bit ids.
const (
	sysSetgroups = unix.SYS_SETGROUPS32
	sysSetresgid = unix.SYS_SETRESGID32
	sysSetresuid = unix.SYS_SETRESUID32
)
