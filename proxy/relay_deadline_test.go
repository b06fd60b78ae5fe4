package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// deadlineRecorder is a ResponseWriter whose write deadlines are seen.
type deadlineRecorder struct {
	*httptest.ResponseRecorder
	set []time.Time
}

func (d *deadlineRecorder) SetWriteDeadline(t time.Time) error {
	d.set = append(d.set, t)
	return nil
}

// Over HTTP/1 every write gets send_timeout of its own (a deadline on
// the connection, cheap to move). Over HTTP/2 a deadline is a message to
// the connection's serve goroutine: it is set 1.5 send_timeouts ahead
// and moved only when less than one is left, so writes in quick
// succession set it once, and each write still has send_timeout.
func TestRelayWriteDeadlines(t *testing.T) {
	const sendTimeout = time.Minute
	for _, proto := range []int{1, 2} {
		rec := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.ProtoMajor = proto
		x := &relayed{p: &Proxy{limits: Limits{SendTimeout: sendTimeout}}, w: rec, r: r}
		x.rc = http.NewResponseController(rec)
		x.deadline = sendTimeout
		x.h2 = proto == 2
		start := time.Now()
		for range 3 {
			if err := x.write([]byte("abc"), false); err != nil {
				t.Fatal(err)
			}
		}
		want := 3
		if proto == 2 {
			want = 1
		}
		if len(rec.set) != want {
			t.Fatalf("HTTP/%d: %d deadlines set for 3 writes, want %d", proto, len(rec.set), want)
		}
		for _, d := range rec.set {
			if d.Sub(start) < sendTimeout || time.Until(d) > sendTimeout*3/2 {
				t.Errorf("HTTP/%d: deadline %v after the start, want send_timeout to 1.5 times it", proto, d.Sub(start))
			}
		}
		// Less than send_timeout left: the next write moves it.
		if proto == 2 {
			x.until = time.Now().Add(sendTimeout - time.Second)
			x.write([]byte("d"), false)
			if len(rec.set) != 2 || time.Until(rec.set[1]) < sendTimeout {
				t.Errorf("HTTP/2: a deadline less than send_timeout away was not moved: %v", rec.set)
			}
		}
	}
}
