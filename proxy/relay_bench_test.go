package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/channel"
	"github.com/pyhost/pyhost/wsgiadapter"
)

// discardWriter is a ResponseWriter that keeps nothing: the benchmark
// measures the proxy, not a client.
type discardWriter struct {
	h      http.Header
	status int
	n      int64
}

func (d *discardWriter) Header() http.Header { return d.h }
func (d *discardWriter) WriteHeader(code int) {
	if d.status == 0 {
		d.status = code
	}
}
func (d *discardWriter) Write(p []byte) (int, error) { d.n += int64(len(p)); return len(p), nil }
func (d *discardWriter) Flush()                      {}

// BenchmarkRelay relays responses of several sizes from a fake worker
// (BODY frames of 1 MiB, as the real worker sends) through ServeHTTP.
// Run with -benchmem: allocs/op and B/op must not grow with the body
// (issue 10).
func BenchmarkRelay(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20, 16 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			frame := make([]byte, min(size, wsgiadapter.MaxBodyFrame))
			resp := wsgiadapter.AppendFrame(nil, wsgiadapter.FrameHeaders,
				wsgiadapter.AppendHead(nil, "200 OK", hdrs("Content-Type", "application/octet-stream", "Content-Length", fmt.Sprint(size))))
			for sent := 0; sent < size; sent += len(frame) {
				resp = wsgiadapter.AppendFrame(resp, wsgiadapter.FrameBody, frame)
			}
			resp = wsgiadapter.AppendFrame(resp, wsgiadapter.FrameEnd, []byte{0})
			rw := newRelayWorker(b, func(path string, w io.Writer) { w.Write(resp) })
			p := New(hclog.NewNullLogger(), nil)
			p.Update(channel.Table{Serial: 1, Apps: []channel.App{{
				Key: "u/app", Prefix: "/", State: channel.AppRunning,
				Workers: []channel.Worker{{ID: "w1", PID: 1, Socket: rw.sock, Threads: 1}},
			}}})
			b.Cleanup(p.CloseIdle)
			req := httptest.NewRequest("GET", "/", nil)
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				clear(w.h)
				w.status, w.n = 0, 0
				p.ServeHTTP(w, req)
				if w.status != 200 || w.n != int64(size) {
					b.Fatalf("status %d, %d bytes", w.status, w.n)
				}
			}
		})
	}
}
