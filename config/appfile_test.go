package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pyhost/pyhost/privdrop"
)

var alice = privdrop.Credential{UID: 1000, GID: 1000, Groups: []uint32{1000}, Username: "alice", Home: "/home/alice"}

const (
	appDir  = "/home/alice/.config/pyhost/apps"
	appPath = appDir + "/blog.toml"
)

// baseApp is what `app = "blog.wsgi:application"` alone gives.
func baseApp() App {
	return App{
		Name:            "blog",
		File:            appPath,
		Cred:            alice,
		Module:          "blog.wsgi",
		Callable:        "application",
		Directory:       appDir,
		Python:          "python3",
		URLPrefix:       "/",
		Processes:       DefaultProcesses,
		Threads:         DefaultThreads,
		StartupTimeout:  DefaultStartupTimeout,
		GracefulTimeout: DefaultGracefulTimeout,
		QueueTimeout:    DefaultQueueTimeout,
		RequestTimeout:  DefaultRequestTimeout,
		QueueLimit:      DefaultQueueLimit,
		MaxBody:         DefaultMaxBody,
	}
}

const baseSrc = "\napp = \"blog.wsgi:application\"\n"

func TestParseAppFileValid(t *testing.T) {
	cases := []struct {
		src  string // baseSrc is appended unless it sets app or script
		want func(a *App)
	}{
		{``, func(a *App) {}},
		{`domains = ["Blog.Example.COM", "*.alice.example.com", "localhost", "192.0.2.1"]`, func(a *App) {
			a.Domains = []string{"blog.example.com", "*.alice.example.com", "localhost", "192.0.2.1"}
		}},
		{`domains = []`, func(a *App) {}},
		{`app = "pkg.sub.wsgi:app"`, func(a *App) { a.Module, a.Callable = "pkg.sub.wsgi", "app" }},
		{`app = "app:factory.create"`, func(a *App) { a.Module, a.Callable = "app", "factory.create" }},
		{`script = "wsgi.py"`, func(a *App) { a.Module, a.Callable, a.Script = "", "", appDir+"/wsgi.py" }},
		{`script = "wsgi.py"` + "\n" + `callable = "create_app"`, func(a *App) {
			a.Module, a.Script, a.Callable = "", appDir+"/wsgi.py", "create_app"
		}},
		{`script = "wsgi.py"` + "\n" + `directory = "~/blog"`, func(a *App) {
			a.Module, a.Callable, a.Directory, a.Script = "", "", "/home/alice/blog", "/home/alice/blog/wsgi.py"
		}},
		{`script = "/srv/x/wsgi.py"` + "\n" + `directory = "../../../blog"`, func(a *App) {
			a.Module, a.Callable, a.Directory, a.Script = "", "", "/home/alice/blog", "/srv/x/wsgi.py"
		}},
		{`script = "~/w/app.wsgi"`, func(a *App) { a.Module, a.Callable, a.Script = "", "", "/home/alice/w/app.wsgi" }},
		{`directory = "~"`, func(a *App) { a.Directory = "/home/alice" }},
		{`reload_trigger = "~/blog/tmp/restart.txt"`, func(a *App) { a.ReloadTrigger = "/home/alice/blog/tmp/restart.txt" }},
		{`reload_trigger = "restart.txt"`, func(a *App) { a.ReloadTrigger = appDir + "/restart.txt" }},
		{`directory = "/srv/blog"` + "\n" + `reload_trigger = "/srv/blog/tmp/restart.txt"`, func(a *App) {
			a.Directory, a.ReloadTrigger = "/srv/blog", "/srv/blog/tmp/restart.txt"
		}},
		{`enabled = false`, func(a *App) { a.Disabled = true }},
		{`enabled = true`, func(a *App) {}},
		{`warmup = ["/", "/healthz?deep=1"]`, func(a *App) { a.Warmup = []string{"/", "/healthz?deep=1"} }},
		{`warmup = []`, func(a *App) {}},
		{`umask = "022"`, func(a *App) { a.Umask = "022" }},
		{`umask = "0007"`, func(a *App) { a.Umask = "0007" }},
		{`directory = "/srv/blog/"`, func(a *App) { a.Directory = "/srv/blog" }},
		{`directory = "site"`, func(a *App) { a.Directory = appDir + "/site" }},
		{`python = "python3.12"`, func(a *App) { a.Python = "python3.12" }},
		{`python = "~/blog/.venv/bin/python"`, func(a *App) { a.Python = "/home/alice/blog/.venv/bin/python" }},
		{`python = "venv/bin/python"`, func(a *App) { a.Python = appDir + "/venv/bin/python" }},
		{`python = "/usr/bin/python3"`, func(a *App) { a.Python = "/usr/bin/python3" }},
		{`python_path = ["~/blog/lib", "lib", "/opt/lib"]`, func(a *App) {
			a.PythonPath = []string{"/home/alice/blog/lib", appDir + "/lib", "/opt/lib"}
		}},
		{`url_prefix = "/"`, func(a *App) {}},
		{`url_prefix = "/api/"`, func(a *App) { a.URLPrefix = "/api" }},
		{`url_prefix = "/a/b-c_d.e~f"`, func(a *App) { a.URLPrefix = "/a/b-c_d.e~f" }},
		{`processes = 1`, func(a *App) { a.Processes = 1 }},
		{`processes = 256`, func(a *App) { a.Processes = 256 }},
		{`threads = 1`, func(a *App) { a.Threads = 1 }},
		{`threads = 1024`, func(a *App) { a.Threads = 1024 }},
		{`memory_limit = "300MiB"`, func(a *App) { a.MemoryLimit = 300 << 20 }},
		{`memory_limit = "0"`, func(a *App) { a.MemoryLimit = 0 }},
		{`memory_limit = 0`, func(a *App) { a.MemoryLimit = 0 }},
		{`memory_limit = 16777216`, func(a *App) { a.MemoryLimit = 16 << 20 }},
		{`memory_limit = "1TiB"`, func(a *App) { a.MemoryLimit = 1 << 40 }},
		{`max_requests = 0`, func(a *App) { a.MaxRequests = 0 }},
		{`max_requests = 10000`, func(a *App) { a.MaxRequests = 10000 }},
		{`max_body = "10MiB"`, func(a *App) { a.MaxBody = 10 << 20 }},
		{`max_body = 0`, func(a *App) { a.MaxBody = 0 }},
		{`https_only = true`, func(a *App) { a.HTTPSOnly = true }},
		{`hsts = "max-age=63072000; includeSubDomains"`, func(a *App) { a.HSTS = "max-age=63072000; includeSubDomains" }},
		{`hsts = "includeSubDomains; Max-Age=\"300\""`, func(a *App) { a.HSTS = `includeSubDomains; Max-Age="300"` }},
		{`hsts = ""`, func(a *App) {}},
		{`max_body = 1`, func(a *App) { a.MaxBody = 1 }},
		{`queue_limit = 1`, func(a *App) { a.QueueLimit = 1 }},
		{`request_timeout = "0"`, func(a *App) { a.RequestTimeout = 0 }},
		{`request_timeout = 0`, func(a *App) { a.RequestTimeout = 0 }},
		{`request_timeout = "5m"`, func(a *App) { a.RequestTimeout = 5 * time.Minute }},
		{`graceful_timeout = "1s"`, func(a *App) { a.GracefulTimeout = time.Second }},
		{`startup_timeout = "1m30s"`, func(a *App) { a.StartupTimeout = 90 * time.Second }},
		{`idle_timeout = "0s"`, func(a *App) { a.IdleTimeout = 0 }},
		{`idle_timeout = "15m"`, func(a *App) { a.IdleTimeout = 15 * time.Minute }},
		{`idle_timeout = "1s"`, func(a *App) { a.IdleTimeout = time.Second }},
		{`queue_timeout = "250ms"`, func(a *App) { a.QueueTimeout = 250 * time.Millisecond }},
		{`user = "alice"`, func(a *App) {}},
		{`user = "1000"`, func(a *App) {}},
		{"[env]\nDJANGO_SETTINGS_MODULE = \"blog.settings\"\n_x1 = \"\"\nPYTHONNOUSERSITE = \"1\"\nLDAP_URI = \"ldap://x\"", func(a *App) {
			a.Env = map[string]string{"DJANGO_SETTINGS_MODULE": "blog.settings", "_x1": "", "PYTHONNOUSERSITE": "1", "LDAP_URI": "ldap://x"}
		}},
		{`env = { A = "1" }`, func(a *App) { a.Env = map[string]string{"A": "1"} }},
		{`env.A = "1"`, func(a *App) { a.Env = map[string]string{"A": "1"} }},
		{"[[static]]\nurl = \"/static\"\ndir = \"~/blog/static\"\n[[static]]\nurl = \"/media/\"\ndir = \"media\"", func(a *App) {
			a.Static = []StaticMount{{URL: "/static/", Dir: "/home/alice/blog/static"}, {URL: "/media/", Dir: appDir + "/media"}}
		}},
		{`static = [{ url = "/s/", dir = "/srv/s" }]`, func(a *App) { a.Static = []StaticMount{{URL: "/s/", Dir: "/srv/s"}} }},
		{"url_prefix = \"/blog\"\n[[static]]\nurl = \"/blog/static/\"\ndir = \"s\"", func(a *App) {
			a.URLPrefix = "/blog"
			a.Static = []StaticMount{{URL: "/blog/static/", Dir: appDir + "/s"}}
		}},
	}
	for _, c := range cases {
		src := c.src
		if !strings.Contains(src, "app =") && !strings.Contains(src, "script =") {
			// Keys must come before any table; app goes first.
			src = baseSrc + src
		}
		got, _, err := ParseAppFile(appPath, []byte(src), alice, Defaults{})
		if err != nil {
			t.Errorf("%s:\nunexpected error:\n%v", c.src, err)
			continue
		}
		want := baseApp()
		c.want(&want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.src, got, want)
		}
	}
}

