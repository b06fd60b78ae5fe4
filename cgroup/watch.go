package cgroup

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// OOMEvent is an increase of a group's OOM-kill count.
type OOMEvent struct {
	Kills int64 // kills since the previous event (or since WatchOOM)
	Total int64 // the group's count, its subgroups' included
}

// WatchOOM reports each increase of the group's OOM-kill count after the
// call. The channel is closed when ctx ends or the group is removed.
// Nothing is lost to a slow receiver: kills counted meanwhile add up in
// the next event. On cgroup2 the kernel wakes the watch (inotify on
// memory.events); on v1 it polls memory.oom_control every
// TreeOptions.PollInterval. A group without a memory controller (a
// worker's leaf, a host without one) is ErrUnsupported.
func (g *Group) WatchOOM(ctx context.Context) (<-chan OOMEvent, error) {
	var count func() (int64, bool, error)
	var wake func(context.Context) bool // false: stop
	var done func()
	switch {
	case g.v2 != "" && g.t.hasV2("memory") && g.kind != kindWorker:
		file := filepath.Join(g.v2, "memory.events")
		w, err := watchModify(file)
		if err != nil {
			return nil, fmt.Errorf("cgroup: %w", err)
		}
		count = func() (int64, bool, error) {
			b, err := g.t.k.read(file)
			if errors.Is(err, fs.ErrNotExist) {
				return 0, false, nil
			}
			if err != nil {
				return 0, false, err
			}
			return parseKeyed(b)["oom_kill"], true, nil
		}
		wake = func(ctx context.Context) bool {
			gone, err := w.wait(ctx)
			return err == nil && !gone
		}
		done = w.close
	case g.v1dir("memory") != "" && g.kind != kindWorker:
		dir := g.v1dir("memory")
		count = func() (int64, bool, error) { return g.v1OOMKills(dir) }
		tick := time.NewTicker(g.t.opts.PollInterval)
		wake = func(ctx context.Context) bool {
			select {
			case <-ctx.Done():
				return false
			case <-tick.C:
				return true
			}
		}
		done = tick.Stop
	default:
		return nil, fmt.Errorf("cgroup: OOM kills of %s: no memory controller: %w", g.rel, ErrUnsupported)
	}
	last, _, err := count()
	if err != nil {
		done()
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	ch := make(chan OOMEvent)
	go func() {
		defer close(ch)
		defer done()
		for wake(ctx) {
			n, ok, err := count()
			if !ok || err != nil {
				return // the group is gone
			}
			if n <= last {
				continue
			}
			select {
			case ch <- OOMEvent{Kills: n - last, Total: n}:
				last = n
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// fileWatch is an inotify watch for IN_MODIFY on one file.
type fileWatch struct {
	f *os.File
}

func watchModify(path string) (*fileWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_MODIFY); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "inotify_add_watch", Path: path, Err: err}
	}
	// Non-blocking, so the runtime's poller waits on it and close
	// wakes a blocked read.
	return &fileWatch{f: os.NewFile(uintptr(fd), "inotify:"+path)}, nil
}

// wait blocks until the file is modified (true: it was removed, with its
// group) or ctx ends.
func (w *fileWatch) wait(ctx context.Context) (gone bool, err error) {
	stop := context.AfterFunc(ctx, func() { _ = w.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 4096)
	n, err := w.f.Read(buf)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, err
	}
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		// struct inotify_event: wd int32, mask, cookie, len uint32, name.
		mask := binary.NativeEndian.Uint32(buf[off+4:])
		nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
		if mask&unix.IN_IGNORED != 0 {
			gone = true
		}
		off += unix.SizeofInotifyEvent + nameLen
	}
	return gone, nil
}

func (w *fileWatch) close() { _ = w.f.Close() }
