package integration

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// debTools build the .deb: dpkg-dev and make.
var debTools = []string{"dpkg-deb", "dpkg-shlibdeps", "make"}

// debBuild is `make deb`, once for the tests of this file (started by
// TestMain). xz at level 1 (DPKG_DEB_COMPRESSOR_LEVEL, which -z would
// override and build-deb.sh does not pass): the package's files are the
// same as at the default level 6, and dpkg-deb takes 7 s instead of 33
// on the project's machine, busy.
var debBuild = &prebuild{
	tests: []string{"TestDebLintian", "TestDebInstallUpgradeRemovePurge"},
	run: func() error {
		for _, tool := range debTools {
			if _, err := exec.LookPath(tool); err != nil {
				return nil // buildDeb skips
			}
		}
		out := filepath.Join(baseDir, "deb")
		cmd := exec.Command("make", "-C", "..", "deb", "OUT="+out)
		cmd.Env = append(os.Environ(), "DPKG_DEB_COMPRESSOR_LEVEL=1")
		b, err := cmd.CombinedOutput()
		if err != nil {
			return errors.New("make deb: " + err.Error() + "\n" + string(b))
		}
		debs, _ := filepath.Glob(filepath.Join(out, "pyhost_*_*.deb"))
		if len(debs) != 1 {
			return errors.New("make deb wrote " + strings.Join(debs, ", ") + ", want one pyhost_VERSION_ARCH.deb\n" + string(b))
		}
		debPath = debs[0]
		return nil
	},
}

var debPath string // set by debBuild

// buildDeb returns the package `make deb` wrote for the tests of this
// file, waiting for debBuild.
func buildDeb(t *testing.T) string {
	t.Helper()
	for _, tool := range debTools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (dpkg-dev and make build the .deb)", tool)
		}
	}
	if err := debBuild.wait(); err != nil {
		t.Fatal(err)
	}
	return debPath
}

// lintianExplained are the tags lintian may report on the package, each
// explained in docs/admin-guide.md ("Installing from the .deb"). Any
// other tag, and any error or warning, fails the test.
var lintianExplained = []string{
	"package-supports-alternative-init-but-no-init.d-script",
	"spelling-error-in-binary",
}

func TestDebLintian(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("lintian"); err != nil {
		t.Skip("lintian is not installed (scripts/install-test-deps.sh installs it)")
	}
	deb := buildDeb(t)
	out, err := exec.Command("lintian", "--pedantic", "--display-info", "--color", "never", deb).CombinedOutput()
	t.Logf("lintian --pedantic --display-info %s:\n%s", filepath.Base(deb), out)
	// lintian exits 1 for errors only, and 2 when it could not run.
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("lintian: %v", err)
	}
	tag := regexp.MustCompile(`^([EWIPX]): pyhost[^:]*: (\S+)`)
	for _, line := range strings.Split(string(out), "\n") {
		m := tag.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[1] == "E" || m[1] == "W" || !slices.Contains(lintianExplained, m[2]) {
			t.Errorf("lintian: %s (fix it, or explain it in docs/admin-guide.md and lintianExplained)", line)
		}
	}
}

// debMachine is where the package is installed: a throwaway copy of
// this machine when the kernel allows one (an overlay of / on a tmpfs, in
// a private mount namespace, entered with nsenter and chroot: whatever
// the test does, or fails to undo, vanishes with it), else this machine
// itself.
type debMachine struct {
	pid  int    // the process holding the namespace; 0: this machine
	root string // the overlay's root, inside the namespace
	hold io.WriteCloser
}

// sandboxScript mounts the overlay at $1/root, says ready and holds the
// namespace until its stdin closes (the test ends, or dies).
const sandboxScript = `set -e
mount -t tmpfs -o mode=0755 pyhost-deb-test "$1"
mkdir "$1/upper" "$1/work" "$1/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$1/upper,workdir=$1/work" "$1/root"
for d in proc sys dev; do mount --rbind "/$d" "$1/root/$d"; done
echo ready
exec cat >/dev/null
`

