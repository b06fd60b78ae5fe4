package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"time"
)

// The proxy, a process of its own, writes the access log (package
// accesslog, flushed every 200 ms); serve shows requests on the terminal
// by following that file, so the proxy needs no second channel for them.

// followEvery is how often the followed log is read: the writer's own
// flush interval, so a line shows within about 0.4 s of its request.
const followEvery = 200 * time.Millisecond

// followMax is the size past which serve's private access log (in the
// run directory, nobody else reads it) is emptied once it was read to
// its end, so a dev server left running for days does not fill the
// disk; a line written between that read and the truncation is lost to
// the terminal, which is all it was for.
const followMax = 16 << 20

// accessLine matches a line of the access log (accesslog.Append):
// remote, time, request line, status, bytes, referer, user agent,
// duration, app, request id. Client fields are escaped, so a quote
// inside them is always \".
var accessLine = regexp.MustCompile(`^\S+ - - \[[^\]]*\] "(\S*) (\S*) \S*" (\d+) (\S+) "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*" (\S+) \S+ \S+$`)

// shortLine is the terminal's line for one access log line: method,
// path, status, duration and size ("GET /hello 200 1.2ms 6B"); a line it
// cannot parse is shown as it is.
func shortLine(line string) string {
	m := accessLine.FindStringSubmatch(line)
	if m == nil {
		return line
	}
	out := m[1] + " " + m[2] + " " + m[3]
	if secs, err := strconv.ParseFloat(m[5], 64); err == nil {
		d := time.Duration(secs * float64(time.Second))
		switch {
		case d < time.Millisecond:
			out += " " + d.Round(time.Microsecond).String()
		default:
			out += " " + d.Round(100*time.Microsecond).String()
		}
	}
	if m[4] != "-" {
		out += " " + m[4] + "B"
	}
	return out
}

// logEnd is where following path begins: its end, or 0 when missing.
func logEnd(path string) int64 {
	if st, err := os.Stat(path); err == nil {
		return st.Size()
	}
	return 0
}

// followLog prints each line of path from offset off on, through show,
// until ctx is done. truncate lets it empty a file that is its own (see
// followMax).
func followLog(ctx context.Context, path string, off int64, truncate bool, show func(string)) {
	var partial []byte
	buf := make([]byte, 64<<10)
	tick := time.NewTicker(followEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		f, err := os.Open(path)
		if err != nil {
			continue // rotated away; the proxy creates it again
		}
		if st, err := f.Stat(); err == nil && st.Size() < off {
			off, partial = 0, nil // truncated or replaced: from its start
		}
		for {
			n, err := f.ReadAt(buf, off)
			off += int64(n)
			data := append(partial, buf[:n]...)
			for {
				i := bytes.IndexByte(data, '\n')
				if i < 0 {
					break
				}
				show(string(data[:i]))
				data = data[i+1:]
			}
			partial = append([]byte(nil), data...)
			if err == io.EOF || n == 0 {
				break
			}
			if err != nil {
				break
			}
		}
		f.Close()
		if truncate && off > followMax && len(partial) == 0 {
			if os.Truncate(path, 0) == nil {
				off = 0
			}
		}
	}
}

// requestPrinter is what serve does with the access log: short lines
// with the app output (the default), the whole lines on standard output
// (--access-log -), or nothing (--quiet).
func requestPrinter(app string, full bool, stdout, stderr io.Writer, lock func() func()) func(string) {
	if full {
		return func(line string) {
			defer lock()()
			fmt.Fprintln(stdout, line)
		}
	}
	return func(line string) {
		defer lock()()
		fmt.Fprintf(stderr, "[%s] %s\n", app, shortLine(line))
	}
}