func TestParseAppFileInvalid(t *testing.T) {
	cases := []struct {
		src  string // on line 1; app on line 2 unless src sets app or script
		key  string
		msg  string // the whole message, or a part of it if it starts with "…"
		line int
	}{
		{`domains = "blog.example.com"`, "domains", `must be an array of host names, like ["blog.example.com", "*.example.com"], got "blog.example.com"`, 1},
		{`domains = [1]`, "domains[0]", `must be a host name, got 1`, 1},
		{`domains = ["a.com", "A.com"]`, "domains[1]", `"A.com" is listed twice`, 1},
		{`domains = ["a.com:8080"]`, "domains[0]", `…has a port; leave it out`, 1},
		{`domains = ["https://a.com"]`, "domains[0]", `…is a URL, not a host name`, 1},
		{`domains = ["a.com."]`, "domains[0]", `"a.com." ends with a dot; leave it out`, 1},
		{`domains = ["*"]`, "domains[0]", `"*": a wildcard is a whole first label, as in "*.example.com"`, 1},
		{`domains = ["a.*.com"]`, "domains[0]", `"a.*.com": a wildcard is a whole first label, as in "*.example.com"`, 1},
		{`domains = ["*a.com"]`, "domains[0]", `…a wildcard is a whole first label`, 1},
		{`reload_trigger = "/etc/passwd"`, "reload_trigger", `…is outside the owner's home`, 1},
		{`reload_trigger = "~/../bob/restart.txt"`, "reload_trigger", `…is outside the owner's home`, 1},
		{`reload_trigger = "~"`, "reload_trigger", `…is a directory; name a file in it`, 1},
		{`reload_trigger = ""`, "reload_trigger", `must be a path, not empty`, 1},
		{`enabled = "no"`, "enabled", `…enabled = false`, 1},
		{`umask = 22`, "umask", `must be three octal digits in quotes, like "027", got 22`, 1},
		{`umask = "028"`, "umask", `"028" is not a umask; use three octal digits in quotes, like "027" (the default) or "022"`, 1},
		{`umask = "1777"`, "umask", `"1777" is not a umask; use three octal digits in quotes, like "027" (the default) or "022"`, 1},
		{`warmup = "/"`, "warmup", `must be an array of URL paths, like ["/", "/healthz"], got "/"`, 1},
		{`warmup = ["healthz"]`, "warmup[0]", `…must be a URL path starting with "/"`, 1},
		{`warmup = ["/a b"]`, "warmup[0]", `…holds a space or a control character; percent-encode it`, 1},
		{`warmup = ["/","/","/","/","/","/","/","/","/","/","/","/","/","/","/","/","/"]`, "warmup", `lists 17 paths; at most 16 (each new worker requests every one before it takes traffic)`, 1},
		{`domains = ["bücher.de"]`, "domains[0]", `…is not ASCII; use the IDNA (punycode) form`, 1},
		{`domains = ["a_b.com"]`, "domains[0]", `…is not a host name`, 1},
		{`domains = ["-a.com"]`, "domains[0]", `…is not a host name`, 1},
		{`domains = ["a..com"]`, "domains[0]", `…is not a host name`, 1},
		{`domains = [""]`, "domains[0]", `…must not be empty`, 1},
		{`domains = ["` + strings.Repeat("a", 64) + `.com"]`, "domains[0]", `…is not a host name`, 1},
		{`domains = ["[::1]"]`, "domains[0]", `…IP address literals are not domains`, 1},
		{`app = "blog.wsgi"`, "app", `must be "module:callable", like "blog.wsgi:application", got "blog.wsgi"`, 1},
		{`app = "blog-x.wsgi:app"`, "app", `…got "blog-x.wsgi:app"`, 1},
		{`app = "blog:"`, "app", `…got "blog:"`, 1},
		{`app = "blog:a:b"`, "app", `…got "blog:a:b"`, 1},
		{`app = 1`, "app", `must be "module:callable", like "blog.wsgi:application", got 1`, 1},
		{"app = \"a:b\"\ncallable = \"x\"", "callable", `goes only with script; with app, write "module:callable"`, 2},
		{"script = \"w.py\"\ncallable = \"1x\"", "callable", `"1x" is not a Python name; use a name like "application" or "create_app"`, 2},
		{"script = \"w.py\"\ncallable = \"\"", "callable", `…is not a Python name`, 2},
		{"script = \"w.py\"\ncallable = \"a.b\"", "callable", `"a.b" is not a Python name; use a name like "application" or "create_app"`, 2},
		{"script = \"\"", "script", `must be a path, not empty`, 1},
		{"script = \"w.py\"\napp = \"a:b\"", "app", `give either app (a module) or script (a file), not both`, 2},
		{"app = \"a:b\"\nscript = \"w.py\"", "script", `give either app (a module) or script (a file), not both`, 2},
		{`directory = "~bob/blog"`, "directory", `"~bob/blog": ~USER is not supported; ~ is the owner's home, so write "~/...", a relative or an absolute path`, 1},
		{`directory = ""`, "directory", `must be a path, not empty`, 1},
		{`directory = ["a"]`, "directory", `must be a path, got an array`, 1},
		{`python = "py thon"`, "python", `"py thon" is not a command name; use a name looked up on PATH, like "python3.12", or a path, like "~/venv/bin/python"`, 1},
		{`python = ""`, "python", `…is not a command name`, 1},
		{`python = "~other/bin/python"`, "python", `…~USER is not supported`, 1},
		{`python_path = "lib"`, "python_path", `must be an array of paths, like ["~/blog/lib"], got "lib"`, 1},
		{`python_path = ["lib", ""]`, "python_path[1]", `must be a path, not empty`, 1},
		{`python_path = ["lib", 2]`, "python_path[1]", `must be a path, got 2`, 1},
		{`url_prefix = "api"`, "url_prefix", `"api" does not start with "/"; use a URL path like "/" or "/blog"`, 1},
		{`url_prefix = "/a//b"`, "url_prefix", `"/a//b" contains an empty segment ("//"); use a URL path like "/" or "/blog"`, 1},
		{`url_prefix = "/a/../b"`, "url_prefix", `"/a/../b" contains a ".." segment; use a URL path like "/" or "/blog"`, 1},
		{`url_prefix = "/./b"`, "url_prefix", `…contains a "." segment`, 1},
		{`url_prefix = "/a b"`, "url_prefix", `"/a b" contains " "; URL paths here use letters, digits, "/" and -._~!$&'()*+,;=:@ (no %-escapes, ? or #); use a URL path like "/" or "/blog"`, 1},
		{`url_prefix = "/a%2F"`, "url_prefix", `…contains "%"`, 1},
		{`url_prefix = "/a?x"`, "url_prefix", `…contains "?"`, 1},
		{`url_prefix = "//"`, "url_prefix", `…contains an empty segment`, 1},
		{`processes = 0`, "processes", `must be an integer from 1 to 256, got 0`, 1},
		{`processes = 257`, "processes", `must be an integer from 1 to 256, got 257`, 1},
		{`processes = "2"`, "processes", `must be an integer from 1 to 256, got "2"`, 1},
		{`processes = 2.0`, "processes", `must be an integer from 1 to 256, got 2.0`, 1},
		{`threads = 0`, "threads", `must be an integer from 1 to 1024, got 0`, 1},
		{`threads = 1025`, "threads", `must be an integer from 1 to 1024, got 1025`, 1},
		{`threads = true`, "threads", `must be an integer from 1 to 1024, got true`, 1},
		{`max_requests = -1`, "max_requests", `must be an integer from 0 (never) to 1000000000, got -1`, 1},
		{`queue_limit = 0`, "queue_limit", `must be an integer from 1 to 1000000, got 0`, 1},
		{`memory_limit = "300MB"`, "memory_limit", `"300MB" is not a size; use a number with KiB, MiB or GiB, like "300MiB" (MB is ambiguous)`, 1},
		{`memory_limit = "1MiB"`, "memory_limit", `must be 0 (no limit) or a size from 16MiB to 1TiB, like "512MiB", got "1MiB"`, 1},
		{`memory_limit = "2TiB"`, "memory_limit", `…got "2TiB"`, 1},
		{`memory_limit = -1`, "memory_limit", `must be 0 (no limit) or a size from 16MiB to 1TiB, like "512MiB", got -1`, 1},
		{`memory_limit = 1.5`, "memory_limit", `…got 1.5`, 1},
		{`https_only = "yes"`, "https_only", `must be true or false, like https_only = true, got "yes"`, 1},
		{`hsts = "includeSubDomains"`, "hsts", `"includeSubDomains" has no max-age, and browsers ignore it without one; use a value like "max-age=63072000; includeSubDomains", or "" for none`, 1},
		{`hsts = "max-age=two years"`, "hsts", `"max-age=two years": max-age must be a number of seconds; use a value like "max-age=63072000; includeSubDomains", or "" for none`, 1},
		{`hsts = "max-age=1\r\nSet-Cookie: x"`, "hsts", `"max-age=1\r\nSet-Cookie: x" has a control or non-ASCII character; use a value like "max-age=63072000; includeSubDomains", or "" for none`, 1},
		{`max_body = "ten"`, "max_body", `"ten" is not a size; use a number with KiB, MiB or GiB, like "300MiB"`, 1},
		{`max_body = "2TiB"`, "max_body", `must be 0 (no limit) or a size from 1B to 1TiB, like "512MiB", got "2TiB"`, 1},
		{`request_timeout = 60`, "request_timeout", `must be 0 (no limit) or a duration from 100ms to 24h, like "30s", got 60 (a number without a unit; write "60s")`, 1},
		{`request_timeout = "60"`, "request_timeout", `"60" is not a duration; use a number with a unit (ms, s, m or h), like "30s"`, 1},
		{`request_timeout = "-1s"`, "request_timeout", `"-1s" is negative; use 0 or a positive duration, like "30s"`, 1},
		{`request_timeout = "25h"`, "request_timeout", `must be 0 (no limit) or a duration from 100ms to 24h, like "30s", got "25h"`, 1},
		{`request_timeout = "50ms"`, "request_timeout", `…got "50ms"`, 1},
		{`graceful_timeout = "0s"`, "graceful_timeout", `must be a duration from 100ms to 1h, like "30s", got "0s"`, 1},
		{`graceful_timeout = 0`, "graceful_timeout", `must be a duration from 100ms to 1h, like "30s", got 0`, 1},
		{`startup_timeout = "2h"`, "startup_timeout", `must be a duration from 1s to 1h, like "30s", got "2h"`, 1},
		{`idle_timeout = "500ms"`, "idle_timeout", `must be 0 (never) or a duration from 1s to 720h, like "30s", got "500ms"`, 1},
		{`queue_timeout = "0"`, "queue_timeout", `must be a duration from 1ms to 1h, like "30s", got "0"`, 1},
		{`queue_timeout = 1979-05-27`, "queue_timeout", `…got a date`, 1},
		{`user = "bob"`, "user", `names "bob", but this app would run as alice, the owner of the file; leave user out (only app files in the admin's admin_dir name a user)`, 1},
		{`user = "no body"`, "user", `"no body" is not a user name; use a name like "alice" or a numeric uid`, 1},
		{`user = 1000`, "user", `must be a user name, got 1000`, 1},
		{`env = "A=1"`, "env", `must be a table of NAME = "value", like [env] with DJANGO_SETTINGS_MODULE = "blog.settings", got a string`, 1},
		{"[env]\nNOTIFY_SOCKET = \"/x\"", "env.NOTIFY_SOCKET", `NOTIFY_SOCKET belongs to systemd's protocol with pyhostd and never reaches the app; use another name`, 2},
		{"[env]\nWATCHDOG_USEC = \"1\"", "env.WATCHDOG_USEC", `…systemd's protocol`, 2},
		{"[env]\nLISTEN_FDS = \"1\"", "env.LISTEN_FDS", `…systemd's protocol`, 2},
		{"[env]\n\"1A\" = \"x\"", "env.1A", `"1A" is not an environment variable name; use letters, digits and _, not starting with a digit`, 2},
		{"[env]\n\"A-B\" = \"x\"", "env.A-B", `…is not an environment variable name`, 2},
		{"[env]\n\"A=B\" = \"x\"", `env."A=B"`, `…is not an environment variable name`, 2},
		{"[env]\nDEBUG = 1", "env.DEBUG", `must be a string, like "1", got 1`, 2},
		{"[env]\nDEBUG = true", "env.DEBUG", `must be a string, like "true", got true`, 2},
		{"[env]\nA = \"a\\u0000b\"", "env.A", `must be a string without NUL characters`, 2},
		{"[env]\nA = [\"x\"]", "env.A", `must be a string, like "value", got an array`, 2},
		{"[env]\nthreads = 4", "env.threads", `threads is an app key, but it is written under [env], which makes it an environment variable; move it above [env]`, 2},
		{`static = "/static/"`, "static", `must be an array of tables: [[static]] with url = "/static/" and dir = "static", got a string`, 1},
		{`static = ["/static/"]`, "static[0]", `must be a table with url and dir, like [[static]] url = "/static/" dir = "static"`, 1},
		{"[[static]]\ndir = \"s\"", "static[0]", `needs url, the URL path it serves, like url = "/static/"`, 1},
		{"[[static]]\nurl = \"/s/\"", "static[0]", `needs dir, the directory it serves, like dir = "~/blog/static"`, 1},
		{"[[static]]\nurl = \"s\"\ndir = \"s\"", "static[0].url", `"s" does not start with "/"; use a URL path like "/static/"`, 2},
		{"[[static]]\nurl = \"/\"\ndir = \"s\"", "static[0].url", `"/" is the whole app (url_prefix "/"), so the app would never be reached; use a path under it, like "/static/"`, 2},
		{"[[static]]\nurl = \"/s/\"\ndir = \"\"", "static[0].dir", `must be a path, not empty`, 3},
		{"[[static]]\nurl = \"/s/\"\ndir = 1", "static[0].dir", `must be a path like "~/blog/static", got 1`, 3},
		{"[[static]]\nurl = \"/s/\"\ndir = \"a\"\n[[static]]\nurl = \"/s\"\ndir = \"b\"", "static[1].url", `"/s" is served by an earlier [[static]] already`, 5},
		{"url_prefix = \"/blog\"\n[[static]]\nurl = \"/static/\"\ndir = \"s\"", "static[0].url", `"/static/" is outside url_prefix "/blog"; use a path under it, like "/blog/static/"`, 3},
		{"url_prefix = \"/blog\"\n[[static]]\nurl = \"/blogx/\"\ndir = \"s\"", "static[0].url", `…is outside url_prefix "/blog"`, 3},
		{"url_prefix = \"/blog\"\n[[static]]\nurl = \"/blog/\"\ndir = \"s\"", "static[0].url", `"/blog/" is the whole app (url_prefix "/blog"), so the app would never be reached; use a path under it, like "/blog/static/"`, 3},
	}
	for _, c := range cases {
		src, line := c.src, c.line
		if !strings.Contains(src, "app =") && !strings.Contains(src, "script =") {
			src = baseSrc[1:] + src
			line++
		}
		_, _, err := ParseAppFile(appPath, []byte(src), alice, Defaults{})
		var es Errors
		if !errors.As(err, &es) {
			t.Errorf("%s:\nerror %v, want Errors", src, err)
			continue
		}
		if len(es) != 1 {
			t.Errorf("%s:\nwant one error, got\n%v", src, err)
			continue
		}
		e := es[0]
		msgOK := e.Msg == c.msg || strings.HasPrefix(c.msg, "…") && strings.Contains(e.Msg, c.msg[len("…"):])
		if e.Key != c.key || !msgOK || e.Line != line || e.File != appPath {
			t.Errorf("%s:\n got %s:%d: [%s] %s\nwant %s:%d: [%s] %s", src, e.File, e.Line, e.Key, e.Msg, appPath, line, c.key, c.msg)
		}
	}
}

