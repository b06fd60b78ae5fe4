package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os/user"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyhost/pyhost/privdrop"
)

// builtinAdmin is what an empty admin file gives.
func builtinAdmin() Admin {
	return Admin{
		Path: DefaultAdminFile,
		Proxy: Proxy{
			Listen: []string{":80"}, TLSListen: []string{}, User: "pyhost", AccessLog: "/var/log/pyhost/access.log",
			Limits: DefaultProxyLimits,
		},
		Daemon:   Daemon{StateDir: "/run/pyhost", LogDir: "/var/log/pyhost", DataDir: "/var/lib/pyhost", ControlSocket: "/run/pyhost/control.sock", LogFormat: LogText},
		Apps:     AppDirs{UserDir: ".config/pyhost/apps", AdminDir: "/etc/pyhost/apps.d"},
		Defaults: BuiltinDefaults(),
	}
}

func TestParseAdminValid(t *testing.T) {
	cases := []struct {
		src  string
		want func(a *Admin)
	}{
		{"", func(a *Admin) {}},
		{"[proxy]\nlisten = [\"0.0.0.0:80\", \"[::]:80\", \"localhost:8080\"]", func(a *Admin) {
			a.Proxy.Listen = []string{"0.0.0.0:80", "[::]:80", "localhost:8080"}
		}},
		{"[proxy]\nlisten = []\ntls_listen = [\":443\"]\n[[tls]]\ncert = \"/c.pem\"\nkey = \"/k.pem\"", func(a *Admin) {
			a.Proxy.Listen, a.Proxy.TLSListen = []string{}, []string{":443"}
			a.TLS = []TLSCert{{Cert: "/c.pem", Key: "/k.pem"}}
		}},
		{"[proxy]\nuser = \"www-data\"", func(a *Admin) { a.Proxy.User = "www-data" }},
		{"[proxy]\ntls_listen = [\":443\"]\nacme = {}", func(a *Admin) {
			a.Proxy.TLSListen = []string{":443"}
			a.Proxy.ACME = &ACME{CA: DefaultACMECA, Challenges: []string{"http-01", "tls-alpn-01"}}
		}},
		{"[proxy]\ntls_listen = [\":443\"]\n[proxy.acme]\nemail = \"hostmaster@example.com\"\nca = \"https://127.0.0.1:14000/dir\"\nca_root = \"/etc/pyhost//pebble.pem\"\nchallenges = [\"tls-alpn-01\"]", func(a *Admin) {
			a.Proxy.TLSListen = []string{":443"}
			a.Proxy.ACME = &ACME{Email: "hostmaster@example.com", CA: "https://127.0.0.1:14000/dir", CARoot: "/etc/pyhost/pebble.pem", Challenges: []string{"tls-alpn-01"}}
		}},
		{"[proxy]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"::1\", \"fd00::/8\"]", func(a *Admin) {
			a.Proxy.TrustedProxies = []netip.Prefix{
				netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"),
				netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("fd00::/8"),
			}
		}},
		{"[proxy]\nproxy_protocol = [\"10.0.0.0/8\", \"127.0.0.1\"]", func(a *Admin) {
			a.Proxy.ProxyProtocol = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
		}},
		{"[proxy]\naccess_log = \"\"", func(a *Admin) { a.Proxy.AccessLog = "" }},
		{"[proxy]\ndefault_app = \"alice/blog\"", func(a *Admin) { a.Proxy.DefaultApp = "alice/blog" }},
		{"[proxy]\naccess_log = \"/srv/log//access.log\"", func(a *Admin) { a.Proxy.AccessLog = "/srv/log/access.log" }},
		{"[proxy]\nbuffer_request_body = \"64KiB\"\nrequest_spool_limit = \"10GiB\"\nclient_body_timeout = \"10s\"\nclient_body_min_rate = \"1KiB\"\n" +
			"send_timeout = \"2m\"\nkeepalive_timeout = \"5s\"\nmax_connections = 2000\nmax_connections_per_ip = 64",
			func(a *Admin) {
				a.Proxy.Limits = ProxyLimits{BufferRequestBody: 64 << 10, RequestSpoolLimit: 10 << 30, ClientBodyTimeout: 10 * time.Second,
					ClientBodyMinRate: 1024, SendTimeout: 2 * time.Minute, KeepaliveTimeout: 5 * time.Second, MaxConnections: 2000, MaxConnectionsPerIP: 64}
			}},
		{"[proxy]\nbuffer_request_body = 0\nrequest_spool_limit = \"0\"\nclient_body_min_rate = 0\nmax_connections_per_ip = 0", func(a *Admin) {
			a.Proxy.Limits.BufferRequestBody, a.Proxy.Limits.RequestSpoolLimit, a.Proxy.Limits.ClientBodyMinRate, a.Proxy.Limits.MaxConnectionsPerIP = 0, 0, 0, 0
		}},
		{"[daemon]\nlog_dir = \"/srv/log\"", func(a *Admin) { a.Daemon.LogDir, a.Proxy.AccessLog = "/srv/log", "/srv/log/access.log" }},
		{"[daemon]\nstate_dir = \"/run/p2\"", func(a *Admin) { a.Daemon.StateDir, a.Daemon.ControlSocket = "/run/p2", "/run/p2/control.sock" }},
		{"[daemon]\nstate_dir = \"/run/p2\"\ncontrol_socket = \"/run/c.sock\"", func(a *Admin) {
			a.Daemon.StateDir, a.Daemon.ControlSocket = "/run/p2", "/run/c.sock"
		}},
		{"[daemon]\nmetrics_listen = \"127.0.0.1:9181\"", func(a *Admin) { a.Daemon.MetricsListen = "127.0.0.1:9181" }},
		{"[daemon]\nmetrics_listen = \"\"", func(a *Admin) {}},
		{"[daemon]\npid_file = \"/run/pyhost//pyhostd.pid\"", func(a *Admin) { a.Daemon.PIDFile = "/run/pyhost/pyhostd.pid" }},
		{"[daemon]\npid_file = \"\"", func(a *Admin) {}},
		{"[daemon]\nlog_format = \"json\"\naccess_log_per_app = true", func(a *Admin) { a.Daemon.LogFormat, a.Daemon.AccessLogPerApp = LogJSON, true }},
		{"[daemon]\ndata_dir = \"/srv/pyhost/\"", func(a *Admin) { a.Daemon.DataDir = "/srv/pyhost" }},
		{"[apps]\nuser_dir = \"~/apps/\"\nadmin_dir = \"/srv/pyhost/apps\"", func(a *Admin) {
			a.Apps = AppDirs{UserDir: "apps", AdminDir: "/srv/pyhost/apps"}
		}},
		{"[defaults]\nprocesses = 2\nthreads = 8\nmemory_limit = \"512MiB\"\nmax_requests = 1000\nmax_body = \"0\"\nqueue_limit = 5\n" +
			"request_timeout = \"0s\"\ngraceful_timeout = \"5s\"\nstartup_timeout = \"1m\"\nidle_timeout = \"1h\"\nqueue_timeout = \"2s\"\npython = \"python3.12\"",
			func(a *Admin) {
				a.Defaults = Defaults{App: App{Python: "python3.12", Processes: 2, Threads: 8, MemoryLimit: 512 << 20, MaxRequests: 1000,
					QueueLimit: 5, GracefulTimeout: 5 * time.Second, StartupTimeout: time.Minute, IdleTimeout: time.Hour, QueueTimeout: 2 * time.Second}}
			}},
		{"[defaults]\npython = \"/opt/py/bin/python3\"", func(a *Admin) { a.Defaults.Python = "/opt/py/bin/python3" }},
		{"[users.alice]\ndomains = [\"Alice.example.com\", \"*.alice.example.com\"]\nmax_apps = 5\nmax_processes = 8\nmax_memory = \"2GiB\"", func(a *Admin) {
			a.Users = map[string]UserPolicy{"alice": {Domains: []string{"alice.example.com", "*.alice.example.com"}, Quota: Quota{MaxApps: 5, MaxProcesses: 8, MaxMemory: 2 << 30}}}
		}},
		{"[users.bob]\nmax_apps = 0\nmax_memory = 0", func(a *Admin) { a.Users = map[string]UserPolicy{"bob": {}} }},
		{"users.carol = {}", func(a *Admin) { a.Users = map[string]UserPolicy{"carol": {}} }},
	}
	for _, c := range cases {
		got, err := ParseAdmin(DefaultAdminFile, []byte(c.src))
		if err != nil {
			t.Errorf("%s:\nunexpected error:\n%v", c.src, err)
			continue
		}
		want := builtinAdmin()
		c.want(&want)
		want.lines = got.lines // where keys are written is TestAdminErrorf's
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.src, got, want)
		}
	}
}

