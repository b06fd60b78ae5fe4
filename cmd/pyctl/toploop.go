package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/pyhost/pyhost/control"
)

// The live half of `pyctl top`: scrape, wait, scrape, draw, until q,
// Ctrl-C or --count. The figures and the table are top.go's.

const (
	// ansiHome moves the cursor home and clears the screen: each frame
	// is drawn whole, so a narrower table leaves nothing behind.
	ansiHome = "\x1b[H\x1b[2J"
	// minInterval keeps top from scraping the daemon in a tight loop.
	minInterval = 100 * time.Millisecond
)

// topOptions are top's flags.
type topOptions struct {
	once     bool
	interval time.Duration
	count    int // frames to draw, 0: until q or Ctrl-C
}

func (c *cli) topCmd() *cobra.Command {
	var o topOptions
	cmd := &cobra.Command{
		Use:   "top [--once] [--interval D] [--count N]",
		Short: "A live view of your apps: requests/s, latency, errors, threads, queue, memory",
		Long: `Show, per app you may see, refreshed every --interval: requests per
second, the median and 99th percentile latency, 5xx answers per second,
busy/total threads, requests queued, the app's memory (RSS) and its worker
restarts since the daemon started. Rates and percentiles are over the last
interval, from two readings of the daemon's metrics (what pyctl metrics
prints): "-" until there are two, or when no request came.

Keys: q quits (Ctrl-C too).

--once waits one interval, prints the table once, plainly, and exits: for
scripts. --count N stops after N frames.`,
		Args: maxArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.interval < minInterval {
				return usageErrorf("--interval must be at least %s, got %s", minInterval, o.interval)
			}
			if o.count < 0 {
				return usageErrorf("--count must be 0 (until q) or more, got %d", o.count)
			}
			fetch := func(ctx context.Context) ([]byte, error) { return c.fetchMetrics(ctx) }
			if o.once {
				return topOnce(cmd.Context(), cmd.OutOrStdout(), fetch, o.interval, c.me)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if restore, ok := cbreak(os.Stdin); ok {
				defer restore()
				ctx = quitOnKey(ctx, os.Stdin, stop)
			}
			return topLive(ctx, cmd.OutOrStdout(), fetch, o, c.me, time.Now)
		},
	}
	cmd.Flags().BoolVar(&o.once, "once", false, "print one table, plainly, after one interval, and exit (for scripts)")
	cmd.Flags().DurationVar(&o.interval, "interval", 2*time.Second, "time between readings")
	cmd.Flags().IntVar(&o.count, "count", 0, "stop after this many frames (0: until q or Ctrl-C)")
	return cmd
}

// sample scrapes once.
func sample(ctx context.Context, fetch func(context.Context) ([]byte, error), now func() time.Time) (topSample, error) {
	text, err := fetch(ctx)
	if err != nil {
		return topSample{}, err
	}
	return parseTopSample(text, now())
}

// wait sleeps d unless ctx ends first.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// topOnce is --once: two readings one interval apart, one table.
func topOnce(ctx context.Context, w io.Writer, fetch func(context.Context) ([]byte, error), interval time.Duration, me string) error {
	prev, err := sample(ctx, fetch, time.Now)
	if err != nil {
		return err
	}
	if err := wait(ctx, interval); err != nil {
		return err
	}
	cur, err := sample(ctx, fetch, time.Now)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, renderTop(topRows(prev, cur), me))
	return err
}

// topLive draws a frame per interval until ctx ends (q, Ctrl-C: a clean
// exit) or o.count frames are drawn. The first frame comes at once, with
// rates unknown; a failed first reading is returned, a later one (the
// daemon restarting) is shown on the frame and retried.
func topLive(ctx context.Context, w io.Writer, fetch func(context.Context) ([]byte, error), o topOptions, me string, now func() time.Time) error {
	var prev topSample
	for frame := 1; ; frame++ {
		cur, err := sample(ctx, fetch, now)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && frame == 1 {
			// Nothing shown yet: no daemon, metrics off, a daemon too
			// old. Said once, exit 1, as --once does, not redrawn
			// every interval until the admin gives up.
			return err
		}
		var b strings.Builder
		b.WriteString(ansiHome)
		fmt.Fprintf(&b, "pyctl top: every %s, %s (q quits)\n\n", o.interval, now().Format("15:04:05"))
		if err != nil {
			fmt.Fprintf(&b, "cannot read the daemon's metrics: %s\n", oneLine(err.Error()))
		} else {
			b.WriteString(renderTop(topRows(prev, cur), me))
			prev = cur
		}
		if _, werr := io.WriteString(w, b.String()); werr != nil {
			return werr
		}
		if o.count > 0 && frame >= o.count {
			return nil
		}
		if wait(ctx, o.interval) != nil {
			return nil
		}
	}
}

// cbreak puts the terminal f into character-at-a-time mode without echo,
// so a q is read at once and not shown; Ctrl-C still signals. ok is
// false when f is no terminal (top then stops on Ctrl-C or --count only).
func cbreak(f *os.File) (restore func(), ok bool) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, false
	}
	raw := *old
	raw.Lflag &^= unix.ICANON | unix.ECHO
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, false
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }, true
}

// quitOnKey returns a context that ends when q (or Q) is read from r;
// stop is the parent's cancel, called too so the signal handler goes.
// The reader goroutine ends with the process: a read from a terminal
// cannot be interrupted portably, and pyctl exits right after top.
func quitOnKey(ctx context.Context, r io.Reader, stop func()) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer cancel()
		defer stop()
		buf := make([]byte, 1)
		for {
			n, err := r.Read(buf)
			if err != nil {
				return
			}
			if n == 1 && (buf[0] == 'q' || buf[0] == 'Q') {
				return
			}
		}
	}()
	return ctx
}

// fetchMetrics reads the daemon's metrics as Prometheus text, the
// metrics the caller may see.
func (c *cli) fetchMetrics(ctx context.Context) ([]byte, error) {
	text, err := c.client().Metrics(ctx, "")
	if errors.Is(err, control.ErrUnsupported) {
		err = errors.New("this daemon is older than pyctl and serves no metrics over the control socket")
	}
	return []byte(text), err
}
