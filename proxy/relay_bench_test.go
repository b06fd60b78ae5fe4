package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/pyhost/pyhost/proxymsg"
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
			p.Update(proxymsg.Table{Serial: 1, Apps: []proxymsg.App{{
				Key: "u/app", Prefix: "/", State: proxymsg.AppRunning,
				Workers: []proxymsg.Worker{{ID: "w1", PID: 1, Socket: rw.sock, Threads: 1}},
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

// BenchmarkUnixToTCP is the relay's data path alone, the choices of
// issue 10 side by side: 1 MiB messages written to a UNIX socket (as a
// worker sends a bytes body, or sendfile's a file), copied to a loopback
// TCP connection through a buffer of each size, or spliced through a
// pipe (splice(2), as Go's TCPConn.ReadFrom does from a UnixConn), and
// read by a client. cpu-us/op is the whole process's CPU per MiB
// (writer, relay and reader): only the relay differs between variants.
// On the 2-CPU machine of docs/benchmarks.md (medians of 6 runs): the
// three buffer sizes within a few % of each other, splice 25-30% less
// throughput at 15-30% more CPU, from memory and from a file alike.
func BenchmarkUnixToTCP(b *testing.B) {
	file := filepath.Join(b.TempDir(), "body")
	if err := os.WriteFile(file, bytes.Repeat([]byte("x"), 16<<20), 0o600); err != nil {
		b.Fatal(err)
	}
	for _, from := range []string{"memory", "file"} {
		for _, size := range []int{128 << 10, 256 << 10, 512 << 10} {
			b.Run(fmt.Sprintf("%s/copy%dKiB", from, size>>10), func(b *testing.B) {
				buf := make([]byte, size)
				unixToTCP(b, from, file, func(src *net.UnixConn, dst *net.TCPConn, n int64) {
					io.CopyBuffer(struct{ io.Writer }{dst}, io.LimitReader(struct{ io.Reader }{src}, n), buf)
				})
			})
		}
		b.Run(from+"/splice", func(b *testing.B) {
			unixToTCP(b, from, file, func(src *net.UnixConn, dst *net.TCPConn, n int64) {
				dst.ReadFrom(io.LimitReader(src, n))
			})
		})
	}
}

func unixToTCP(b *testing.B, from, file string, relay func(src *net.UnixConn, dst *net.TCPConn, n int64)) {
	const msg = 1 << 20
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	conns := make([]*net.UnixConn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
		b.Cleanup(func() { c.Close() })
	}
	src, worker := conns[0], conns[1]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	sc, err := ln.Accept()
	ln.Close()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sc.Close() })
	dst := sc.(*net.TCPConn)
	n := b.N
	go func() { // the worker
		if from == "memory" {
			data := bytes.Repeat([]byte("x"), msg)
			for i := 0; i < n; i++ {
				if _, err := worker.Write(data); err != nil {
					return
				}
			}
			return
		}
		f, err := os.Open(file)
		if err != nil {
			return
		}
		defer f.Close()
		rc, err := worker.SyscallConn()
		if err != nil {
			return
		}
		for i := 0; i < n; i++ {
			off, left := int64(i%16)<<20, msg
			for left > 0 { // sendfile, as the worker's file_wrapper
				var serr error
				if err := rc.Write(func(fd uintptr) bool {
					var k int
					k, serr = unix.Sendfile(int(fd), int(f.Fd()), &off, left)
					left -= max(k, 0)
					return serr != unix.EAGAIN
				}); err != nil || serr != nil {
					return
				}
			}
		}
	}()
	done := make(chan struct{})
	go func() { // the client
		defer close(done)
		io.CopyBuffer(io.Discard, io.LimitReader(client, int64(n)*msg), make([]byte, 256<<10))
	}()
	var r0, r1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	b.SetBytes(msg)
	b.ResetTimer()
	for i := 0; i < n; i++ {
		relay(src, dst, msg)
	}
	<-done
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	cpu := r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano()
	b.ReportMetric(float64(cpu)/float64(n)/1e3, "cpu-us/op")
}

// BenchmarkBodyHop is the gate of the descriptor hand-off (issue 10's
// "go further"): the CPU the whole process spends per response body of
// each size (writer, relay and a loopback TCP reader that consumes it),
// for
//   - hop: today's path, the body written into a UNIX socket and copied
//     to the client's TCP socket through the relay's 128 KiB buffer;
//   - memfd: the body written once into a fresh memfd, sealed, the
//     descriptor passed by SCM_RIGHTS with a small frame, and the relay
//     sendfile(2)s it to the TCP socket (memfd-read: reads it through
//     the buffer instead, as over TLS);
//   - direct: the body written to the TCP socket itself (gunicorn's path,
//     one hop less);
//   - memfd-whole: memfd, sent with one sendfile call instead of one per
//     128 KiB (send_timeout's piece);
//   - file-hop and file: a page-cached file (wsgi.file_wrapper), sent by
//     the worker with sendfile into the UNIX socket and copied by the
//     relay (today), or opened by the worker and its descriptor passed
//     for the relay to sendfile.
//
// cpu-us/op is per body, whatever its size; cpu-us/MiB per MiB of it.
// On the 2-CPU machine of docs/benchmarks.md ("The descriptor hand-off,
// measured"), 1 MiB: memfd 1.7-2.3 times hop's CPU, file 1.2 times
// file-hop's, direct 0.65-0.7 times hop's: handing pages over costs
// more than copying them here, and the hand-off was not built.
func BenchmarkBodyHop(b *testing.B) {
	for _, size := range []int{64 << 10, 256 << 10, 1 << 20} {
		for _, path := range []string{"hop", "memfd", "memfd-whole", "memfd-read", "file-hop", "file", "direct"} {
			b.Run(fmt.Sprintf("%dKiB/%s", size>>10, path), func(b *testing.B) { bodyHop(b, path, size) })
		}
	}
}

func bodyHop(b *testing.B, path string, size int) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	conns := make([]*net.UnixConn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
		b.Cleanup(func() { c.Close() })
	}
	src, worker := conns[0], conns[1]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	sc, err := ln.Accept()
	ln.Close()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sc.Close() })
	dst := sc.(*net.TCPConn)
	data := bytes.Repeat([]byte("x"), size)
	file := filepath.Join(b.TempDir(), "body")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		b.Fatal(err)
	}
	n := b.N
	// credits bound the bodies in flight, as a worker answers one
	// request at a time: without them the writer would make memfds
	// faster than the relay sends them.
	credits := make(chan struct{}, 2)
	for range cap(credits) {
		credits <- struct{}{}
	}
	wfd := int(fileFD(b, worker))
	switch path {
	case "hop":
		go func() {
			for i := 0; i < n; i++ {
				if _, err := worker.Write(data); err != nil {
					return
				}
			}
		}()
	case "file-hop":
		go func() {
			f, err := os.Open(file)
			if err != nil {
				return
			}
			defer f.Close()
			rc, err := worker.SyscallConn()
			if err != nil {
				return
			}
			for i := 0; i < n; i++ {
				off, left := int64(0), size
				for left > 0 { // sendfile, as the worker's file_wrapper
					var serr error
					if err := rc.Write(func(fd uintptr) bool {
						var k int
						k, serr = unix.Sendfile(int(fd), int(f.Fd()), &off, left)
						left -= max(k, 0)
						return serr != unix.EAGAIN
					}); err != nil || serr != nil {
						return
					}
				}
			}
		}()
	case "file":
		go func() {
			defer worker.Close()
			hdr := make([]byte, 21)
			for i := 0; i < n; i++ {
				<-credits
				fd, err := unix.Open(file, unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					b.Error(err)
					return
				}
				if err := unix.Sendmsg(wfd, hdr, unix.UnixRights(fd), nil, 0); err != nil {
					b.Error(err)
					return
				}
				unix.Close(fd)
			}
		}()
	case "memfd", "memfd-whole", "memfd-read":
		go func() {
			defer worker.Close() // a failure here ends the relay's wait too
			hdr := make([]byte, 21)
			for i := 0; i < n; i++ {
				<-credits
				mfd, err := unix.MemfdCreate("body", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
				if err != nil {
					b.Error(err)
					return
				}
				for off := 0; off < size; {
					k, err := unix.Write(mfd, data[off:])
					if err != nil {
						b.Error(err)
						return
					}
					off += k
				}
				if _, err := unix.FcntlInt(uintptr(mfd), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW); err != nil {
					b.Error(err)
					return
				}
				if err := unix.Sendmsg(wfd, hdr, unix.UnixRights(mfd), nil, 0); err != nil {
					b.Error(err)
					return
				}
				unix.Close(mfd)
			}
		}()
	}
	done := make(chan struct{})
	go func() { // the client
		defer close(done)
		io.CopyBuffer(io.Discard, io.LimitReader(client, int64(n)*int64(size)), make([]byte, 256<<10))
	}()
	buf := make([]byte, relayBufSize)
	hdr := make([]byte, 21)
	oob := make([]byte, unix.CmsgSpace(4*4))
	var r0, r1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < n; i++ {
		switch path {
		case "hop", "file-hop":
			io.CopyBuffer(struct{ io.Writer }{dst}, io.LimitReader(struct{ io.Reader }{src}, int64(size)), buf)
		case "direct":
			if _, err := dst.Write(data); err != nil {
				b.Fatal(err)
			}
		default:
			_, oobn, _, _, err := src.ReadMsgUnix(hdr, oob)
			if err != nil {
				b.Fatal(err)
			}
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil || len(msgs) != 1 {
				b.Fatal("no control message", err)
			}
			rights, err := unix.ParseUnixRights(&msgs[0])
			if err != nil || len(rights) != 1 {
				b.Fatal("no descriptor", err)
			}
			var st unix.Stat_t
			if err := unix.Fstat(rights[0], &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != int64(size) {
				b.Fatal("not the body", err)
			}
			f := os.NewFile(uintptr(rights[0]), "body")
			if path != "memfd-read" {
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					b.Fatal(err)
				}
				piece := int64(relayBufSize)
				if path == "memfd-whole" {
					piece = int64(size)
				}
				for left := int64(size); left > 0; {
					k, err := dst.ReadFrom(io.LimitReader(f, min(left, piece)))
					if err != nil || k == 0 {
						b.Fatal("sendfile", k, err)
					}
					left -= k
				}
			} else {
				for off := int64(0); off < int64(size); {
					k, err := f.ReadAt(buf[:min(int64(size)-off, relayBufSize)], off)
					if k > 0 {
						if _, err := dst.Write(buf[:k]); err != nil {
							b.Fatal(err)
						}
					}
					if err != nil && k == 0 {
						b.Fatal(err)
					}
					off += int64(k)
				}
			}
			f.Close()
			credits <- struct{}{}
		}
	}
	<-done
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	cpu := r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano()
	b.ReportMetric(float64(cpu)/float64(n)/1e3, "cpu-us/op")
	b.ReportMetric(float64(cpu)/float64(n)/1e3*float64(1<<20)/float64(size), "cpu-us/MiB")
}

// fileFD is the descriptor of a UNIX connection, for raw system calls
// (the connection stays open and in charge of it).
func fileFD(b *testing.B, c *net.UnixConn) uintptr {
	rc, err := c.SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	var fd uintptr
	rc.Control(func(f uintptr) { fd = f })
	return fd
}