func TestParseAdminInvalid(t *testing.T) {
	cases := []struct {
		src, key, msg string // msg: the whole message, or a part if it starts with "…"
		line          int
	}{
		{"proxy = 1", "proxy", "must be a table: [proxy], got an integer", 1},
		{"[proxy]\nlisten = \":80\"", "proxy.listen", `must be an array of host:port addresses, like [":80"], got ":80"`, 2},
		{"[proxy]\nlisten = [80]", "proxy.listen[0]", `must be a host:port address, got 80`, 2},
		{"[proxy]\nlisten = [\"80\"]", "proxy.listen[0]", `"80" is not host:port; use host:port, like ":80", "0.0.0.0:80", "127.0.0.1:8080" or "[::]:443"`, 2},
		{"[proxy]\nlisten = [\":http\"]", "proxy.listen[0]", `…the port must be a number from 1 to 65535`, 2},
		{"[proxy]\nlisten = [\":65536\"]", "proxy.listen[0]", `…the port must be a number from 1 to 65535`, 2},
		{"[proxy]\nlisten = [\"bad_host:80\"]", "proxy.listen[0]", `"bad_host:80": "bad_host" is neither an IP address nor a host name; use host:port, like ":80", "0.0.0.0:80", "127.0.0.1:8080" or "[::]:443"`, 2},
		{"[proxy]\nlisten = [\":80\", \":80\"]", "proxy.listen[1]", `":80" is used by another listener already; give each listener its own address`, 2},
		{"[proxy]\nlisten = [\":80\"]\ntls_listen = [\":80\"]\n[[tls]]\ncert = \"/c\"\nkey = \"/k\"", "proxy.tls_listen[0]", `…is used by another listener already`, 3},
		{"[proxy]\nlisten = []", "proxy.listen", `the proxy has nothing to listen on; give listen, like [":80"], or tls_listen`, 2},
		{"[proxy]\ntls_listen = [\":443\"]", "proxy.tls_listen", `needs a certificate: add a [[tls]] table with cert and key, or [proxy] acme for automatic certificates`, 2},
		{"[proxy]\nacme = { email = \"a@example.com\" }", "proxy.acme", `needs tls_listen, the HTTPS listeners the certificates are for, like tls_listen = [":443"]`, 2},
		{"[proxy]\ntls_listen = [\":443\"]\nacme = 1", "proxy.acme", `must be a table, like acme = { email = "hostmaster@example.com" }, got an integer`, 3},
		{"[proxy]\ntls_listen = [\":443\"]\nacme = { ca = \"http://ca.example.com/dir\" }", "proxy.acme.ca", `must be the CA's ACME directory, an https:// URL like "https://acme-v02.api.letsencrypt.org/directory", got "http://ca.example.com/dir"`, 3},
		{"[proxy]\ntls_listen = [\":443\"]\nacme = { email = \"nobody\" }", "proxy.acme.email", `"nobody" is not an email address; write one like "hostmaster@example.com", or leave email out`, 3},
		{"[proxy]\ntls_listen = [\":443\"]\nacme = { ca_root = \"ca.pem\" }", "proxy.acme.ca_root", `must be an absolute path, like "/etc/pyhost/acme-ca.pem", got "ca.pem"`, 3},
		{"[proxy]\ntls_listen = [\":443\"]\nacme = { challenges = [\"dns-01\"] }", "proxy.acme.challenges[0]", `"dns-01" is not a challenge type pyhost does; use "http-01" or "tls-alpn-01"`, 3},
		{"[proxy]\ntls_listen = [\":443\"]\nacme = { challenges = [] }", "proxy.acme.challenges", `needs at least one challenge type, like ["http-01"]`, 3},
		{"[proxy]\ntls_listen = [\":443\"]\nacme = { mail = \"a@example.com\" }", "proxy.acme.mail", `unknown key (did you mean email?)`, 3},
		{"[proxy]\nuser = \"root\"", "proxy.user", `must not be root: the process that parses HTTP from the network runs unprivileged; use a user like "pyhost"`, 2},
		{"[proxy]\nuser = \"0\"", "proxy.user", `…must not be root`, 2},
		{"[proxy]\nuser = \"a b\"", "proxy.user", `"a b" is not a user name; use a name like "pyhost"`, 2},
		{"[proxy]\ntrusted_proxies = [\"10.0.0.1/8\"]", "proxy.trusted_proxies[0]", `"10.0.0.1/8" has bits set past the /8; did you mean "10.0.0.0/8"?`, 2},
		{"[proxy]\ntrusted_proxies = [\"10.0.0.0/33\"]", "proxy.trusted_proxies[0]", `"10.0.0.0/33" is not a CIDR prefix; use an IP address or a CIDR prefix, like "127.0.0.1", "10.0.0.0/8" or "fd00::/8"`, 2},
		{"[proxy]\ntrusted_proxies = [\"fe80::1%eth0\"]", "proxy.trusted_proxies[0]", `…is not an IP address`, 2},
		{"[proxy]\ntrusted_proxies = [\"lb.example.com\"]", "proxy.trusted_proxies[0]", `…is not an IP address`, 2},
		{"[proxy]\nproxy_protocol = [\"10.0.0.1/8\"]", "proxy.proxy_protocol[0]", `"10.0.0.1/8" has bits set past the /8; did you mean "10.0.0.0/8"?`, 2},
		{"[proxy]\nproxy_protocol = true", "proxy.proxy_protocol", `…got true`, 2},
		{"[proxy]\naccess_log = \"x.log\"", "proxy.access_log", `must be an absolute path, like "/var/log/pyhost/access.log", or "" for none, got "x.log"`, 2},
		{"[proxy]\naccess_log = false", "proxy.access_log", `must be an absolute path, or "" for none, got false`, 2},
		{"[proxy]\nbuffer_request_body = \"1GiB\"", "proxy.buffer_request_body", `must be 0 (off) or a size from 1B to 256MiB, like "512MiB", got "1GiB"`, 2},
		{"[proxy]\nbuffer_request_body = \"1MB\"", "proxy.buffer_request_body", `…(MB is ambiguous)`, 2},
		{"[proxy]\nrequest_spool_limit = -1", "proxy.request_spool_limit", `must be 0 (off) or a size from 1B to 1PiB, like "512MiB", got -1`, 2},
		{"[proxy]\nclient_body_timeout = \"0s\"", "proxy.client_body_timeout", `must be a duration from 1s to 1h, like "30s", got "0s"`, 2},
		{"[proxy]\nclient_body_timeout = 60", "proxy.client_body_timeout", `…got 60 (a number without a unit; write "60s")`, 2},
		{"[proxy]\nclient_body_min_rate = \"fast\"", "proxy.client_body_min_rate", `…is not a size`, 2},
		{"[proxy]\nsend_timeout = \"2h\"", "proxy.send_timeout", `must be a duration from 1s to 1h, like "30s", got "2h"`, 2},
		{"[proxy]\nkeepalive_timeout = \"0\"", "proxy.keepalive_timeout", `must be a duration from 1s to 1h, like "30s", got "0"`, 2},
		{"[proxy]\nmax_connections = 0", "proxy.max_connections", `must be an integer from 1 to 1000000, got 0`, 2},
		{"[proxy]\nmax_connections_per_ip = \"64\"", "proxy.max_connections_per_ip", `must be an integer from 0 (no limit) to 1000000, got "64"`, 2},
		{"[proxy]\nmax_connection = 10", "proxy.max_connection", `unknown key (did you mean max_connections?)`, 2},
		{"[[tls]]\ncert = \"/c\"", "tls[0]", `needs key, the private key file, like key = "/etc/pyhost/tls/example.key"`, 1},
		{"[[tls]]\nkey = \"/k\"", "tls[0]", `needs cert, the certificate chain file, like cert = "/etc/pyhost/tls/example.pem"`, 1},
		{"[[tls]]\ncert = \"c.pem\"\nkey = \"/k\"", "tls[0].cert", `must be an absolute path, like "/etc/pyhost/tls/example.pem", got "c.pem"`, 2},
		{"tls = \"/c.pem\"", "tls", `must be an array of tables: [[tls]] with cert and key, got a string`, 1},
		{"[daemon]\nstate_dir = \"run\"", "daemon.state_dir", `must be an absolute path, like "/run/pyhost", got "run"`, 2},
		{"[daemon]\nlog_dir = 1", "daemon.log_dir", `must be an absolute path, like "/var/log/pyhost", got 1`, 2},
		{"[daemon]\ncontrol_socket = \"c.sock\"", "daemon.control_socket", `must be an absolute path, like "/run/pyhost/control.sock", got "c.sock"`, 2},
		{"[daemon]\npid_file = \"pyhostd.pid\"", "daemon.pid_file", `must be an absolute path, like "/run/pyhost/pyhostd.pid", got "pyhostd.pid"`, 2},
		{"[daemon]\nlog_format = \"xml\"", "daemon.log_format", `must be "text" or "json", got "xml"`, 2},
		{"[daemon]\naccess_log_per_app = \"yes\"", "daemon.access_log_per_app", `must be true or false, like true, got "yes"`, 2},
		{"[daemon]\nmetrics_listen = \"9181\"", "daemon.metrics_listen", `"9181" is not host:port; use host:port, like ":80", "0.0.0.0:80", "127.0.0.1:8080" or "[::]:443"; or "" for no metrics endpoint`, 2},
		{"[daemon]\nmetrics_listen = \":80\"", "daemon.metrics_listen", `":80" is used by another listener already; give each listener its own address`, 2},
		{"[apps]\nuser_dir = \"/srv/apps\"", "apps.user_dir", `must be a directory in each user's home, starting with "~/", like "~/.config/pyhost/apps", got "/srv/apps"`, 2},
		{"[apps]\nuser_dir = \"~/\"", "apps.user_dir", `…got "~/"`, 2},
		{"[apps]\nuser_dir = \"~/../x\"", "apps.user_dir", `…got "~/../x"`, 2},
		{"[apps]\nuser_dir = \"~bob/apps\"", "apps.user_dir", `…got "~bob/apps"`, 2},
		{"[apps]\nadmin_dir = \"apps.d\"", "apps.admin_dir", `must be an absolute path, like "/etc/pyhost/apps.d", got "apps.d"`, 2},
		{"[defaults]\nprocesses = 0", "defaults.processes", `must be an integer from 1 to 256, got 0`, 2},
		{"[defaults]\nmemory_limit = \"1GB\"", "defaults.memory_limit", `"1GB" is not a size; use a number with KiB, MiB or GiB, like "1GiB" (GB is ambiguous)`, 2},
		{"[defaults]\nqueue_timeout = \"0\"", "defaults.queue_timeout", `must be a duration from 1ms to 1h, like "30s", got "0"`, 2},
		{"[defaults]\npython = \"bin/python\"", "defaults.python", `must be a command name looked up on PATH, like "python3", or an absolute path, like "/usr/bin/python3.12", got "bin/python"`, 2},
		{"[defaults]\npython = \"~/venv/bin/python\"", "defaults.python", `…got "~/venv/bin/python"`, 2},
		{"[defaults]\ndomains = [\"a.com\"]", "defaults.domains", `unknown key here; domains belongs in a [users.NAME] table`, 2},
		{"[defaults]\nurl_prefix = \"/\"", "defaults.url_prefix", `unknown key here; url_prefix belongs in an app file, not in the admin file`, 2},
		{"users = [1]", "users", `must be tables, one per user: [users.alice], got an array`, 1},
		{"[users.root]\ndomains = [\"a.com\"]", "users.root", `root may not deploy apps: apps never run as root`, 1},
		{"[users.\"a b\"]", `users."a b"`, `"a b" is not a user name; use the login name, like [users.alice]`, 1},
		{"[users]\nalice = true", "users.alice", `must be a table: [users.alice] with domains, max_apps, max_processes, max_memory, got a boolean`, 2},
		{"[users.alice]\ndomains = \"a.com\"", "users.alice.domains", `must be an array of domain patterns, like ["alice.example.com", "*.alice.example.com"], got "a.com"`, 2},
		{"[users.alice]\ndomains = [\"a.com\", \"*.a.com\", \"A.com\"]", "users.alice.domains[2]", `"A.com" is listed twice`, 2},
		{"[users.alice]\ndomains = [\"a.com:80\"]", "users.alice.domains[0]", `…has a port`, 2},
		{"[users.alice]\nmax_apps = -1", "users.alice.max_apps", `must be an integer from 0 (no limit) to 10000, got -1`, 2},
		{"[users.alice]\nmax_processes = 100001", "users.alice.max_processes", `must be an integer from 0 (no limit) to 100000, got 100001`, 2},
		{"[users.alice]\nmax_memory = \"2PiB\"", "users.alice.max_memory", `must be 0 (no limit) or a size from 16MiB to 1PiB, like "512MiB", got "2PiB"`, 2},
		{"[users.alice]\nmax_memory = \"2GB\"", "users.alice.max_memory", `…(GB is ambiguous)`, 2},
		{"[users.alice]\nmax_app = 1", "users.alice.max_app", `unknown key (did you mean max_apps?)`, 2},
		{"[proxy]\nlog_dir = \"/x\"", "proxy.log_dir", `unknown key here; log_dir belongs in [daemon]`, 2},
		{"listen = [\":80\"]", "listen", `unknown key here; listen belongs in [proxy]`, 1},
		{"[deamon]", "deamon", `unknown key (did you mean daemon?)`, 1},
		{"[server]", "server", `unknown key; valid keys at the top level are apps, daemon, defaults, proxy, tls, users`, 1},
	}
	for _, c := range cases {
		_, err := ParseAdmin(DefaultAdminFile, []byte(c.src))
		var es Errors
		if !errors.As(err, &es) || len(es) != 1 {
			t.Errorf("%s:\nwant one error, got\n%v", c.src, err)
			continue
		}
		e := es[0]
		msgOK := e.Msg == c.msg || strings.HasPrefix(c.msg, "…") && strings.Contains(e.Msg, c.msg[len("…"):])
		if e.Key != c.key || !msgOK || e.Line != c.line || e.File != DefaultAdminFile {
			t.Errorf("%s:\n got %d: [%s] %s\nwant %d: [%s] %s", c.src, e.Line, e.Key, e.Msg, c.line, c.key, c.msg)
		}
	}
}

