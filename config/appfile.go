package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/pyhost/pyhost/privdrop"
)

// MaxAppFileSize bounds an app file; a real one is a few hundred bytes.
// App files come from users and the daemon parses them: the bound keeps
// a hostile one cheap.
const MaxAppFileSize = 256 * KiB

// DefaultPython is the interpreter of an app that names none: looked up
// on the worker's PATH when it starts.
const DefaultPython = "python3"

// Defaults are what an app file starts from: the built-in values, or the
// admin file's [defaults] over them. It is an App of which only Python
// and the tunables (tunables.go) are set; ParseAppFile copies it and
// reads the file over it.
//
// The zero Defaults stands for BuiltinDefaults(). Any other Defaults is
// taken as complete, since 0 is a valid setting for some keys (MaxBody
// 0 is no limit); build one from BuiltinDefaults() and change fields.
type Defaults struct{ App }

// BuiltinDefaults are the defaults when the admin sets none: each
// tunable's own, and python3.
func BuiltinDefaults() Defaults {
	d := Defaults{App: App{Python: DefaultPython}}
	for _, t := range tunables {
		t.setDefault(&d.App)
	}
	return d
}

// isZero reports whether d is the zero Defaults, which stands for
// BuiltinDefaults().
func (d Defaults) isZero() bool { return reflect.ValueOf(d).IsZero() }

// Valid ranges of the tunable keys: one per key, the same for app
// files, [defaults], serve's flags (tunables.go) and App.Validate. A
// floor is the smallest value that still does what the key is for, low
// enough for a developer or a test to exercise it quickly.
var (
	// A Python app needs a worker and a thread to answer at all; above
	// 256 workers, or 1024 threads in one, a host is better served by
	// a second app (the proxy's one queue per app, the GIL).
	processesRange = intRange{lo: 1, hi: 256}
	threadsRange   = intRange{lo: 1, hi: 1024}
	// 0: never; a worker recycled after every request is legitimate
	// (a leaking app under test).
	maxRequestsRange = intRange{lo: 0, hi: 1_000_000_000, zero: "never"}
	// One waiting request is the least a queue can hold.
	queueLimitRange = intRange{lo: 1, hi: 1_000_000}
	// A Python worker's own RSS is about 10 MiB before it imports
	// anything: below 16 MiB every worker would be recycled at once.
	memoryLimitRange = sizeRange{lo: 16 * MiB, hi: TiB, zero: "no limit"}
	// A 1-byte limit is strange but means what it says (no body).
	maxBodyRange = sizeRange{lo: 1, hi: TiB, zero: "no limit"}
	// The worker's silence before its response head or between two
	// chunks: 100 ms is still longer than a healthy app's pauses (a GC
	// cycle, a CPU-capped app waiting for its next period), and short
	// enough to test timeouts quickly (TestFaultTimeoutRecyclesDoNotCrash
	// runs 300 ms); below it healthy requests would be cut.
	requestTimeoutRange = durRange{lo: 100 * time.Millisecond, hi: 24 * time.Hour, zero: "no limit"}
	// How long a draining worker may finish its requests: 100 ms lets a
	// short request end and a test stop workers quickly; below it a
	// drain is a kill.
	gracefulTimeoutRange = durRange{lo: 100 * time.Millisecond, hi: time.Hour}
	// An interpreter takes tens of milliseconds to start before it
	// imports anything; under 1 s a real app would fail to start on any
	// busy machine, and no test needs less.
	startupTimeoutRange = durRange{lo: time.Second, hi: time.Hour}
	// Idleness is measured every PYHOST_CHECK_INTERVAL (1 s): a shorter
	// idle_timeout could not be told apart from 1 s.
	idleTimeoutRange = durRange{lo: time.Second, hi: 30 * 24 * time.Hour, zero: "never"}
	// A request may be refused almost at once when no thread is free
	// (a load shedder's choice); 0 would refuse every request.
	queueTimeoutRange = durRange{lo: time.Millisecond, hi: time.Hour}
)

