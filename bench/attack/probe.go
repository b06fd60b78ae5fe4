package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

// probeSample is one request of the normal client.
type probeSample struct {
	AtS float64       // its start, in seconds since the attack run started
	Lat time.Duration // from sending it to the end of the answer
	Err string        // "" when it got its 200 in time; else what went wrong
}

// probePhase sums up the normal client's requests over part of a run.
type probePhase struct {
	Requests int            `json:"requests"`
	Failed   int            `json:"failed"`
	Errors   map[string]int `json:"errors,omitempty"`
	Latency  Latencies      `json:"latency"` // of the requests that did not fail
}

func phase(samples []probeSample) probePhase {
	p := probePhase{Errors: map[string]int{}}
	var lats []time.Duration
	for _, s := range samples {
		p.Requests++
		if s.Err != "" {
			p.Failed++
			p.Errors[s.Err]++
			continue
		}
		lats = append(lats, s.Lat)
	}
	p.Latency = summarize(lats)
	return p
}

// probe is the normal client: from 127.0.0.1, GET c.ProbePath one request
// at a time, starting one every c.ProbeInterval (or as soon as the last
// one ends, when it took longer), until ctx ends; a request cut by ctx's
// end is not counted. keepAlive: over one connection kept open (a new one
// when the server closes it), as a browser does; otherwise a new
// connection for every request, as a new visitor does, which is what
// meets a server out of descriptors or at its connection cap first.
func probe(ctx context.Context, c attackConfig, keepAlive bool, t0 time.Time) []probeSample {
	tr := &http.Transport{
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
		DialContext: (&net.Dialer{
			Timeout:   c.ProbeTimeout,
			LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)},
		}).DialContext,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := "http://" + c.Target + c.ProbePath
	var out []probeSample
	next := time.Now()
	for {
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return out
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return out
		}
		begin := time.Now()
		next = begin.Add(c.ProbeInterval)
		errKind := get(ctx, client, url, c.ProbeTimeout)
		if ctx.Err() != nil {
			return out
		}
		out = append(out, probeSample{AtS: begin.Sub(t0).Seconds(), Lat: time.Since(begin), Err: errKind})
	}
}

// get asks for url and reads the answer; it returns "" for a 200 within
// timeout, else a short name of the failure.
func get(ctx context.Context, client *http.Client, url string, timeout time.Duration) string {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
	if err != nil {
		return "bad request: " + err.Error()
	}
	resp, err := client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			return "status " + strconv.Itoa(resp.StatusCode)
		}
	}
	var op *net.OpError
	switch {
	case err == nil:
		return ""
	case rctx.Err() != nil:
		return "timeout"
	case errors.As(err, &op) && op.Op == "dial":
		return "connect " + dialErrorKind(err)
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed"
	}
	return "other"
}