func TestParseAppFileUnknownKeys(t *testing.T) {
	cases := []struct {
		src      string
		key, msg string
		line     int
	}{
		{"idle_timout = \"5m\"", "idle_timout", "unknown key (did you mean idle_timeout?)", 2},
		{"Threads = 4", "Threads", "unknown key (did you mean threads? keys are lowercase)", 2},
		{"MEMORY_LIMIT = \"1GiB\"", "MEMORY_LIMIT", "unknown key (did you mean memory_limit? keys are lowercase)", 2},
		{"workers = 4", "workers", "unknown key; valid keys at the top level are " + strings.Join(appKeys, ", "), 2},
		{"[envs]\nA = \"1\"", "envs", "unknown key (did you mean env?)", 2},
		{"[[statics]]\nurl = \"/s/\"", "statics", "unknown key (did you mean static?)", 2},
		{"[[static]]\nurl = \"/s/\"\ndirectory = \"s\"", "static[0].directory", "unknown key here; directory belongs at the top of the file, before the first [table] or [[static]]", 4},
		{"[[static]]\nurl = \"/s/\"\ndir = \"s\"\n[[static]]\nurl = \"/t/\"\ndri = \"t\"", "static[1].dri", "unknown key (did you mean dir?)", 7},
		{"[[static]]\nurl = \"/s/\"\ndir = \"s\"\nmode = 1", "static[0].mode", "unknown key; valid keys here are dir, url", 5},
		{"static = [{url = \"/s/\", dir = \"s\"}, {url = \"/t/\", dri = \"t\"}]", "static[1].dri", "unknown key (did you mean dir?)", 2},
		{"[server]\nport = 80\n[server.tls]\ncert = 1", "server", "unknown key; valid keys at the top level are " + strings.Join(appKeys, ", "), 2},
		{"threads.x = 4", "threads", "must be an integer from 1 to 1024, got a table", 2},
	}
	for _, c := range cases {
		src := baseSrc[1:] + c.src
		_, _, err := ParseAppFile(appPath, []byte(src), alice, Defaults{})
		var es Errors
		if !errors.As(err, &es) || len(es) != 1 {
			t.Errorf("%s:\nwant one error, got\n%v", src, err)
			continue
		}
		if e := es[0]; e.Key != c.key || e.Msg != c.msg || e.Line != c.line {
			t.Errorf("%s:\n got %d: [%s] %s\nwant %d: [%s] %s", src, e.Line, e.Key, e.Msg, c.line, c.key, c.msg)
		}
	}
}