// rawTunables are the keys [defaults] shares with app files: python
// and a field per row of the tunables table (tunables.go), which finds
// its field by the toml tag.
type rawTunables struct {
	Python          value `toml:"python"`
	Processes       value `toml:"processes"`
	Threads         value `toml:"threads"`
	MemoryLimit     value `toml:"memory_limit"`
	MaxRequests     value `toml:"max_requests"`
	MaxBody         value `toml:"max_body"`
	QueueLimit      value `toml:"queue_limit"`
	RequestTimeout  value `toml:"request_timeout"`
	GracefulTimeout value `toml:"graceful_timeout"`
	StartupTimeout  value `toml:"startup_timeout"`
	IdleTimeout     value `toml:"idle_timeout"`
	QueueTimeout    value `toml:"queue_timeout"`
	HTTPSOnly       value `toml:"https_only"`
	HSTS            value `toml:"hsts"`
	// The containment keys (issue 14), in limits.go.
	MemoryMax  value `toml:"memory_max"`
	MemoryHigh value `toml:"memory_high"`
	CPUWeight  value `toml:"cpu_weight"`
	CPUMax     value `toml:"cpu_max"`
	TasksMax   value `toml:"tasks_max"`
	IOWeight   value `toml:"io_weight"`
}

// rawAppFile mirrors an app file.
type rawAppFile struct {
	rawTunables
	Domains    value `toml:"domains"`
	App        value `toml:"app"`
	Script     value `toml:"script"`
	Callable   value `toml:"callable"`
	Directory  value `toml:"directory"`
	PythonPath value `toml:"python_path"`
	URLPrefix  value `toml:"url_prefix"`
	User       value `toml:"user"`
	// ReloadTrigger names a file whose touch rolls the app (D2).
	ReloadTrigger value `toml:"reload_trigger"`
	// Enabled = false keeps the app stopped across restarts (D5).
	Enabled value `toml:"enabled"`
	// Warmup lists the paths a new worker answers before traffic (D3).
	Warmup value `toml:"warmup"`
	// Umask is the workers' file-creation mask, like "027" (D6).
	Umask value `toml:"umask"`
	// Sandbox = false runs the app without its sandbox (C5), if allowed.
	Sandbox value          `toml:"sandbox"`
	Env     toml.Primitive `toml:"env"`
	Static  toml.Primitive `toml:"static"`
}

type rawStatic struct {
	URL value `toml:"url"`
	Dir value `toml:"dir"`
}

var (
	appKeys      = tomlKeys(rawAppFile{})
	staticKeys   = tomlKeys(rawStatic{})
	tunableKeys  = tomlKeys(rawTunables{})
	appFileWhere = "at the top of the file, before the first [table] or [[static]]"
)

var appSchema = schema{
	known: func(parent []string) []string {
		switch {
		case len(parent) == 0:
			return appKeys
		case len(parent) == 1 && parent[0] == "static":
			return staticKeys
		}
		return nil
	},
	home: func(name string) string {
		switch {
		case contains(appKeys, name):
			return appFileWhere
		case contains(staticKeys, name):
			return "in a [[static]] table"
		}
		return ""
	},
}

// systemdVars are the variables of systemd's protocol with pyhostd; a
// worker never sees them (privdrop.CleanEnv strips them), so setting one
// is refused rather than silently dropped.
var systemdVars = []string{"NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_PID", "WATCHDOG_USEC"}

