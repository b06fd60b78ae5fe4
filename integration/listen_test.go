package integration

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// slowNameApp answers with NAME, and on /slow first says it started
// (a "started" file beside it) and waits until the test creates
// "release" there: a request the test can hold in flight.
func slowNameApp(name string) string {
	return fmt.Sprintf(`import os, time
HERE = os.path.dirname(os.path.abspath(__file__))
def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        open(os.path.join(HERE, "started"), "w").close()
        deadline = time.time() + 30
        while not os.path.exists(os.path.join(HERE, "release")) and time.time() < deadline:
            time.sleep(0.01)
    body = %q.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`, name)
}

// writeListen replaces pyhost.toml with the harness's config listening
// on addrs instead of d.addr.
func (d *sysd) writeListen(users string, addrs ...string) {
	d.t.Helper()
	quoted := make([]string, len(addrs))
	for i, a := range addrs {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	conf := strings.Replace(d.adminConfig(users), fmt.Sprintf("listen = [%q]", d.addr), "listen = ["+strings.Join(quoted, ", ")+"]", 1)
	if err := os.WriteFile(d.admin, []byte(conf), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// getAt asks addr for path on host over a connection of its own.
func getAt(addr, host, path string, client *http.Client) (int, string, error) {
	if client == nil {
		client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	}
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func connRefused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// proxyPID is the daemon's proxy child, or 0.
func (d *sysd) proxyPID() int {
	for _, p := range descendants(d.cmd.Process.Pid) {
		if strings.Contains(cmdlineOf(p), "__proxy") && ppid(p) == d.cmd.Process.Pid {
			return p
		}
	}
	return 0
}

// TestListenReload: a change of [proxy] listen applies on reload-config:
// new addresses answer, removed ones refuse once their requests finished,
// unchanged ones keep their connections; an address that cannot be bound
// fails the reload and changes nothing; a restarted proxy serves the
// current set.
func TestListenReload(t *testing.T) {
	t.Parallel()
	const ann = "pyh-ls-ann"
	users := fmt.Sprintf("[users.%s]\ndomains = [\"ls.test\"]\n", ann)
	u := makeUser(t, ann)
	d := newSysd(t, users)
	deployNamed(t, u, "site", "ann", `"ls.test"`, "")
	dir := filepath.Join(u.home, "site")
	writeOwned(t, u, filepath.Join(dir, "wsgi.py"), slowNameApp("ann"), 0o644)
	os.Remove(filepath.Join(dir, "started"))
	os.Remove(filepath.Join(dir, "release"))
	d.start()

	a, b := d.addr, freePort(t)
	answers := func(addr string) {
		t.Helper()
		if code, body, err := getAt(addr, "ls.test", "/", nil); err != nil || code != 200 || body != "ann" {
			t.Errorf("GET %s: %d %q %v", addr, code, body, err)
		}
	}
	refuses := func(addr, when string) {
		t.Helper()
		if !connRefused(addr) {
			t.Errorf("%s still accepts connections %s", addr, when)
		}
	}
	reload := func() (string, error) {
		t.Helper()
		return d.pyctl("", "reload-config")
	}
	answers(a)
	refuses(b, "before it is configured")

	// [A] -> [B], with a request in flight on A.
	type result struct {
		code int
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		code, body, err := getAt(a, "ls.test", "/slow", nil)
		slow <- result{code, body, err}
	}()
	eventually(t, 10*time.Second, "the slow request reached the app", func() bool {
		_, err := os.Stat(filepath.Join(dir, "started"))
		return err == nil
	})
	d.writeListen(users, b)
	if out, err := reload(); err != nil {
		t.Fatalf("reload-config [A] -> [B]: %v\n%s", err, out)
	}
	answers(b)
	refuses(a, "after it was removed")
	writeOwned(t, u, filepath.Join(dir, "release"), "", 0o644)
	select {
	case r := <-slow:
		if r.err != nil || r.code != 200 || r.body != "ann" {
			t.Errorf("the request in flight on the removed listener: %d %q %v", r.code, r.body, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the request in flight on the removed listener never finished")
	}

	// [B] -> [A, B]: A comes back, and B's open keep-alive connection
	// (the same socket) goes on.
	keep := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 10 * time.Second}
	defer keep.CloseIdleConnections()
	// onB asks B over keep's one connection and says which it was.
	onB := func() (local string, reused bool) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+b+"/", nil)
		req.Host = "ls.test"
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(ci httptrace.GotConnInfo) { local, reused = ci.Conn.LocalAddr().String(), ci.Reused },
		}))
		resp, err := keep.Do(req)
		if err != nil {
			t.Fatalf("keep-alive GET %s: %v", b, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return local, reused
	}
	first, _ := onB()
	d.writeListen(users, a, b)
	if out, err := reload(); err != nil {
		t.Fatalf("reload-config [B] -> [A, B]: %v\n%s", err, out)
	}
	answers(a)
	answers(b)
	if again, reused := onB(); !reused || again != first {
		t.Errorf("B's keep-alive connection was dropped by a reload that left B alone (%s, then %s)", first, again)
	}

	// [A, B] -> [A] -> [A, B]: B, sent along unchanged just now, closes
	// as promptly as one that was new, and comes back.
	keep.CloseIdleConnections()
	d.writeListen(users, a)
	if out, err := reload(); err != nil {
		t.Fatalf("reload-config [A, B] -> [A]: %v\n%s", err, out)
	}
	answers(a)
	refuses(b, "after it was removed")
	d.writeListen(users, a, b)
	if out, err := reload(); err != nil {
		t.Fatalf("reload-config [A] -> [A, B]: %v\n%s", err, out)
	}
	answers(a)
	answers(b)

	// A bind failure: nothing changes.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	c := freePort(t)
	d.writeListen(users, a, c, busy.Addr().String())
	out, err := reload()
	if err == nil {
		t.Errorf("reload-config with an address in use succeeded:\n%s", out)
	}
	if !strings.Contains(out, "address already in use") {
		t.Errorf("reload-config does not say why it failed:\n%s", out)
	}
	answers(a)
	answers(b)
	refuses(c, "after a reload that failed")

	// kill -9 the proxy: the new one serves the current set [A, B]
	// (not the start's [A]), and takes later changes.
	d.writeListen(users, a, b)
	old := d.proxyPID()
	if old == 0 {
		t.Fatal("no proxy child found")
	}
	syscall.Kill(old, syscall.SIGKILL)
	eventually(t, 10*time.Second, "a new proxy", func() bool {
		p := d.proxyPID()
		return p != 0 && p != old
	})
	eventually(t, 10*time.Second, "the new proxy answers on A and B", func() bool {
		ca, _, ea := getAt(a, "ls.test", "/", nil)
		cb, _, eb := getAt(b, "ls.test", "/", nil)
		return ea == nil && eb == nil && ca == 200 && cb == 200
	})
	d.writeListen(users, c)
	if out, err := reload(); err != nil {
		t.Fatalf("reload-config [A, B] -> [C] after a proxy restart: %v\n%s", err, out)
	}
	answers(c)
	refuses(a, "after it was removed from a restarted proxy")
	refuses(b, "after it was removed from a restarted proxy")
}