func TestParseAppFileManyErrorsSorted(t *testing.T) {
	src := `threads = 0
domains = ["ok.com", "bad_name.com"]
processes = "2"

[env]
NOTIFY_SOCKET = "x"

[[static]]
url = "static"
dirr = "s"
`
	_, _, err := ParseAppFile(appPath, []byte(src), alice, Defaults{})
	want := appPath + `: give the app to run: app = "module:callable" (like "blog.wsgi:application") or script = "path/to/wsgi.py"
` + appPath + `:1: threads: must be an integer from 1 to 1024, got 0
` + appPath + `:2: domains[1]: "bad_name.com" is not a host name: labels of 1 to 63 letters, digits and "-" (not at either end), separated by dots; use a host name like "blog.example.com" or a wildcard like "*.example.com"
` + appPath + `:3: processes: must be an integer from 1 to 256, got "2"
` + appPath + `:6: env.NOTIFY_SOCKET: NOTIFY_SOCKET belongs to systemd's protocol with pyhostd and never reaches the app; use another name
` + appPath + `:9: static[0].url: "static" does not start with "/"; use a URL path like "/static/"
` + appPath + `:10: static[0].dirr: unknown key (did you mean dir?)`
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

func TestParseAppFileTooManyErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString(baseSrc)
	for i := 0; i < 80; i++ {
		b.WriteString("k")
		b.WriteString(strings.Repeat("x", i))
		b.WriteString(" = 1\n")
	}
	_, _, err := ParseAppFile(appPath, []byte(b.String()), alice, Defaults{})
	var es Errors
	if !errors.As(err, &es) || len(es) != maxErrors+1 {
		t.Fatalf("got %d errors, want %d", len(es), maxErrors+1)
	}
	if last := es[len(es)-1]; last.Msg != "and 30 more problems; fix the ones above first" {
		t.Errorf("last error %q", last)
	}
}

