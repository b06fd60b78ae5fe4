package proxymsg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"reflect"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ca, cb := NewConn(a), NewConn(b)
	msgs := []Message{
		{Setup: &Setup{Listeners: []string{"127.0.0.1:80"}, ShutdownTimeout: 15 * time.Second}},
		{Table: &Table{Serial: 7, Apps: []App{{Key: "alice/blog", Domains: []string{"blog.example.com"}, Prefix: "/", State: AppRunning,
			QueueTimeout: time.Second, Workers: []Worker{{ID: "blog-1", PID: 42, Socket: "/run/w1.sock", Threads: 4}}}}}},
		{Event: &Event{Kind: EventDrained, App: "alice/blog", WorkerID: "blog-1"}},
		{Event: &Event{Kind: EventStats, Stats: map[string]WorkerStats{"blog-1": {Served: 10, Busy: 2}}}},
	}
	go func() {
		for _, m := range msgs {
			if err := ca.Send(m); err != nil {
				t.Error(err)
			}
		}
		a.Close()
	}()
	for i, want := range msgs {
		got, err := cb.Receive()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("message %d: got %+v, want %+v", i, got, want)
		}
	}
	if _, err := cb.Receive(); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: %v, want io.EOF", err)
	}
}

func TestReceiveRejectsBadInput(t *testing.T) {
	huge := binary.BigEndian.AppendUint32(nil, maxMessage+1)
	cases := map[string][]byte{
		"too large": huge,
		"truncated": append(binary.BigEndian.AppendUint32(nil, 10), "abc"...),
		"not json":  append(binary.BigEndian.AppendUint32(nil, 3), "}{x"...),
	}
	for name, in := range cases {
		c := NewConn(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(in), io.Discard})
		if _, err := c.Receive(); err == nil || errors.Is(err, io.EOF) {
			t.Errorf("%s: %v, want a non-EOF error", name, err)
		}
	}
}
