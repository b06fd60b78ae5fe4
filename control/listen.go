package control

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// SocketMode is the file mode Listen gives the control socket: anyone may
// connect, because the server authorizes each request by the caller's
// peer credentials, not by who could open the file. Restrict access by
// the mode of the directory holding the socket if needed.
const SocketMode fs.FileMode = 0o666

// probeTimeout bounds the dial that tells a live socket from a stale one.
const probeTimeout = 2 * time.Second

// Listen creates the control socket at path, with mode SocketMode, and
// returns its listener; closing the listener removes the socket file.
//
// A socket already at path is probed first: if a daemon answers, Listen
// fails with an error matching syscall.EADDRINUSE; if the connection is
// refused, the socket is a leftover of a daemon that died, and is replaced.
// Anything at path that is not a socket is left alone and is an error.
// The parent directory must exist.
//
// Two daemons starting at the same instant may both see a stale socket;
// the loser's Listen then fails or takes the path over. Run one daemon
// per socket path (systemd does).
func Listen(path string) (net.Listener, error) {
	fi, err := os.Lstat(path)
	switch {
	case err == nil:
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("control socket %s: a %s is in the way, not a socket; not removing it", path, fileKind(fi.Mode()))
		}
		if err := removeStale(path); err != nil {
			return nil, err
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}

	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	// The socket was bound with the umask's mode; widening it afterwards
	// never exposes more than intended in between.
	if err := os.Chmod(path, SocketMode); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return ln, nil
}

// removeStale removes the socket at path unless something answers on it.
func removeStale(path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	switch {
	case err == nil:
		_ = c.Close()
		return fmt.Errorf("control socket %s is in use by a running daemon: %w", path, syscall.EADDRINUSE)
	case errors.Is(err, syscall.ECONNREFUSED):
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale control socket %s: %w", path, err)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return nil // removed by someone else meanwhile
	default:
		return fmt.Errorf("probe control socket %s: %w", path, err)
	}
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	default:
		return "file of mode " + m.Type().String()
	}
}
