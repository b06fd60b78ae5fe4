package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testBodyServer(t *testing.T, body []byte) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/err":
			http.Error(w, "no", http.StatusInternalServerError)
		case "/echo":
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, n)
		case "/hang":
			<-r.Context().Done()
		default:
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestLoadReadsWholeBodies(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 300<<10)
	srv := testBodyServer(t, body)
	res := load(loadConfig{URL: srv.URL + "/big", Conns: 2, Duration: 300 * time.Millisecond,
		Timeout: 5 * time.Second, Method: "GET", BufSize: 64 << 10})
	if res.Requests == 0 {
		t.Fatalf("no request answered: %+v", res)
	}
	if errs := res.ErrConnect + res.ErrRead + res.ErrWrite + res.ErrTimeout + res.ErrStatus; errs != 0 {
		t.Errorf("%d errors: %+v", errs, res)
	}
	// Whole bodies of the answered requests, and maybe parts of the two
	// still running at the end.
	if min, max := res.Requests*int64(len(body)), (res.Requests+2)*int64(len(body)); res.Bytes < min || res.Bytes > max {
		t.Errorf("%d bytes for %d requests of %d, want %d to %d", res.Bytes, res.Requests, len(body), min, max)
	}
	if int64(len(res.Latencies)) != res.Requests {
		t.Errorf("%d latencies for %d requests", len(res.Latencies), res.Requests)
	}
}

func TestLoadCountsStatusErrorsAsRequests(t *testing.T) {
	srv := testBodyServer(t, nil)
	res := load(loadConfig{URL: srv.URL + "/err", Conns: 1, Duration: 200 * time.Millisecond,
		Timeout: 5 * time.Second, Method: "GET", BufSize: 4096})
	if res.Requests == 0 || res.ErrStatus != res.Requests {
		t.Errorf("500s: %d requests, %d status errors; want as many, more than 0", res.Requests, res.ErrStatus)
	}
}

func TestLoadPostsBodies(t *testing.T) {
	srv := testBodyServer(t, nil)
	res := load(loadConfig{URL: srv.URL + "/echo", Conns: 2, Duration: 200 * time.Millisecond,
		Timeout: 5 * time.Second, Method: "POST", Body: bytes.Repeat([]byte("a"), 65536), BufSize: 4096})
	if res.Requests == 0 || res.ErrRead+res.ErrStatus != 0 {
		t.Errorf("POST: %+v", res)
	}
	// Every answer is "65536".
	if res.Bytes < res.Requests*5 || res.Bytes > (res.Requests+2)*5 {
		t.Errorf("%d bytes of answers for %d requests, want 5 each", res.Bytes, res.Requests)
	}
}

func TestLoadTimeoutsAndRefusals(t *testing.T) {
	srv := testBodyServer(t, nil)
	res := load(loadConfig{URL: srv.URL + "/hang", Conns: 1, Duration: 500 * time.Millisecond,
		Timeout: 50 * time.Millisecond, Method: "GET", BufSize: 4096})
	if res.Requests != 0 || res.ErrTimeout == 0 {
		t.Errorf("a server that never answers: %d requests, %d timeouts; want 0 and some", res.Requests, res.ErrTimeout)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	res = load(loadConfig{URL: "http://" + addr + "/", Conns: 1, Duration: 100 * time.Millisecond,
		Timeout: time.Second, Method: "GET", BufSize: 4096})
	if res.Requests != 0 || res.ErrConnect == 0 {
		t.Errorf("a closed port: %d requests, %d connect errors; want 0 and some", res.Requests, res.ErrConnect)
	}
}

// The line benchtool.py record parses: the fields of lib/report.lua's.
func TestPrintLoadLine(t *testing.T) {
	var b strings.Builder
	res := loadResult{Requests: 4, Elapsed: 2 * time.Second, Bytes: 4 << 20, ErrTimeout: 1,
		Latencies: []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 4 * time.Millisecond}}
	if err := printLoad(&b, 4, res); err != nil {
		t.Fatal(err)
	}
	var last string
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if strings.HasPrefix(l, jsonMark) {
			last = strings.TrimPrefix(l, jsonMark)
		}
	}
	var got map[string]int64
	if err := json.Unmarshal([]byte(last), &got); err != nil {
		t.Fatalf("no JSON line in %q: %v", b.String(), err)
	}
	want := map[string]int64{
		"requests": 4, "duration_us": 2000000, "bytes": 4 << 20, "err_connect": 0, "err_read": 0,
		"err_write": 0, "err_timeout": 1, "err_status": 0,
		"lat_p50_us": 2000, "lat_p90_us": 4000, "lat_p99_us": 4000, "lat_max_us": 4000,
	}
	if len(got) != len(want) {
		t.Errorf("fields %v, want those of %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}

func TestRunLoadRefusesWhatIsNotLoopback(t *testing.T) {
	for _, args := range [][]string{
		{"-url", "http://10.1.2.3:80/"},
		{"-url", "http://localhost:80/"},
		{"-url", "https://127.0.0.1:80/"},
		{"-url", "http://127.0.0.1:80/", "-c", "0"},
		{"-url", "http://127.0.0.1:80/", "-d", "2h"},
	} {
		if err := runLoad(args); err == nil {
			t.Errorf("runLoad(%q) accepted", args)
		}
	}
}
