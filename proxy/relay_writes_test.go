package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/proxymsg"
	"github.com/pyhost/pyhost/wsgiadapter"
)

// writeRecorder is a client that takes every write at once and keeps the
// size of each.
type writeRecorder struct {
	h      http.Header
	status int
	writes []int
	body   bytes.Buffer
}

func (w *writeRecorder) Header() http.Header { return w.h }
func (w *writeRecorder) WriteHeader(s int)   { w.status = s }
func (w *writeRecorder) Flush()              {}
func (w *writeRecorder) Write(p []byte) (int, error) {
	w.writes = append(w.writes, len(p))
	return w.body.Write(p)
}

// Session 7: a large body goes to a client that keeps up in few large
// writes, since each write costs the proxy and the client about as much
// as its bytes do: one 1 MiB BODY frame is two writes, the first no
// larger than relayBufSize (send_timeout's promise to a client not yet
// seen), the second the rest. Before, it was eight writes of 128 KiB.
func TestRelayLargeBodyInTwoWrites(t *testing.T) {
	frame := patternFrame()
	rw := newRelayWorker(t, func(path string, w io.Writer) {
		w.Write(wsgiadapter.AppendFrame(nil, wsgiadapter.FrameHeaders,
			wsgiadapter.AppendHead(nil, "200 OK", hdrs("Content-Length", fmt.Sprint(len(frame))))))
		w.Write(wsgiadapter.AppendFrameHeader(nil, wsgiadapter.FrameBody, len(frame)))
		w.Write(frame)
		w.Write(wsgiadapter.AppendFrame(nil, wsgiadapter.FrameEnd, []byte{0}))
	})
	p := New(hclog.NewNullLogger(), nil)
	p.SetLimits(Limits{})
	p.Update(proxymsg.Table{Serial: 1, Apps: []proxymsg.App{{
		Key: "u/app", Prefix: "/", State: proxymsg.AppRunning, QueueTimeout: relayDeadline,
		Workers: []proxymsg.Worker{{ID: "w1", PID: 1, Socket: rw.sock, Threads: 1}},
	}}})
	t.Cleanup(p.CloseIdle)
	w := &writeRecorder{h: http.Header{}}
	p.ServeHTTP(w, httptest.NewRequest("GET", "/big", nil))
	if w.status != 200 || !bytes.Equal(w.body.Bytes(), frame) {
		t.Fatalf("status %d, %d bytes; want 200 and the app's 1 MiB", w.status, w.body.Len())
	}
	if len(w.writes) != 2 || w.writes[0] > relayBufSize {
		t.Errorf("writes of %v bytes; want two, the first at most %d", w.writes, relayBufSize)
	}
}

// writeMax holds a write to what the client's last write shows it takes
// in an eighth of send_timeout, between relayBufSize and bigBufSize.
func TestWriteMax(t *testing.T) {
	p := New(hclog.NewNullLogger(), nil)
	p.SetLimits(Limits{SendTimeout: time.Minute})
	for _, c := range []struct {
		rate float64 // bytes a second
		want int
	}{
		{0, relayBufSize},    // nothing written yet
		{10e3, relayBufSize}, // 10 KB/s: 75 KB in 7.5 s
		{100e3, 750e3},       // 100 KB/s: 750 KB in 7.5 s
		{1e9, bigBufSize},    // a client on the same machine
		{clientRate(128<<10, time.Millisecond), bigBufSize},
		{clientRate(128<<10, 10*time.Second), relayBufSize},
	} {
		x := &relayed{p: p, rate: c.rate}
		if got := x.writeMax(); got != c.want {
			t.Errorf("rate %.0f B/s: writeMax %d, want %d", c.rate, got, c.want)
		}
	}
	p.SetLimits(Limits{SendTimeout: time.Second})
	if got := (&relayed{p: p, rate: 1e6}).writeMax(); got != relayBufSize {
		t.Errorf("1 MB/s with send_timeout 1s: writeMax %d, want %d", got, relayBufSize)
	}
}

// Once bigBufTidy or more big buffers that were out at once are all
// back, the proxy asks for its free memory to go back to the system (a
// burst of 1 MiB responses would otherwise leave that many MiB in the
// pool); fewer do not. No more than bigBufMax are out at once.
func TestBigBuffersAskForTidy(t *testing.T) {
	if buf, put := relayBuf(false); len(buf) != relayBufSize {
		t.Errorf("a small buffer of %d bytes", len(buf))
	} else {
		put()
	}
	take := func(n int) []func() {
		var puts []func()
		for range n {
			buf, put := relayBuf(true)
			if len(buf) != bigBufSize {
				t.Fatalf("a big buffer of %d bytes", len(buf))
			}
			puts = append(puts, put)
		}
		return puts
	}
	if bigOut.Load() != 0 {
		t.Fatalf("other tests hold %d big buffers", bigOut.Load())
	}
	asked := spoolTidies.Load()
	tidyAsked := func() bool {
		n := spoolTidies.Load()
		defer func() { asked = n }()
		return n != asked
	}
	for _, put := range take(bigBufTidy - 1) {
		put()
	}
	if tidyAsked() {
		t.Error("fewer than bigBufTidy big buffers asked for a tidy")
	}
	puts := take(bigBufTidy)
	for _, put := range puts[1:] {
		put()
		if tidyAsked() {
			t.Fatal("a tidy asked for while a big buffer is still out")
		}
	}
	puts[0]()
	if !tidyAsked() {
		t.Error("no tidy asked for once bigBufTidy big buffers were back")
	}
	// No more than bigBufMax are out at once: past it, small ones.
	puts = take(bigBufMax)
	if buf, put := relayBuf(true); len(buf) != relayBufSize {
		t.Errorf("buffer %d past bigBufMax: %d bytes, want a small one", bigBufMax+1, len(buf))
	} else {
		put()
	}
	for _, put := range puts {
		put()
	}
	if bigOut.Load() != 0 {
		t.Errorf("%d big buffers still out", bigOut.Load())
	}
}