func TestParseAppFileSyntaxErrors(t *testing.T) {
	cases := []struct {
		src  string
		line int
	}{
		{"app = \"a:b\"\nthreads = \n", 2},
		{"app = \"a:b\"\n\n\nthreads = 4\nthreads = 5\n", 5},
		{"app = \"a:b\"\n[env\n", 2},
		{"app = \"a:b\"\n\n[x\n\n", 3},
		{"\xef\xbb\xbfapp = \"a:b\"\n\n[x\n\n", 3},
		{"app = \"a:b\"\ndomains = [\"a\",\n\"b\"\nx = 1", 4},
		{"app = \"a:b\nthreads = 4", 1},
		{"\x00app = 1", 1},
	}
	for _, c := range cases {
		_, _, err := ParseAppFile(appPath, []byte(c.src), alice, Defaults{})
		var es Errors
		if !errors.As(err, &es) || len(es) != 1 {
			t.Errorf("%q: want one error, got %v", c.src, err)
			continue
		}
		if e := es[0]; e.Line != c.line || e.Key != "" || !strings.HasPrefix(e.Msg, "not valid TOML: ") {
			t.Errorf("%q: got %v, want line %d", c.src, e, c.line)
		}
	}
}

func TestParseAppFileLimits(t *testing.T) {
	big := append([]byte(baseSrc), make([]byte, MaxAppFileSize)...)
	_, _, err := ParseAppFile(appPath, big, alice, Defaults{})
	if err == nil || !strings.Contains(err.Error(), "the limit is 256KiB") {
		t.Errorf("huge file: %v", err)
	}
	deep := baseSrc + "x = " + strings.Repeat("[", 40) + strings.Repeat("]", 40)
	_, _, err = ParseAppFile(appPath, []byte(deep), alice, Defaults{})
	if err == nil || !strings.Contains(err.Error(), ":3: keys, tables or arrays are nested more than 32 deep here") {
		t.Errorf("deep file: %v", err)
	}
}