// steeringVars are the environment variables that decide where Python,
// or the C library and dynamic loader under it, finds code to run before
// the app's own paths come in. Set in [env], one would put a directory
// on sys.path, or a library in the process, that the trust check (U4)
// never saw, such as a /tmp directory where another user could plant
// code that then runs as the owner. Each is refused, with what to do
// instead; so is every LD_ variable (the dynamic loader's: LD_PRELOAD,
// LD_LIBRARY_PATH, LD_AUDIT, …), see steering. Variables that only turn
// something off or up (PYTHONNOUSERSITE, PYTHONSAFEPATH,
// PYTHONDONTWRITEBYTECODE, PYTHONUNBUFFERED, PYTHONHASHSEED, PYTHONUTF8,
// PYTHONWARNINGS, PYTHONBREAKPOINT, which import only from the checked
// sys.path…) and PATH (what the app's own subprocesses run, not what
// Python loads) are the app's own business.
var steeringVars = map[string]string{
	"PYTHONPATH":          "use python_path, whose directories are checked as the app's own",
	"PYTHONHOME":          "set python to the interpreter you want (a virtualenv's python finds its own prefix)",
	"PYTHONUSERBASE":      "Python's user site is ~/.local, which is checked as the app's own",
	"PYTHONPLATLIBDIR":    "it moves where Python finds its standard library; remove it",
	"PYTHONPYCACHEPREFIX": "Python would load compiled modules from that directory; remove it",
	"PYTHONSTARTUP":       "it runs a file in interactive sessions only, and a worker has none; remove it",
	"PYTHONINSPECT":       "it starts an interactive prompt after the program, and a worker has none; remove it",
	"PYTHONEXECUTABLE":    "set python to the interpreter you want",
	"HOME":                "Python finds the user site (~/.local) in the owner's home; point your library at a variable of its own",
	"GCONV_PATH":          "the C library loads character-conversion modules from there; remove it",
}

// steering says why name may not be set in [env] ("" when it may).
func steering(name string) string {
	if why, ok := steeringVars[name]; ok {
		return why
	}
	if strings.HasPrefix(name, "LD_") {
		return "the dynamic loader loads libraries by it; ask the admin to install the library system-wide (/etc/ld.so.conf.d), or link it with an rpath"
	}
	return ""
}

// AppFileMeta is what an app file says that is not a runtime setting of
// the app, and where it says things, for the checks that come after
// parsing (trust, domain policy, user limits) to report problems in the
// same form, at the right line.
type AppFileMeta struct {
	// Path is the app file, as given to ParseAppFile.
	Path string
	// User is the file's `user` key, "" when absent. Only app files in
	// the admin's admin_dir may (and must) name one; ParseAppFile refuses
	// a user that is not the owner it was given, so the caller resolves
	// it first (AppFileUser).
	User  string
	lines *keyLines
}

// Line is the line where key ("domains[1]", "static[0].dir") or, failing
// that, its nearest enclosing key is written; 0 when unknown.
func (m AppFileMeta) Line(key string) int { return m.lines.line(key) }

// Errorf is a problem with key in this file, located like the parser's
// own: `return config.Errors{meta.Errorf("domains[1]", "...")}`.
func (m AppFileMeta) Errorf(key, format string, args ...any) *Error {
	return &Error{File: m.Path, Line: m.Line(key), Key: key, Msg: fmt.Sprintf(format, args...)}
}

// LoadAppFile reads and parses the app file at path, for owner. It is
// for callers that may read the file with their own rights (express
// mode, tests); the daemon reads app files with the owner's rights and
// calls ParseAppFile.
func LoadAppFile(path string, owner privdrop.Credential, d Defaults) (App, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return App{}, fmt.Errorf("app file %s: %w", path, err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return App{}, fmt.Errorf("read app file: %w", err)
	}
	app, _, err := ParseAppFile(abs, data, owner, d)
	return app, err
}