// sandbox returns a throwaway copy of this machine, or nil and why not.
func sandbox(t *testing.T) (*debMachine, string) {
	for _, tool := range []string{"unshare", "nsenter", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, tool + " is missing"
		}
	}
	dir := t.TempDir()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", sandboxScript, "sh", dir)
	hold, err := cmd.StdinPipe()
	if err != nil {
		return nil, err.Error()
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err.Error()
	}
	if err := cmd.Start(); err != nil {
		return nil, err.Error()
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		hold.Close()
		cmd.Wait()
		return nil, "cannot mount an overlay of /: " + strings.TrimSpace(stderr.String())
	}
	t.Cleanup(func() {
		hold.Close() // the namespace and every mount in it go
		cmd.Wait()
	})
	return &debMachine{pid: cmd.Process.Pid, root: filepath.Join(dir, "root"), hold: hold}, ""
}

// command runs name on the machine.
func (m *debMachine) command(name string, args ...string) *exec.Cmd {
	if m.pid == 0 {
		return exec.Command(name, args...)
	}
	return exec.Command("nsenter", append([]string{"-t", strconv.Itoa(m.pid), "-m", "--", "chroot", m.root, name}, args...)...)
}

// path is where the machine's path p is seen from this process.
func (m *debMachine) path(p string) string {
	if m.pid == 0 {
		return p
	}
	return fmt.Sprintf("/proc/%d/root%s%s", m.pid, m.root, p)
}

func (m *debMachine) exists(p string) bool {
	_, err := os.Lstat(m.path(p))
	return err == nil
}

func (m *debMachine) glob(pattern string) []string {
	found, _ := filepath.Glob(m.path(pattern))
	for i, f := range found {
		found[i] = strings.TrimPrefix(f, m.path(""))
	}
	return found
}

