package integration

import (
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// checkAccessLog waits for a line matching want in the access log at
// path (the proxy flushes every 200 ms) and checks the file belongs to
// owner (the proxy's user) with mode 0640.
func checkAccessLog(t *testing.T, path, owner string, want *regexp.Regexp) string {
	t.Helper()
	var text string
	eventually(t, 5*time.Second, "a matching line in "+path, func() bool {
		b, _ := os.ReadFile(path)
		text = string(b)
		return want.MatchString(text)
	})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("access log mode %v, want 0640", fi.Mode().Perm())
	}
	if owner != "" {
		u, err := user.Lookup(owner)
		if err != nil {
			t.Fatal(err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; strconv.Itoa(int(uid)) != u.Uid {
			t.Errorf("access log owned by uid %d, want %s (%s)", uid, u.Uid, owner)
		}
	}
	return text
}

func TestAccessLogLinesAndRotation(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": validated(basicApp)})
	logPath := filepath.Join(dir, "access.log") // a directory the app's (and proxy's) user can enter
	s := startServe(t, dir, "--access-log", logPath, "wsgi.py")

	req, _ := http.NewRequest("GET", s.URL+"/pid?q=a%20b", nil)
	req.Header.Set("User-Agent", `tester "quoted"`)
	req.Header.Set("Referer", "http://example.test/")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rid := resp.Header.Get("X-Request-Id")
	owner := ""
	if os.Geteuid() == 0 {
		owner = testUser // the proxy runs as the --user
	}
	line := regexp.MustCompile(`^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /pid\?q=a%20b HTTP/1\.1" 200 \d+ "http://example\.test/" "tester \\"quoted\\"" \d+\.\d{6} \S+/wsgi ` + regexp.QuoteMeta(rid) + `\n`)
	checkAccessLog(t, logPath, owner, line)

	// logrotate: move the file, SIGUSR1 to the daemon; new lines go to a
	// new file, nothing is lost.
	rotated := logPath + ".1"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a new access log after SIGUSR1", func() bool {
		_, err := os.Stat(logPath)
		return err == nil
	})
	// The proxy reopens when it reads the master's message; requests
	// until then still land in the old file. Both files together hold
	// every request, each once.
	for i := 0; i < 20; i++ {
		if c, _ := get(t, s.URL+"/pid?n="+strconv.Itoa(i)); c != 200 {
			t.Fatalf("request %d: %d", i, c)
		}
	}
	eventually(t, 5*time.Second, "the last request in the new file", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "/pid?n=19 ")
	})
	oldText, _ := os.ReadFile(rotated)
	newText, _ := os.ReadFile(logPath)
	all := string(oldText) + string(newText)
	for i := 0; i < 20; i++ {
		if n := strings.Count(all, "/pid?n="+strconv.Itoa(i)+" "); n != 1 {
			t.Errorf("request %d logged %d times across both files", i, n)
		}
	}
	if !strings.Contains(string(oldText), rid) {
		t.Errorf("the first request left the rotated file")
	}
}