func TestParseAppFileName(t *testing.T) {
	for file, ok := range map[string]bool{
		"blog.toml": true, "my.app-2_x.toml": true, "A.toml": true, "0.toml": true,
		".toml": false, "_x.toml": false, "-x.toml": false, "a b.toml": false, "blog.TOML": false, "blog": false,
		strings.Repeat("a", 64) + ".toml": true, strings.Repeat("a", 65) + ".toml": false,
	} {
		app, _, err := ParseAppFile(appDir+"/"+file, []byte(baseSrc), alice, Defaults{})
		if ok != (err == nil) {
			t.Errorf("%s: error %v", file, err)
		}
		if ok && app.Name != strings.TrimSuffix(file, ".toml") {
			t.Errorf("%s: name %q", file, app.Name)
		}
		var es Errors
		if !ok && (!errors.As(err, &es) || es[0].Line != 0 || es[0].Key != "") {
			t.Errorf("%s: error %v, want one about the file as a whole", file, err)
		}
	}
	if _, _, err := ParseAppFile("blog.toml", []byte(baseSrc), alice, Defaults{}); err == nil {
		t.Error("relative path accepted")
	}
}

func TestParseAppFileOwner(t *testing.T) {
	root := privdrop.Credential{Username: "root", Home: "/root"}
	_, _, err := ParseAppFile(appPath, []byte(baseSrc), root, Defaults{})
	if !errors.Is(err, privdrop.ErrRoot) {
		t.Errorf("root owner: %v, want ErrRoot", err)
	}
	homeless := privdrop.Credential{UID: 1001, GID: 1001, Username: "svc"}
	_, _, err = ParseAppFile(appPath, []byte("directory = \"~/x\""+baseSrc), homeless, Defaults{})
	if err == nil || !strings.Contains(err.Error(), `directory: "~/x": ~ is the owner's home directory, but svc has none; use an absolute path`) {
		t.Errorf("homeless owner: %v", err)
	}
	app, meta, err := ParseAppFile(appPath, []byte("user = \"svc\""+baseSrc), homeless, Defaults{})
	if err != nil || meta.User != "svc" || app.Cred.UID != 1001 {
		t.Errorf("user = owner: %v %+v", err, meta)
	}
}