// must runs name on the machine and returns its output, failing the test
// if it fails.
func (m *debMachine) must(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := m.command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// dpkgStatus is dpkg's word for pyhost: "installed", "config-files",
// "not-installed", ...
func (m *debMachine) dpkgStatus() string {
	out, err := m.command("dpkg-query", "-W", "-f=${db:Status-Status}", "pyhost").Output()
	if err != nil {
		return "not-installed"
	}
	return strings.TrimSpace(string(out))
}

// pyhostAccount reports a pyhost user or group on the machine.
func (m *debMachine) pyhostAccount() string {
	var found []string
	for _, db := range []string{"passwd", "group"} {
		if m.command("getent", db, "pyhost").Run() == nil {
			found = append(found, db)
		}
	}
	return strings.Join(found, " and ")
}

// The state and config places of the package, which purge removes.
var debStatePaths = []string{"/etc/pyhost", "/var/lib/pyhost", "/var/log/pyhost", "/run/pyhost"}

// debFiles are the paths the package holds, from the .deb itself.
func debFiles(t *testing.T, deb string) []string {
	t.Helper()
	list, err := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -t`, "sh", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, p := range strings.Split(strings.TrimSpace(string(list)), "\n") {
		p = "/" + strings.Trim(strings.TrimPrefix(p, "./"), "/")
		if p != "/" {
			paths = append(paths, p)
		}
	}
	return paths
}

// debMachineFor is a throwaway copy of this machine with no pyhost on
// it, or, when the kernel allows none, this machine if it has no pyhost
// the test could take away (else the test is skipped).
func debMachineFor(t *testing.T, files []string) *debMachine {
	t.Helper()
	m, why := sandbox(t)
	if m != nil {
		// Whatever pyhost this machine has, its copy has none.
		if m.dpkgStatus() != "not-installed" {
			m.must(t, "dpkg", "--purge", "--force-all", "pyhost")
		}
		m.command("userdel", "pyhost").Run()
		m.command("groupdel", "pyhost").Run()
		m.must(t, "rm", "-rf", "/etc/pyhost", "/var/lib/pyhost", "/var/log/pyhost", "/run/pyhost")
		// man-db's trigger rebuilds its whole index at each dpkg run
		// (seconds); the copy has no use for it.
		m.must(t, "rm", "-f", "/var/lib/man-db/auto-update")
		t.Logf("installing in a throwaway overlay of / (%s)", m.root)
		return m
	}
	t.Logf("no throwaway copy of this machine (%s): installing on it", why)
	holdMachine(t) // installs and purges the system package
	m = &debMachine{}
	if st := m.dpkgStatus(); st != "not-installed" {
		t.Skipf("a pyhost package is on this machine already (%s): purging it is not this test's to do", st)
	}
	if acct := m.pyhostAccount(); acct != "" {
		t.Skipf("a pyhost %s exists that this test did not create, and purge would delete it", acct)
	}
	for _, p := range debStatePaths {
		if m.exists(p) {
			t.Skipf("%s exists already: purging the package would remove it", p)
		}
	}
	for _, p := range files {
		// A directory such as /usr/bin is shared; /lib may be a link to one.
		if fi, err := os.Stat(p); m.exists(p) && (err != nil || !fi.IsDir()) {
			t.Skipf("%s exists already: installing and purging would take it", p)
		}
	}
	return m
}

// O2, issue 15: the .deb installs (user, directories, a config that
// passes pyhostd check, a unit systemd-analyze accepts, nothing enabled),
// upgrades keeping the admin's edit of /etc/pyhost/pyhost.toml, stops a
// pyhostd started without systemd when removed, and leaves nothing of
// pyhost once purged. Installed in a throwaway copy of this machine when
// possible; on this machine itself only where no pyhost package, user or
// directory exists, purging in its cleanup whatever happened.
func TestDebInstallUpgradeRemovePurge(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("installs a .deb with dpkg: needs root")
	}
	for _, tool := range []string{"dpkg", "dpkg-query", "adduser", "getent", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: not a Debian system", tool)
		}
	}
	built := buildDeb(t)
	files := debFiles(t, built)
	m := debMachineFor(t, files)
	// The package where the machine sees it.
	deb := "/tmp/" + filepath.Base(built)
	if b, err := os.ReadFile(built); err != nil || os.WriteFile(m.path(deb), b, 0o644) != nil {
		t.Fatalf("copy the package to %s: %v", m.path(deb), err)
	}
	// What existed before (/usr/bin, /etc...) must exist after; the rest
	// is the package's and must be gone after purge.
	existed := map[string]bool{}
	for _, p := range files {
		existed[p] = m.exists(p)
	}

	t.Cleanup(func() {
		// Whatever failed: the machine as it was (a throwaway copy goes
		// anyway).
		os.Remove(m.path(deb))
		if m.pid != 0 {
			return
		}
		if m.dpkgStatus() != "not-installed" {
			if out, err := exec.Command("dpkg", "--purge", "pyhost").CombinedOutput(); err != nil {
				t.Logf("cleanup: dpkg --purge: %v\n%s", err, out)
				exec.Command("dpkg", "--purge", "--force-all", "pyhost").Run()
			}
		}
		exec.Command("userdel", "pyhost").Run()
		exec.Command("groupdel", "pyhost").Run()
		for _, p := range debStatePaths {
			os.RemoveAll(p)
		}
		for _, p := range slices.Backward(files) {
			if !existed[p] {
				os.Remove(p)
			}
		}
	})

	// Install.
	start := time.Now()
	t.Log(m.must(t, "dpkg", "-i", deb))
	t.Logf("installed in %v", time.Since(start))
	if st := m.dpkgStatus(); st != "installed" {
		t.Fatalf("after dpkg -i pyhost is %q", st)
	}
	for _, p := range files {
		if !m.exists(p) {
			t.Errorf("installed package lacks %s", p)
		}
	}
	// The sandbox's trampoline, where pyhostd looks for it.
	if fi, err := os.Stat(m.path("/usr/lib/pyhost/pyhost-sandbox")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("/usr/lib/pyhost/pyhost-sandbox: %v %v, want an executable of mode 0755", fi, err)
	}
	if links := m.glob("/etc/systemd/system/*/pyhost.service"); len(links) > 0 {
		t.Errorf("a first install enabled the unit: %v", links)
	}
	if m.pyhostAccount() != "passwd and group" {
		t.Errorf("no pyhost user and group after install")
	}
	if fi, err := os.Stat(m.path("/var/lib/pyhost")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("/var/lib/pyhost: %v %v, want a directory of mode 0700", fi, err)
	}
	conffiles := m.must(t, "dpkg-query", "-W", "-f=${Conffiles}", "pyhost")
	for _, c := range []string{"/etc/pyhost/pyhost.toml", "/etc/logrotate.d/pyhost"} {
		if !strings.Contains(conffiles, c+" ") {
			t.Errorf("%s is not a conffile: %q", c, conffiles)
		}
	}
	if out, err := m.command("/usr/bin/pyhostd", "check").CombinedOutput(); err != nil {
		t.Errorf("pyhostd check on the installed example config: %v\n%s", err, out)
	}
	if m.command("sh", "-c", "command -v systemd-analyze").Run() == nil {
		if out, err := m.command("systemd-analyze", "verify", "/lib/systemd/system/pyhost.service").CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify of the installed unit: %v\n%s", err, out)
		}
	}
	if rule, _ := os.ReadFile(m.path("/etc/logrotate.d/pyhost")); !strings.Contains(string(rule), "/usr/bin/pyctl reopen-logs --if-running") {
		t.Errorf("the installed logrotate rule does not run /usr/bin/pyctl reopen-logs:\n%s", rule)
	}

	// Upgrade: the admin's edit of the config stays.
	conf := m.path("/etc/pyhost/pyhost.toml")
	edited := onLoopback(t, m)
	t.Log(m.must(t, "dpkg", "-i", deb))
	if got, _ := os.ReadFile(conf); string(got) != edited {
		t.Errorf("the upgrade changed the admin's /etc/pyhost/pyhost.toml:\n%s", got)
	}
	if out, err := m.command("/usr/bin/pyhostd", "check").CombinedOutput(); err != nil {
		t.Errorf("pyhostd check after the upgrade: %v\n%s", err, out)
	}

	// Remove stops the daemon, here one started by hand without systemd
	// (on loopback: the admin's edit above).
	daemon, daemonExited, daemonLog := startInstalled(t, m, "/usr/bin/pyhostd")
	t.Log(m.must(t, "dpkg", "-r", "pyhost"))
	// prerm waited for it to end; here it is only reaped.
	select {
	case <-daemonExited:
	case <-time.After(10 * time.Second):
		t.Errorf("dpkg -r left pyhostd (pid %d) running\n%s", daemon.Process.Pid, daemonLog)
	}
	if st := m.dpkgStatus(); st != "config-files" {
		t.Errorf("after dpkg -r pyhost is %q, want config-files", st)
	}
	for _, p := range []string{"/usr/bin/pyhostd", "/usr/bin/pyctl", "/usr/lib/pyhost/pyhost-sandbox", "/lib/systemd/system/pyhost.service"} {
		if m.exists(p) {
			t.Errorf("%s is still there after dpkg -r", p)
		}
	}

	// Purge: nothing of pyhost is left.
	t.Log(m.must(t, "dpkg", "-P", "pyhost"))
	if st := m.dpkgStatus(); st != "not-installed" {
		t.Errorf("after dpkg -P pyhost is %q", st)
	}
	var left []string
	for _, p := range append(slices.Clone(files), debStatePaths...) {
		if m.exists(p) && !existed[p] {
			left = append(left, p)
		}
	}
	for _, pattern := range []string{"/etc/systemd/system/*pyhost*", "/etc/systemd/system/*/pyhost.service",
		"/var/lib/systemd/deb-systemd-helper-*/pyhost.service*", "/var/lib/systemd/deb-systemd-helper-*/*/pyhost.service*"} {
		left = append(left, m.glob(pattern)...)
	}
	if acct := m.pyhostAccount(); acct != "" {
		left = append(left, "the pyhost "+acct)
	}
	if len(left) > 0 {
		t.Errorf("left after dpkg -P pyhost:\n%s", strings.Join(left, "\n"))
	}
}

// startInstalled runs `pyhostd run` of an installed pyhost on m, on its
// /etc/pyhost/pyhost.toml, until it serves. The channel is closed once it
// has exited; the test's cleanup kills it if it still runs.
//
// One such daemon runs at a time on the machine: every copy of it has
// state_dir /run/pyhost, which names the daemon's cgroup tree (master's
// treeName), and cgroupfs is the machine's own, shared by the copies. A
// daemon starting kills what is in its tree, so two would kill each
// other's proxy.
func startInstalled(t *testing.T, m *debMachine, pyhostd string) (*exec.Cmd, <-chan struct{}, *lockedBuffer) {
	t.Helper()
	release := lockMachine(t, "installed-daemon")
	daemon := m.command(pyhostd, "run")
	stderr, err := daemon.StderrPipe()
	if err != nil {
		release()
		t.Fatal(err)
	}
	if err := daemon.Start(); err != nil {
		release()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	serving := make(chan struct{})
	log := &lockedBuffer{lines: make(chan string)}
	go func() {
		defer close(exited)
		defer release()
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			log.add(sc.Text())
			if !once && daemonServing(sc.Text()) {
				once = true
				close(serving)
			}
		}
		daemon.Wait()
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			daemon.Process.Kill()
			<-exited
		}
	})
	select {
	case <-serving:
	case <-exited:
		t.Fatalf("%s run on the installed config exited: %v\n%s", pyhostd, daemon.ProcessState, log)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s run on the installed config did not serve within 30s\n%s", pyhostd, log)
	}
	return daemon, exited, log
}

// onLoopback points the installed config's listen at a free loopback
// port, as an admin's edit, and returns the new text.
func onLoopback(t *testing.T, m *debMachine) string {
	t.Helper()
	conf := m.path("/etc/pyhost/pyhost.toml")
	cfg, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(cfg), `listen = ["0.0.0.0:80"]`, `listen = ["`+freePort(t)+`"]`, 1) + "# the admin's edit\n"
	if edited == string(cfg)+"# the admin's edit\n" {
		t.Fatalf("the example config no longer listens on 0.0.0.0:80; update this test")
	}
	if err := os.WriteFile(conf, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	return edited
}

// O2: make install and make uninstall on a host without the package,
// in a throwaway copy of this machine only (on the machine itself they
// would replace what an admin installed): install creates the user and
// a config that passes pyhostd check, a second install keeps the admin's
// config, uninstall stops a pyhostd run by hand and keeps the config and
// the user, PURGE=1 removes them too.
func TestMakeInstallUninstall(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("make install needs root")
	}
	m, why := sandbox(t)
	if m == nil {
		t.Skipf("no throwaway copy of this machine (%s): make install would change it", why)
	}
	if m.dpkgStatus() != "not-installed" {
		m.must(t, "dpkg", "--purge", "--force-all", "pyhost")
	}
	m.command("userdel", "pyhost").Run()
	m.command("groupdel", "pyhost").Run()
	m.must(t, "rm", "-rf", "/etc/pyhost", "/var/lib/pyhost", "/var/log/pyhost", "/run/pyhost", "/usr/local/share/doc/pyhost")
	checkout, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	installed := []string{"/usr/local/bin/pyhostd", "/usr/local/bin/pyctl", "/usr/local/lib/pyhost/pyhost-sandbox", "/usr/local/lib/pyhost", "/etc/systemd/system/pyhost.service",
		"/etc/logrotate.d/pyhost", "/usr/local/share/doc/pyhost", "/usr/local/share/man/man8/pyhostd.8", "/usr/local/share/man/man1/pyctl.1"}
	for _, p := range installed {
		if m.exists(p) {
			t.Skipf("%s exists on this machine: make install was run here", p)
		}
	}

	// bin/ of the checkout built, make install only finds it up to date
	// (and the throwaway copy's build cache is thrown away).
	if err := checkoutBuild.wait(); err != nil {
		t.Fatal(err)
	}
	t.Log(m.must(t, "make", "-C", checkout, "install"))
	for _, p := range append(installed, "/etc/pyhost/pyhost.toml", "/etc/pyhost/apps.d") {
		if !m.exists(p) {
			t.Errorf("make install did not install %s", p)
		}
	}
	if m.pyhostAccount() == "" {
		t.Errorf("make install created no pyhost user")
	}
	if out, err := m.command("/usr/local/bin/pyhostd", "check").CombinedOutput(); err != nil {
		t.Errorf("pyhostd check on the installed example config: %v\n%s", err, out)
	}
	edited := onLoopback(t, m)
	m.must(t, "make", "-C", checkout, "install")
	if got, _ := os.ReadFile(m.path("/etc/pyhost/pyhost.toml")); string(got) != edited {
		t.Errorf("a second make install changed the admin's /etc/pyhost/pyhost.toml:\n%s", got)
	}

	daemon, exited, log := startInstalled(t, m, "/usr/local/bin/pyhostd")
	t.Log(m.must(t, "make", "-C", checkout, "uninstall"))
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Errorf("make uninstall left pyhostd (pid %d) running\n%s", daemon.Process.Pid, log)
	}
	for _, p := range installed {
		if m.exists(p) {
			t.Errorf("%s is still there after make uninstall", p)
		}
	}
	if got, _ := os.ReadFile(m.path("/etc/pyhost/pyhost.toml")); string(got) != edited || m.pyhostAccount() == "" {
		t.Errorf("make uninstall did not keep the config and the pyhost user")
	}

	t.Log(m.must(t, "make", "-C", checkout, "uninstall", "PURGE=1"))
	var left []string
	for _, p := range append(installed, debStatePaths...) {
		if m.exists(p) {
			left = append(left, p)
		}
	}
	if acct := m.pyhostAccount(); acct != "" {
		left = append(left, "the pyhost "+acct)
	}
	if len(left) > 0 {
		t.Errorf("left after make uninstall PURGE=1:\n%s", strings.Join(left, "\n"))
	}
}
