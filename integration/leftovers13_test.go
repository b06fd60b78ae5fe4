package integration

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The leftovers of issue 13's review: what pyhostd serve and pyctl say
// where they disagreed with each other or told a wrong reason.

// One setting, one range: serve's flag and the app file's key are
// refused alike (serve took --request-timeout 25h, which the same app
// file refuses), and each error names where the value came from.
func TestLeftovers13ServeFlagsHeldToFileRanges(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{
		"wsgi.py":   nameApp("rng"),
		"blog.toml": "script = \"wsgi.py\"\nrequest_timeout = \"25h\"\n",
	})
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--request-timeout", "25h", "wsgi.py"}, `--request-timeout: must be 0 (no limit) or a duration from 100ms to 24h, like "30s", got 25h`},
		{[]string{"--max-body", "2TiB", "wsgi.py"}, `--max-body: must be 0 (no limit) or a size from 1B to 1TiB`},
		{[]string{"blog.toml"}, `request_timeout: must be 0 (no limit) or a duration from 100ms to 24h, like "30s", got "25h"`},
	} {
		s := launch(t, dir, serveArgs(c.args...)...)
		err := s.waitExit(30 * time.Second)
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 || !strings.Contains(s.out.String(), c.want) {
			t.Errorf("pyhostd serve %s: %v, want a refusal saying %q:\n%s", strings.Join(c.args, " "), err, c.want, s.out)
		}
	}
}