// ParseAppFile builds the App that the app file at path, with content
// data, describes when it runs as owner, with defaults d (the zero
// Defaults: the built-in ones). It is a pure function: it reads no file
// and checks no path for existence or trust; that comes later, with the
// owner's rights.
//
// path must be absolute; relative paths in the file are relative to its
// directory, "~" is owner.Home, script is relative to directory, and the
// app's name is the file's name without ".toml". Every problem found is
// returned in one Errors; a returned App has passed Validate.
func ParseAppFile(path string, data []byte, owner privdrop.Credential, d Defaults) (App, AppFileMeta, error) {
	if !filepath.IsAbs(path) {
		return App{}, AppFileMeta{}, fmt.Errorf("app file path %q is not absolute", path)
	}
	if d.isZero() {
		d = BuiltinDefaults()
	}
	var raw rawAppFile
	c, parsed := decode(path, data, MaxAppFileSize, &raw, appSchema)
	meta := AppFileMeta{Path: path, lines: c.lines}
	name, nameProblem := appName(path)
	if nameProblem != "" {
		c.addError(&Error{Msg: nameProblem})
	}
	if !parsed {
		return App{}, meta, c.err()
	}
	c.unknownKeys()

	b := appBuilder{checker: c, owner: owner, fileDir: filepath.Dir(path)}
	app := b.build(&raw, d)
	app.Name = name
	app.File = path
	if user, ok := c.str(raw.User, keyPath{}.key("user"), "a user name"); ok {
		switch {
		case !validUserName(user):
			c.add("user", "%q is not a user name; use a name like \"alice\" or a numeric uid", user)
		case user != owner.Username && user != strconv.FormatUint(uint64(owner.UID), 10):
			c.add("user", "names %q, but this app would run as %s, the owner of the file; leave user out (only app files in the admin's admin_dir name a user)", user, owner.Username)
		default:
			meta.User = user
		}
	}
	c.undecodedKeys()
	if owner.IsRoot() {
		key := ""
		if raw.User.set {
			key = "user"
		}
		c.addError(&Error{Line: c.lines.line(key), Key: key, Err: privdrop.ErrRoot,
			Msg: "this app would run as root; apps run as an unprivileged user (the file's owner, or the user an admin_dir file names)"})
	}
	if err := c.err(); err != nil {
		return App{}, meta, err
	}
	if err := app.Validate(); err != nil {
		// A bug: every check Validate makes was made above, with a
		// better message.
		return App{}, meta, Errors{{File: path, Msg: err.Error(), Err: err}}
	}
	return app, meta, nil
}

// AppFileUser reads only the `user` key of an app file (for admin_dir
// files, whose app runs as that user), so the caller can resolve the
// user and then call ParseAppFile with its credential. It is "" when the
// file names none; the error is Errors for a file that is not TOML or a
// user that is not a user name. Other keys are not checked.
func AppFileUser(path string, data []byte) (string, error) {
	var raw struct {
		User value `toml:"user"`
	}
	c, ok := decode(path, data, MaxAppFileSize, &raw, schema{known: func([]string) []string { return nil }, home: func(string) string { return "" }})
	if !ok {
		return "", c.err()
	}
	user, ok := c.str(raw.User, keyPath{}.key("user"), "a user name")
	switch {
	case ok && !validUserName(user):
		c.add("user", "%q is not a user name; use a name like \"alice\" or a numeric uid", user)
	case ok && (user == "root" || user == "0"):
		c.add("user", "must not be root; apps run as an unprivileged user")
	}
	if err := c.err(); err != nil {
		return "", err
	}
	return user, nil
}

// appName is the app's name from its file name, or a problem.
func appName(file string) (string, string) {
	base := filepath.Base(file)
	if !strings.HasSuffix(base, ".toml") {
		return "", fmt.Sprintf("app files are named APP.toml; %q does not end in .toml", base)
	}
	name := strings.TrimSuffix(base, ".toml")
	if !validAppName(name) {
		return "", fmt.Sprintf("the app's name %q (from the file name) must be 1 to 64 letters, digits, \".\", \"_\" or \"-\", starting with a letter or digit", name)
	}
	return name, ""
}

func validAppName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// validUserName accepts what useradd and most NSS sources accept, and
// numeric uids.
func validUserName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' ||
			i > 0 && (c == '.' || c == '-') || i > 0 && i == len(s)-1 && c == '$'
		if !ok {
			return false
		}
	}
	return true
}

// maxHSTS bounds hsts: the header's longest sensible value is well under.
const maxHSTS = 256

