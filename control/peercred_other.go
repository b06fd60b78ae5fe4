//go:build !linux

package control

import (
	"errors"
	"net"
)

// peerCaller is only implemented on Linux, the one platform the daemon
// runs on; elsewhere every connection is refused. The client side of this
// package works everywhere.
func peerCaller(net.Conn) (Caller, error) {
	return Caller{}, errors.New("peer credentials: not supported on this platform")
}
