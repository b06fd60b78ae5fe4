package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"sync"
	"time"
)

// jsonMark starts the line lib/report.lua makes wrk print; benchtool.py
// record reads the last such line of the output.
const jsonMark = "PYHOST_BENCH_JSON "

type loadConfig struct {
	URL      string
	Conns    int
	Duration time.Duration
	Timeout  time.Duration // per request, from sending it to the body's end
	Method   string
	Body     []byte
	BufSize  int // bytes per read of a response body
}

// loadResult counts as wrk does: a request answered within the run is a
// request (with its latency) whatever its status, one of status >= 400
// is also a status error; a request still running when the run ends is
// neither, but the bytes it received count.
type loadResult struct {
	Requests   int64
	Elapsed    time.Duration
	Bytes      int64 // response body bytes received, whole responses or not
	ErrConnect int64
	ErrRead    int64
	ErrWrite   int64
	ErrTimeout int64
	ErrStatus  int64
	Latencies  []time.Duration
}

func runLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	rawURL := fs.String("url", "", "http://LOOPBACK-IP:PORT/path to load")
	conns := fs.Int("c", 16, "connections (1 to 1000), each one request at a time")
	dur := fs.Duration("d", 10*time.Second, "how long to load (1s to 1h)")
	timeout := fs.Duration("timeout", 5*time.Second, "a request slower than this is a timeout error")
	method := fs.String("method", "GET", "GET or POST")
	bodySize := fs.Int("body", 0, "request body of this many bytes (POST), 0 to 64 MiB")
	bufSize := fs.Int("buf", 256<<10, "bytes per read of a response body")
	procs := fs.Int("procs", 1, "GOMAXPROCS: 1 is one client thread, as wrk -t1")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*rawURL)
	switch {
	case err != nil:
		return fmt.Errorf("-url: %w", err)
	case u.Scheme != "http":
		return fmt.Errorf("-url %q: only http:// URLs", *rawURL)
	case *conns < 1 || *conns > 1000:
		return fmt.Errorf("-c %d: 1 to 1000", *conns)
	case *dur < time.Second || *dur > time.Hour:
		return fmt.Errorf("-d %s: 1s to 1h", *dur)
	case *timeout <= 0:
		return fmt.Errorf("-timeout %s: must be positive", *timeout)
	case *method != "GET" && *method != "POST":
		return fmt.Errorf("-method %q: GET or POST", *method)
	case *bodySize < 0 || *bodySize > 64<<20:
		return fmt.Errorf("-body %d: 0 to 64 MiB", *bodySize)
	case *bufSize < 4096 || *bufSize > 16<<20:
		return fmt.Errorf("-buf %d: 4 KiB to 16 MiB", *bufSize)
	case *procs < 1:
		return fmt.Errorf("-procs %d: at least 1", *procs)
	}
	if err := loopbackHostPort(u.Host); err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	runtime.GOMAXPROCS(*procs)
	res := load(loadConfig{
		URL: u.String(), Conns: *conns, Duration: *dur, Timeout: *timeout,
		Method: *method, Body: bytes.Repeat([]byte("a"), *bodySize), BufSize: *bufSize,
	})
	return printLoad(os.Stdout, *conns, res)
}

func printLoad(w io.Writer, conns int, res loadResult) error {
	lat := summarize(res.Latencies)
	secs := res.Elapsed.Seconds()
	fmt.Fprintf(w, "%d connections, %.2f s: %d requests (%.1f/s), %.1f MB/s of bodies, "+
		"latency p50 %.2f ms, p99 %.2f ms, max %.2f ms; errors: connect %d, read %d, write %d, timeout %d, status %d\n",
		conns, secs, res.Requests, float64(res.Requests)/secs, float64(res.Bytes)/secs/1e6,
		lat.P50ms, lat.P99ms, lat.MaxMs, res.ErrConnect, res.ErrRead, res.ErrWrite, res.ErrTimeout, res.ErrStatus)
	line, err := json.Marshal(map[string]int64{
		"requests":    res.Requests,
		"duration_us": res.Elapsed.Microseconds(),
		"bytes":       res.Bytes,
		"err_connect": res.ErrConnect,
		"err_read":    res.ErrRead,
		"err_write":   res.ErrWrite,
		"err_timeout": res.ErrTimeout,
		"err_status":  res.ErrStatus,
		"lat_p50_us":  int64(lat.P50ms * 1000),
		"lat_p90_us":  int64(lat.P90ms * 1000),
		"lat_p99_us":  int64(lat.P99ms * 1000),
		"lat_max_us":  int64(lat.MaxMs * 1000),
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s%s\n", jsonMark, line)
	return err
}

// load runs cfg.Conns clients, each sending its next request as soon as
// the previous one is answered, for cfg.Duration.
func load(cfg loadConfig) loadResult {
	tr := &http.Transport{
		MaxIdleConnsPerHost: cfg.Conns,
		MaxConnsPerHost:     cfg.Conns,
		DisableCompression:  true,
		ReadBufferSize:      64 << 10,
		WriteBufferSize:     64 << 10,
		DialContext:         (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration)
	defer cancel()

	workers := make([]loadResult, cfg.Conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range workers {
		wg.Add(1)
		go func(w *loadResult) {
			defer wg.Done()
			buf := make([]byte, cfg.BufSize)
			for ctx.Err() == nil {
				oneRequest(ctx, client, cfg, buf, w)
			}
		}(&workers[i])
	}
	wg.Wait()
	total := loadResult{Elapsed: time.Since(start)}
	for _, w := range workers {
		total.Requests += w.Requests
		total.Bytes += w.Bytes
		total.ErrConnect += w.ErrConnect
		total.ErrRead += w.ErrRead
		total.ErrWrite += w.ErrWrite
		total.ErrTimeout += w.ErrTimeout
		total.ErrStatus += w.ErrStatus
		total.Latencies = append(total.Latencies, w.Latencies...)
	}
	return total
}

func oneRequest(run context.Context, client *http.Client, cfg loadConfig, buf []byte, w *loadResult) {
	ctx, cancel := context.WithTimeout(run, cfg.Timeout)
	defer cancel()
	var body io.Reader
	if len(cfg.Body) > 0 {
		body = bytes.NewReader(cfg.Body)
	}
	req, err := http.NewRequestWithContext(ctx, cfg.Method, cfg.URL, body)
	if err != nil {
		panic(err) // the URL and method were checked
	}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err == nil {
		err = drain(resp.Body, buf, &w.Bytes)
		resp.Body.Close()
	}
	switch {
	case err == nil:
		w.Requests++
		w.Latencies = append(w.Latencies, time.Since(t0))
		if resp.StatusCode >= 400 {
			w.ErrStatus++
		}
	case run.Err() != nil:
		// Still running when the run ended: not counted, as wrk does.
	case ctx.Err() != nil:
		w.ErrTimeout++
	default:
		var op *net.OpError
		switch {
		case errors.As(err, &op) && op.Op == "dial":
			w.ErrConnect++
			// A server refusing connections must not turn the run into a
			// busy loop.
			select {
			case <-run.Done():
			case <-time.After(10 * time.Millisecond):
			}
		case errors.As(err, &op) && op.Op == "write":
			w.ErrWrite++
		default:
			w.ErrRead++
		}
	}
}

// drain reads r to its end with reads of len(buf), adding what it reads
// to *n as it goes (so a body cut by the end of the run still counts).
func drain(r io.Reader, buf []byte, n *int64) error {
	for {
		k, err := r.Read(buf)
		*n += int64(k)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
