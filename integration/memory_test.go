package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// R6: a 1 GiB download and a 1 GiB upload pass through in bounded memory.
const bigApp = `
import hashlib

CHUNK = b"z" * (1 << 20)

def application(environ, start_response):
    if environ["PATH_INFO"] == "/download":
        n = int(environ["QUERY_STRING"])
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(n << 20))])
        return (CHUNK for _ in range(n))
    h = hashlib.sha256()
    total = 0
    inp = environ["wsgi.input"]
    while True:
        b = inp.read(1 << 20)
        if not b:
            break
        h.update(b)
        total += len(b)
    body = ("%d %s" % (total, h.hexdigest())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`

// treeRSS sums the resident memory of pid and all its descendants.
func treeRSS(pid int) int64 {
	var total int64
	for _, p := range append(descendants(pid), pid) {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "statm"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			total += pages * int64(os.Getpagesize())
		}
	}
	return total
}

// peakRSS samples treeRSS until stop is closed and returns the largest.
func peakRSS(pid int, stop <-chan struct{}) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		var peak int64
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if r := treeRSS(pid); r > peak {
				peak = r
			}
			select {
			case <-stop:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// zeroReader yields n bytes of 'z' without holding them.
type zeroReader struct{ left int64 }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.left {
		p = p[:z.left]
	}
	for i := range p {
		p[i] = 'z'
	}
	z.left -= int64(len(p))
	return len(p), nil
}

func TestGigabyteEachWayInBoundedMemory(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("moves 2 GiB; skipped with -short")
	}
	const mib = 1024
	const limit = 200 << 20
	dir := writeApp(t, map[string]string{"wsgi.py": validated(bigApp)})
	s := startServe(t, dir, "wsgi.py")
	pid := s.cmd.Process.Pid

	stop := make(chan struct{})
	peak := peakRSS(pid, stop)
	var once sync.Once
	finish := func() int64 { once.Do(func() { close(stop) }); return <-peak }

	// Download: read and discard, hashing nothing; the count must match.
	resp, err := http.Get(s.URL + "/download?" + strconv.Itoa(mib))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != mib<<20 {
		t.Fatalf("download: %d bytes, %v", n, err)
	}

	// Upload, chunked (no length), hashed by the app.
	h := sha256.New()
	io.Copy(h, &zeroReader{left: mib << 20})
	want := strconv.Itoa(mib<<20) + " " + hex.EncodeToString(h.Sum(nil))
	req, _ := http.NewRequest("POST", s.URL+"/upload", io.NopCloser(&zeroReader{left: mib << 20}))
	req.ContentLength = -1
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(bytes.TrimSpace(got)) != want {
		t.Fatalf("upload: %q, want %q", got, want)
	}
	p := finish()
	t.Logf("peak RSS of pyhostd and its children while moving 1 GiB each way: %.1f MiB", float64(p)/(1<<20))
	if p > limit {
		t.Fatalf("peak RSS %.1f MiB over the %d MiB bound", float64(p)/(1<<20), limit>>20)
	}
}