// hstsProblem says what is wrong with a Strict-Transport-Security value
// (RFC 6797 §6.1), "" when nothing: it is sent verbatim, so it must be
// one header line of visible ASCII, and browsers ignore a value without
// max-age (or one whose max-age is no number).
func hstsProblem(s string) string {
	like := `use a value like "max-age=63072000; includeSubDomains", or "" for none`
	if s == "" {
		return ""
	}
	if len(s) > maxHSTS {
		return fmt.Sprintf("is %d characters, at most %d; %s", len(s), maxHSTS, like)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c >= 0x7f {
			return fmt.Sprintf("%q has a control or non-ASCII character; %s", s, like)
		}
	}
	for _, d := range strings.Split(s, ";") {
		name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
		if !strings.EqualFold(strings.TrimSpace(name), "max-age") {
			continue
		}
		val = strings.Trim(strings.TrimSpace(val), `"`)
		if _, err := strconv.ParseUint(val, 10, 63); err != nil {
			return fmt.Sprintf("%q: max-age must be a number of seconds; %s", s, like)
		}
		return ""
	}
	return fmt.Sprintf("%q has no max-age, and browsers ignore it without one; %s", s, like)
}

type appBuilder struct {
	*checker
	owner   privdrop.Credential
	fileDir string
}

// resolve applies the app file's path rules to s (at key p), relative to
// base: "~" is the owner's home, a relative path is relative to base.
func (b *appBuilder) resolve(s string, p keyPath, base string) (string, bool) {
	switch {
	case s == "":
		b.add(p.String(), "must be a path, not empty")
		return "", false
	case s == "~" || strings.HasPrefix(s, "~/"):
		if !filepath.IsAbs(b.owner.Home) {
			b.add(p.String(), "%q: ~ is the owner's home directory, but %s has none; use an absolute path", s, b.owner.Username)
			return "", false
		}
		return filepath.Join(b.owner.Home, s[1:]), true
	case strings.HasPrefix(s, "~"):
		b.add(p.String(), "%q: ~USER is not supported; ~ is the owner's home, so write \"~/...\", a relative or an absolute path", s)
		return "", false
	case filepath.IsAbs(s):
		return filepath.Clean(s), true
	}
	return filepath.Join(base, s), true
}

func (b *appBuilder) build(r *rawAppFile, d Defaults) App {
	root := keyPath{}
	app := d.App
	b.readTunables(&r.rawTunables, root, &app)
	app.Cred = b.owner
	app.Directory = b.fileDir
	app.URLPrefix = "/"
	if on, ok := b.boolean(r.Sandbox, root.key("sandbox"), "sandbox = false"); ok {
		app.Unsandboxed = !on
	}

	if s, ok := b.str(r.Directory, root.key("directory"), "a path"); ok {
		if dir, ok := b.resolve(s, root.key("directory"), b.fileDir); ok {
			app.Directory = dir
		}
	}
	b.target(r, &app)

	if s, ok := b.str(r.Python, root.key("python"), `a command name like "python3" or a path like "~/venv/bin/python"`); ok {
		switch {
		case strings.ContainsRune(s, '/') || strings.HasPrefix(s, "~"):
			if py, ok := b.resolve(s, root.key("python"), b.fileDir); ok {
				app.Python = py
			}
		case !validCommand(s):
			b.add("python", "%q is not a command name; use a name looked up on PATH, like \"python3.12\", or a path, like \"~/venv/bin/python\"", s)
		default:
			app.Python = s
		}
	}
	b.each(r.PythonPath, root.key("python_path"), "paths", "a path", `["~/blog/lib"]`, func(s string, at keyPath) {
		if dir, ok := b.resolve(s, at, b.fileDir); ok {
			app.PythonPath = append(app.PythonPath, dir)
		}
	})
	if s, ok := b.str(r.URLPrefix, root.key("url_prefix"), `a URL path like "/" or "/blog"`); ok {
		if prefix, problem := cleanURLPath(s); problem != "" {
			b.add("url_prefix", "%s; use a URL path like \"/\" or \"/blog\"", problem)
		} else {
			app.URLPrefix = prefix
		}
	}
	app.Domains = b.domains(r.Domains, root.key("domains"))
	app.Env = b.env(r.Env)
	app.Static = b.static(r.Static, app.URLPrefix)
	if s, ok := b.str(r.ReloadTrigger, root.key("reload_trigger"), `a path like "~/blog/tmp/restart.txt"`); ok {
		if p, ok := b.resolve(s, root.key("reload_trigger"), b.fileDir); ok {
			if problem := triggerProblem(p, b.owner.Home, app.Directory, b.fileDir); problem != "" {
				b.add("reload_trigger", "%q %s", s, problem)
			} else {
				app.ReloadTrigger = p
			}
		}
	}
	if on, ok := b.boolean(r.Enabled, root.key("enabled"), "enabled = false"); ok {
		app.Disabled = !on
	}
	if s, ok := b.str(r.Umask, root.key("umask"), `three octal digits in quotes, like "027"`); ok {
		if _, ok := parseUmask(s); !ok {
			b.add("umask", "%q is not a umask; use three octal digits in quotes, like \"027\" (the default) or \"022\"", s)
		} else {
			app.Umask = s
		}
	}
	n := b.each(r.Warmup, root.key("warmup"), "URL paths", "a URL path", `["/", "/healthz"]`, func(s string, at keyPath) {
		if problem := WarmupPathProblem(s); problem != "" {
			b.add(at.String(), "%q %s", s, problem)
			return
		}
		app.Warmup = append(app.Warmup, s)
	})
	if n > MaxWarmupPaths {
		b.add("warmup", "lists %d paths; at most %d (each new worker requests every one before it takes traffic)", n, MaxWarmupPaths)
	}
	b.checkTasks(app, r.TasksMax.set)
	return app
}