// pyhostd serve's flags are checked against the file's ranges.
func TestProxyLimitsValidate(t *testing.T) {
	flag := func(key string) string { return "--" + strings.ReplaceAll(key, "_", "-") }
	if err := DefaultProxyLimits.Validate(flag); err != nil {
		t.Errorf("defaults: %v", err)
	}
	off := DefaultProxyLimits
	off.BufferRequestBody, off.RequestSpoolLimit, off.ClientBodyMinRate, off.MaxConnectionsPerIP = 0, 0, 0, 0
	if err := off.Validate(flag); err != nil {
		t.Errorf("what may be off, off: %v", err)
	}
	bad := DefaultProxyLimits
	bad.ClientBodyTimeout, bad.MaxConnections, bad.BufferRequestBody = 0, -1, 1<<30
	want := "--buffer-request-body: must be 0 (off) or a size from 1B to 256MiB, like \"512MiB\", got 1GiB\n" +
		"--client-body-timeout: must be a duration from 1s to 1h, like \"30s\", got 0s\n" +
		"--max-connections: must be an integer from 1 to 1000000, got -1"
	if err := bad.Validate(flag); err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

func TestAppDirsUserDirOf(t *testing.T) {
	a := builtinAdmin().Apps
	if got := a.UserDirOf("/home/alice"); got != "/home/alice/.config/pyhost/apps" {
		t.Errorf("UserDirOf = %q", got)
	}
}

func TestParseAdminSyntaxError(t *testing.T) {
	_, err := ParseAdmin(DefaultAdminFile, []byte("[proxy]\nlisten = [\":80\"\n\n[daemon]\n"))
	if err == nil || err.Error() != DefaultAdminFile+`:4: not valid TOML: expected a comma (',') or array terminator (']'), but got '['` {
		t.Errorf("got %v", err)
	}
}

// Problems found after parsing (by the daemon, with lookups) are located
// in the admin file as the parser's own are.
func TestAdminErrorf(t *testing.T) {
	src := `[proxy]
user = "pyhsot"

[daemon]
metrics_listen = "127.0.0.1:9181"

[[tls]]
cert = "/c.pem"
key = "/k.pem"

[users]
carol = {}

[users.alice]
domains = ["alice.example.com"]

[users."j.doe"]
`
	a, err := ParseAdmin(DefaultAdminFile, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		key  string
		line int
	}{
		{"proxy.user", 2},
		{"proxy.listen", 1}, // not written: its table's line
		{"daemon.metrics_listen", 5},
		{"tls", 7},
		{"tls[0]", 7},
		{"users.carol", 12},
		{"users.alice", 14},
		{`users."j.doe"`, 17},
		{"apps.admin_dir", 0}, // nothing of it written
	}
	for _, c := range cases {
		e := a.Errorf(c.key, "bad %s", "thing")
		want := DefaultAdminFile
		if c.line > 0 {
			want += ":" + strconv.Itoa(c.line)
		}
		want += ": " + c.key + ": bad thing"
		if e.Error() != want {
			t.Errorf("Errorf(%q) = %q, want %q", c.key, e, want)
		}
	}
	if e := (Admin{}).Errorf("proxy.user", "x"); e.Line != 0 || e.Error() != "proxy.user: x" {
		t.Errorf("the zero Admin: %#v", e)
	}
}

func TestAdminUserError(t *testing.T) {
	a, err := ParseAdmin(DefaultAdminFile, []byte("[users.alice]\n\n[users.\"j.doe\"]\ndomains = []\n[users.toor]\n"))
	if err != nil {
		t.Fatal(err)
	}
	nss := errors.New("look up user \"alice\": nss: connection refused")
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"alice", fmt.Errorf("look up user %q: %w", "alice", user.UnknownUserError("alice")),
			DefaultAdminFile + `:1: users.alice: no such user "alice" on this system; list users by their login name, or remove the table`},
		{"j.doe", user.UnknownUserIdError(1234),
			DefaultAdminFile + `:3: users."j.doe": no such user "j.doe" on this system; list users by their login name, or remove the table`},
		{"toor", privdrop.ErrRoot, DefaultAdminFile + `:5: users.toor: "toor" is root (uid 0); apps never run as root`},
		{"alice", nss, DefaultAdminFile + `:1: users.alice: ` + nss.Error()},
	}
	for _, c := range cases {
		e := a.UserError(c.name, c.err)
		if e.Error() != c.want {
			t.Errorf("UserError(%q, %v) =\n%s\nwant\n%s", c.name, c.err, e, c.want)
		}
		if !errors.Is(e, c.err) {
			t.Errorf("UserError(%q) does not wrap %v", c.name, c.err)
		}
	}
}