func TestParseAppFileDefaults(t *testing.T) {
	d := BuiltinDefaults()
	d.Processes, d.Threads, d.MemoryLimit, d.Python, d.RequestTimeout, d.MaxBody = 3, 8, 512<<20, "/usr/bin/python3.12", 0, 0
	d.IdleTimeout, d.MaxRequests, d.QueueLimit, d.QueueTimeout = time.Hour, 500, 10, time.Second
	d.HTTPSOnly, d.HSTS = true, "max-age=300"
	app, _, err := ParseAppFile(appPath, []byte("threads = 2"+baseSrc), alice, d)
	if err != nil {
		t.Fatal(err)
	}
	want := baseApp()
	want.Processes, want.Threads, want.MemoryLimit, want.Python, want.RequestTimeout, want.MaxBody = 3, 2, 512<<20, "/usr/bin/python3.12", 0, 0
	want.IdleTimeout, want.MaxRequests, want.QueueLimit, want.QueueTimeout = time.Hour, 500, 10, time.Second
	want.HTTPSOnly, want.HSTS = true, "max-age=300"
	if !reflect.DeepEqual(app, want) {
		t.Errorf("\n got %+v\nwant %+v", app, want)
	}
}

func TestAppFileMeta(t *testing.T) {
	src := "app = \"a:b\"\ndomains = [\n  \"a.example.com\",\n  \"b.example.com\",\n]\n[[static]]\nurl = \"/s/\"\ndir = \"s\"\n"
	app, meta, err := ParseAppFile(appPath, []byte(src), alice, Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	if meta.Path != appPath || meta.User != "" {
		t.Errorf("meta %+v", meta)
	}
	for key, line := range map[string]int{"app": 1, "domains": 2, "domains[1]": 4, "static[0]": 6, "static[0].dir": 8, "nope": 0} {
		if got := meta.Line(key); got != line {
			t.Errorf("Line(%s) = %d, want %d", key, got, line)
		}
	}
	if app.Domains[1] != "b.example.com" {
		t.Errorf("domains[1] = %q", app.Domains[1])
	}
	e := meta.Errorf("domains[1]", "alice may not claim %s", app.Domains[1])
	if got := e.Error(); got != appPath+":4: domains[1]: alice may not claim b.example.com" {
		t.Errorf("Errorf: %s", got)
	}
	if (AppFileMeta{}).Line("x") != 0 {
		t.Error("zero meta knows a line")
	}
}

func TestAppFileUser(t *testing.T) {
	cases := []struct {
		src, user, err string
	}{
		{`user = "alice"` + baseSrc, "alice", ""},
		{baseSrc + "threads = 0\n[whatever]\n", "", ""},
		{`user = "root"`, "", "user: must not be root"},
		{`user = "0"`, "", "user: must not be root"},
		{`user = 5`, "", "user: must be a user name, got 5"},
		{`user = "a b"`, "", `user: "a b" is not a user name`},
		{`user = ""`, "", `user: "" is not a user name`},
		{`user = `, "", "not valid TOML"},
	}
	for _, c := range cases {
		u, err := AppFileUser("/etc/pyhost/apps.d/x.toml", []byte(c.src))
		if u != c.user || (c.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: got %q, %v; want %q, %q", c.src, u, err, c.user, c.err)
		}
	}
}

func TestLoadAppFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "site.toml")
	if err := os.WriteFile(f, []byte("script = \"wsgi.py\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	app, err := LoadAppFile(f, alice, Defaults{})
	if err != nil || app.Name != "site" || app.Script != filepath.Join(dir, "wsgi.py") || app.Directory != dir {
		t.Errorf("got %+v, %v", app, err)
	}
	if _, err := LoadAppFile(filepath.Join(dir, "missing.toml"), alice, Defaults{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// [env] may not steer where Python or the loader finds code (issue 9
// review, item 3): those paths would escape the trust check.
func TestEnvSteering(t *testing.T) {
	for _, name := range []string{"PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONPLATLIBDIR", "PYTHONPYCACHEPREFIX",
		"PYTHONSTARTUP", "PYTHONINSPECT", "PYTHONEXECUTABLE", "HOME", "GCONV_PATH",
		"LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "LD_BIND_NOW"} {
		if steering(name) == "" {
			t.Errorf("%s is allowed", name)
		}
	}
	for _, name := range []string{"PATH", "PYTHONNOUSERSITE", "PYTHONSAFEPATH", "PYTHONUNBUFFERED", "PYTHONHASHSEED",
		"PYTHONDONTWRITEBYTECODE", "LDAP_URI", "LD", "pythonpath", "DJANGO_SETTINGS_MODULE"} {
		if why := steering(name); why != "" {
			t.Errorf("%s is refused: %s", name, why)
		}
	}
	if !strings.Contains(steering("PYTHONPATH"), "python_path") {
		t.Errorf("PYTHONPATH's refusal does not point at python_path: %s", steering("PYTHONPATH"))
	}
}