// MaxWarmupPaths bounds warmup: every worker start waits for each path
// in turn, within startup_timeout.
const MaxWarmupPaths = 16

// WarmupPathProblem says what is wrong with a warm-up path, or "": it is
// requested as the path of a GET, so it starts with "/" and holds no
// control characters or spaces (a query string is fine).
func WarmupPathProblem(s string) string {
	if !strings.HasPrefix(s, "/") {
		return `must be a URL path starting with "/", like "/" or "/healthz"`
	}
	if len(s) > 2048 {
		return "is over 2048 bytes"
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return "holds a space or a control character; percent-encode it"
		}
	}
	return ""
}

// triggerProblem says what is wrong with a reload_trigger path, or "".
// It must lie inside the owner's home, the app's directory or the app
// file's directory: the daemon watches it as root (though it judges it
// with the owner's rights), so it stays among the owner's own files, and
// a trigger is a file, not one of those directories.
func triggerProblem(p, home, dir, fileDir string) string {
	inside := func(root string) bool {
		if !filepath.IsAbs(root) {
			return false
		}
		rel, err := filepath.Rel(root, p)
		return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../")
	}
	for _, root := range []string{home, dir, fileDir} {
		if p == filepath.Clean(root) && root != "" {
			return "is a directory; name a file in it, like \"~/blog/tmp/restart.txt\""
		}
	}
	if !inside(home) && !inside(dir) && !inside(fileDir) {
		return "is outside the owner's home, the app's directory and the app file's directory; name a file of the app's, like \"~/blog/tmp/restart.txt\""
	}
	return ""
}

// target sets Module and Callable, or Script and Callable.
func (b *appBuilder) target(r *rawAppFile, app *App) {
	appS, hasApp := b.str(r.App, keyPath{}.key("app"), `"module:callable", like "blog.wsgi:application"`)
	script, hasScript := b.str(r.Script, keyPath{}.key("script"), `a path, like "wsgi.py"`)
	callable, hasCallable := b.str(r.Callable, keyPath{}.key("callable"), `a Python name, like "application"`)
	switch {
	case r.App.set && r.Script.set:
		// Blame whichever comes second.
		key := "script"
		if b.lines.line("app") > b.lines.line("script") {
			key = "app"
		}
		b.add(key, "give either app (a module) or script (a file), not both")
		return
	case !r.App.set && !r.Script.set:
		b.addError(&Error{Msg: `give the app to run: app = "module:callable" (like "blog.wsgi:application") or script = "path/to/wsgi.py"`})
		return
	}
	if hasApp {
		mod, fn, found := strings.Cut(appS, ":")
		switch {
		case !found || !validModule(mod) || !validModule(fn):
			b.add("app", `must be "module:callable", like "blog.wsgi:application", got %q`, appS)
		default:
			app.Module, app.Callable = mod, fn
		}
		if r.Callable.set {
			b.add("callable", `goes only with script; with app, write "module:callable"`)
		}
		return
	}
	if hasScript {
		if s, ok := b.resolve(script, keyPath{}.key("script"), app.Directory); ok {
			app.Script = s
		}
	}
	if hasCallable {
		// A plain name: the worker looks it up in the script's globals.
		if !validModule(callable) || strings.Contains(callable, ".") {
			b.add("callable", "%q is not a Python name; use a name like \"application\" or \"create_app\"", callable)
		} else {
			app.Callable = callable
		}
	}
}

