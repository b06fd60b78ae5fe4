package proxymsg

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// The listening sockets travel on a second socketpair, beside the JSON
// channel: descriptors can only be passed as SCM_RIGHTS ancillary data,
// which does not mix with a buffered byte stream. It is SOCK_SEQPACKET,
// so one sendmsg is one message: its descriptors arrive with exactly the
// bytes that name them, and a reader never sees half a message.

// MaxListeners bounds the listeners in one ListenerSet: the kernel passes
// at most 253 descriptors in one message (SCM_MAX_FD).
const MaxListeners = 253

// maxFilesMessage bounds the JSON of one message on the files socket.
const maxFilesMessage = 64 << 10

// ErrTooManyListeners is returned for a ListenerSet over MaxListeners.
var ErrTooManyListeners = errors.New("too many listeners for one message")

// ListenerSet is the whole set of listening sockets the proxy is to serve
// from now on: every one the master holds, not only the new ones, so the
// proxy can tell what to add and what to close by itself.
type ListenerSet struct {
	// Serial grows with each set; the proxy's ListenerAck names it.
	Serial uint64 `json:"serial"`
	// Addrs are the listeners' addresses, one for each of Files, for
	// logs.
	Addrs []string `json:"addrs"`
	// TLS says, for each of Files, whether it is a tls_listen socket
	// (the proxy terminates TLS on it) or a plain HTTP one; nil: all
	// plain.
	TLS []bool `json:"tls,omitempty"`
	// Metrics says, for each of Files, whether it is the metrics_listen
	// socket; nil: none is.
	Metrics []bool `json:"metrics,omitempty"`
	// Files are the listening sockets, duplicates the receiver owns and
	// must close.
	Files []*os.File `json:"-"`
}

// IsTLS reports whether listener i is a TLS one.
func (s ListenerSet) IsTLS(i int) bool { return i < len(s.TLS) && s.TLS[i] }

// IsMetrics reports whether listener i is the metrics one.
func (s ListenerSet) IsMetrics(i int) bool { return i < len(s.Metrics) && s.Metrics[i] }

// ListenerAck is the proxy's answer to a ListenerSet: it serves that set
// now (Error empty), or refused it and serves the one before.
type ListenerAck struct {
	Serial uint64 `json:"serial"`
	Error  string `json:"error,omitempty"`
}

// FilesConn is one end of the files socket. Each method may be used by
// one goroutine at a time.
type FilesConn struct {
	c *net.UnixConn
}