// validCommand is a command name for PATH lookup: no blanks, no slash.
func validCommand(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._+-", c) >= 0) {
			return false
		}
	}
	return true
}

func (b *appBuilder) domains(v value, p keyPath) []string {
	return b.domainList(v, p, "host names", "a host name", `["blog.example.com", "*.example.com"]`)
}

// domainList reads an array of domain patterns at p, normalized, in
// order, reporting bad and repeated ones.
func (c *checker) domainList(v value, p keyPath, want, wantOne, example string) []string {
	var out []string
	seen := map[string]bool{}
	c.each(v, p, want, wantOne, example, func(s string, at keyPath) {
		d, problem := normalizeDomain(s)
		switch {
		case problem != "":
			c.add(at.String(), "%s", problem)
		case seen[d]:
			c.add(at.String(), "%q is listed twice", s)
		default:
			seen[d] = true
			out = append(out, d)
		}
	})
	return out
}

func (b *appBuilder) env(prim toml.Primitive) map[string]string {
	p := keyPath{}.key("env")
	var raw map[string]value
	if !b.table(prim, p, &raw, `a table of NAME = "value", like [env] with DJANGO_SETTINGS_MODULE = "blog.settings"`) || len(raw) == 0 {
		return nil
	}
	names := make([]string, 0, len(raw))
	for k := range raw {
		names = append(names, k)
	}
	sort.Strings(names)
	env := map[string]string{}
	for _, name := range names {
		k := p.key(name)
		switch {
		case contains(appKeys, name):
			b.add(k.String(), "%s is an app key, but it is written under [env], which makes it an environment variable; move it above [env]", name)
			continue
		case contains(systemdVars, name):
			b.add(k.String(), "%s belongs to systemd's protocol with pyhostd and never reaches the app; use another name", name)
			continue
		case !validEnvName(name):
			b.add(k.String(), "%q is not an environment variable name; use letters, digits and _, not starting with a digit", name)
			continue
		case steering(name) != "":
			b.add(k.String(), "%s would decide where code is loaded from, unchecked (another user could plant code there); %s", name, steering(name))
			continue
		}
		v := raw[name]
		s, isStr := v.v.(string)
		if !isStr {
			like := `"value"`
			switch v.v.(type) {
			case int64, float64, bool:
				like = strconv.Quote(describe(v.v))
			}
			b.add(k.String(), "must be a string, like %s, got %s", like, describe(v.v))
			continue
		}
		if strings.IndexByte(s, 0) >= 0 {
			b.add(k.String(), "must be a string without NUL characters")
			continue
		}
		env[name] = s
	}
	return env
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func (b *appBuilder) static(prim toml.Primitive, prefix string) []StaticMount {
	p := keyPath{}.key("static")
	var elems []toml.Primitive
	if !b.table(prim, p, &elems, `an array of tables: [[static]] with url = "/static/" and dir = "static"`) {
		return nil
	}
	var out []StaticMount
	seen := map[string]bool{}
	for i, e := range elems {
		ep := p.index(i)
		var r rawStatic
		if !b.table(e, ep, &r, `a table with url and dir, like [[static]] url = "/static/" dir = "static"`) {
			continue
		}
		// A misspelt key was reported already; "needs url" would say it
		// twice.
		typo := b.reportedIn(ep)
		if !r.URL.set && !typo {
			b.add(ep.String(), `needs url, the URL path it serves, like url = "/static/"`)
		}
		if !r.Dir.set && !typo {
			b.add(ep.String(), `needs dir, the directory it serves, like dir = "~/blog/static"`)
		}
		m := StaticMount{}
		urlOK, dirOK := false, false
		if s, ok := b.str(r.URL, ep.key("url"), `a URL path like "/static/"`); ok {
			u, problem := cleanURLPath(s)
			switch {
			case problem != "":
				b.add(ep.key("url").String(), "%s; use a URL path like \"/static/\"", problem)
			case prefix != "/" && u != prefix && !strings.HasPrefix(u, prefix+"/"):
				b.add(ep.key("url").String(), "%q is outside url_prefix %q; use a path under it, like %q", s, prefix, prefix+"/static/")
			case u == prefix:
				b.add(ep.key("url").String(), "%q is the whole app (url_prefix %q), so the app would never be reached; use a path under it, like %q", s, prefix, strings.TrimSuffix(prefix, "/")+"/static/")
			case seen[u]:
				b.add(ep.key("url").String(), "%q is served by an earlier [[static]] already", s)
			default:
				seen[u] = true
				m.URL, urlOK = u+"/", true
			}
		}
		if s, ok := b.str(r.Dir, ep.key("dir"), `a path like "~/blog/static"`); ok {
			if dir, ok := b.resolve(s, ep.key("dir"), b.fileDir); ok {
				m.Dir, dirOK = dir, true
			}
		}
		if urlOK && dirOK {
			out = append(out, m)
		}
	}
	return out
}

// cleanURLPath checks a url_prefix or static url and returns it without
// a trailing slash ("/" stays "/"), or what is wrong with it.
func cleanURLPath(s string) (string, string) {
	if !strings.HasPrefix(s, "/") {
		return "", fmt.Sprintf("%q does not start with \"/\"", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/-._~!$&'()*+,;=:@", c) >= 0) {
			return "", fmt.Sprintf("%q contains %q; URL paths here use letters, digits, \"/\" and -._~!$&'()*+,;=:@ (no %%-escapes, ? or #)", s, string(rune(c)))
		}
	}
	trimmed := strings.TrimSuffix(s, "/")
	if trimmed == "" {
		return "/", ""
	}
	for _, part := range strings.Split(trimmed[1:], "/") {
		switch part {
		case "":
			return "", fmt.Sprintf("%q contains an empty segment (\"//\")", s)
		case ".", "..":
			return "", fmt.Sprintf("%q contains a %q segment", s, part)
		}
	}
	return trimmed, ""
}

// normalizeDomain lowercases a domain pattern ("blog.example.com",
// "*.example.com") and checks its syntax, or says what is wrong.
func normalizeDomain(s string) (string, string) {
	like := `use a host name like "blog.example.com" or a wildcard like "*.example.com"`
	d := strings.ToLower(s)
	switch {
	case d == "":
		return "", "must not be empty; " + like
	case strings.Contains(d, "://") || strings.Contains(d, "/"):
		return "", fmt.Sprintf("%q is a URL, not a host name; %s", s, like)
	case strings.HasPrefix(d, "["):
		return "", fmt.Sprintf("%q: IP address literals are not domains; %s", s, like)
	case strings.Contains(d, ":"):
		return "", fmt.Sprintf("%q has a port; leave it out (routing ignores the port): %s", s, like)
	case strings.HasSuffix(d, "."):
		return "", fmt.Sprintf("%q ends with a dot; leave it out", s)
	}
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			return "", fmt.Sprintf("%q is not ASCII; use the IDNA (punycode) form of an international name, like \"xn--bcher-kva.example\"", s)
		}
	}
	host := d
	if strings.HasPrefix(d, "*.") {
		host = d[2:]
	}
	if strings.Contains(host, "*") {
		return "", fmt.Sprintf("%q: a wildcard is a whole first label, as in \"*.example.com\"", s)
	}
	if !validHostname(host) {
		return "", fmt.Sprintf("%q is not a host name: labels of 1 to 63 letters, digits and \"-\" (not at either end), separated by dots; %s", s, like)
	}
	return d, ""
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