// NewFilesPair creates the files socket: the master's end, and the
// proxy's as a file for the child to inherit (the caller closes it once
// the child started).
func NewFilesPair() (*FilesConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("files socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "files")
	theirs := os.NewFile(uintptr(fds[1]), "files-proxy")
	c, err := NewFilesConn(mine)
	mine.Close()
	if err != nil {
		theirs.Close()
		return nil, nil, err
	}
	return c, theirs, nil
}

// NewFilesConn wraps an inherited end of the files socket; f may be
// closed afterwards.
func NewFilesConn(f *os.File) (*FilesConn, error) {
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("files socket: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("files socket: %s is not a unix socket", c.LocalAddr().Network())
	}
	return &FilesConn{c: uc}, nil
}

// Close closes this end; the peer's next receive gets io.EOF.
func (c *FilesConn) Close() error { return c.c.Close() }

// SetReadDeadline bounds the next receives, as net.Conn's does.
func (c *FilesConn) SetReadDeadline(t time.Time) error { return c.c.SetReadDeadline(t) }

// SendListeners sends s with its files. The files stay the caller's:
// the receiver gets its own duplicates.
func (c *FilesConn) SendListeners(s ListenerSet) error {
	if len(s.Files) != len(s.Addrs) {
		return fmt.Errorf("listener set: %d files for %d addresses", len(s.Files), len(s.Addrs))
	}
	if s.TLS != nil && len(s.TLS) != len(s.Addrs) {
		return fmt.Errorf("listener set: %d kinds for %d addresses", len(s.TLS), len(s.Addrs))
	}
	if s.Metrics != nil && len(s.Metrics) != len(s.Addrs) {
		return fmt.Errorf("listener set: %d metrics marks for %d addresses", len(s.Metrics), len(s.Addrs))
	}
	if len(s.Files) > MaxListeners {
		return fmt.Errorf("%w: %d, at most %d", ErrTooManyListeners, len(s.Files), MaxListeners)
	}
	var oob []byte
	if len(s.Files) > 0 {
		fds := make([]int, len(s.Files))
		for i, f := range s.Files {
			fd, err := rawFD(f)
			if err != nil {
				return fmt.Errorf("listener set: %s: %w", s.Addrs[i], err)
			}
			fds[i] = fd
		}
		oob = unix.UnixRights(fds...)
	}
	err := c.send(s, oob)
	runtime.KeepAlive(s.Files) // the numbers in oob are theirs until sent
	return err
}

// rawFD is f's descriptor number. Not f.Fd(): for a listener's File that
// clears O_NONBLOCK, which belongs to the socket's open file description,
// shared with every duplicate, the proxy's served listeners among them;
// a served listener left blocking ties its accept to a thread, and then
// closing it waits for the next connection.
func rawFD(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// ReceiveListeners reads the next ListenerSet. io.EOF means the master
// closed its end.
func (c *FilesConn) ReceiveListeners() (ListenerSet, error) {
	var s ListenerSet
	fds, err := c.receive(&s, unix.CmsgSpace(MaxListeners*4))
	if err != nil {
		return ListenerSet{}, err
	}
	if len(fds) != len(s.Addrs) || (s.TLS != nil && len(s.TLS) != len(s.Addrs)) || (s.Metrics != nil && len(s.Metrics) != len(s.Addrs)) {
		closeFDs(fds)
		return ListenerSet{}, fmt.Errorf("listener set %d: %d descriptors and %d kinds for %d addresses", s.Serial, len(fds), len(s.TLS), len(s.Addrs))
	}
	s.Files = make([]*os.File, len(fds))
	for i, fd := range fds {
		s.Files[i] = os.NewFile(uintptr(fd), "listener "+s.Addrs[i])
	}
	return s, nil
}

// SendAck answers a ListenerSet.
func (c *FilesConn) SendAck(a ListenerAck) error { return c.send(a, nil) }

// ReceiveAck reads the next ListenerAck. io.EOF means the proxy went away.
func (c *FilesConn) ReceiveAck() (ListenerAck, error) {
	var a ListenerAck
	fds, err := c.receive(&a, 0)
	closeFDs(fds) // an ack carries none; never leak what a peer sent
	return a, err
}

func (c *FilesConn) send(v any, oob []byte) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode files message: %w", err)
	}
	if len(b) > maxFilesMessage {
		return fmt.Errorf("files message: %w", ErrTooLarge)
	}
	if _, _, err := c.c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("send files message: %w", err)
	}
	return nil
}

// receive reads one message into v and returns the descriptors that came
// with it, which the caller owns. oobSize 0 still leaves room for a
// descriptor a peer should not have sent, so it can be closed.
func (c *FilesConn) receive(v any, oobSize int) ([]int, error) {
	b := make([]byte, maxFilesMessage+1)
	oob := make([]byte, max(oobSize, unix.CmsgSpace(4)))
	n, oobn, flags, _, err := c.c.ReadMsgUnix(b, oob)
	if err != nil {
		return nil, err
	}
	fds, perr := parseRights(oob[:oobn])
	switch {
	case n == 0 && oobn == 0:
		// A SOCK_SEQPACKET read of nothing is the peer's close: no
		// message here is ever empty.
		return nil, io.EOF
	case perr != nil:
		closeFDs(fds)
		return nil, fmt.Errorf("files message: %w", perr)
	case flags&unix.MSG_CTRUNC != 0:
		closeFDs(fds)
		return nil, errors.New("files message: descriptors cut off (too many in one message)")
	case n > maxFilesMessage || flags&unix.MSG_TRUNC != 0:
		closeFDs(fds)
		return nil, fmt.Errorf("files message: %w", ErrTooLarge)
	}
	if err := json.Unmarshal(b[:n], v); err != nil {
		closeFDs(fds)
		return nil, fmt.Errorf("decode files message: %w", err)
	}
	return fds, nil
}

// parseRights returns every descriptor in the control messages, even
// when some of them cannot be parsed, so none is leaked.
func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	var bad error
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			bad = err
			continue
		}
		fds = append(fds, got...)
	}
	return fds, bad
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
