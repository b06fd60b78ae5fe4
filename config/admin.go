package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pyhost/pyhost/privdrop"
)

// DefaultAdminFile is where system mode reads its admin file.
const DefaultAdminFile = "/etc/pyhost/pyhost.toml"

// MaxAdminFileSize bounds the admin file.
const MaxAdminFileSize = 4 * MiB

// Admin is the admin file, /etc/pyhost/pyhost.toml, resolved: every key
// has its value or its default, paths are absolute, addresses checked.
// It says nothing yet about policy (may alice claim this domain); that is
// decided against it later.
type Admin struct {
	// Path is the admin file, as given to ParseAdmin.
	Path     string
	Proxy    Proxy
	TLS      []TLSCert
	Daemon   Daemon
	Apps     AppDirs
	Defaults Defaults // complete: BuiltinDefaults() under [defaults]
	// Users are the users who may deploy apps, by name. Nil when none
	// are listed: then nobody may.
	Users map[string]UserPolicy

	lines *keyLines // where the file spells each key, for Errorf
}

// Errorf is a problem with key ("proxy.user", "daemon.metrics_listen",
// `users."j.doe"`) of this admin file, found after parsing (a user that
// does not exist, a setting this version does not act on), located as
// the parser locates its own: on the line of key, or of its nearest
// enclosing key the file spells out; Line 0 when the file spells out
// none (the zero Admin knows no lines).
func (a Admin) Errorf(key, format string, args ...any) *Error {
	return &Error{File: a.Path, Line: a.lines.line(key), Key: key, Msg: fmt.Sprintf(format, args...)}
}

// UserError is err, from resolving the user of [users.NAME] (no such
// user, or root), as a problem of that table: see LookupError.
func (a Admin) UserError(name string, err error) *Error {
	e := a.LookupError(keyPath{}.key("users").key(name).String(), name, err)
	if unknownUser(err) {
		e.Msg += "; list users by their login name, or remove the table"
	}
	return e
}

// LookupError is err, from resolving the user name that key names
// ("proxy.user", "users.alice"), as a problem of key: "no such user" when
// the system does not know the name, err's own text for any other
// failure (NSS down), and err kept for errors.Is (privdrop.ErrRoot).
func (a Admin) LookupError(key, name string, err error) *Error {
	e := a.Errorf(key, "%s", lookupProblem(name, err))
	e.Err = err
	return e
}

// lookupProblem says why the user name could not be used: a name the
// system does not know is said plainly; any other failure (NSS down) is
// err as it is.
func lookupProblem(name string, err error) string {
	switch {
	case unknownUser(err):
		return fmt.Sprintf("no such user %q on this system", name)
	case errors.Is(err, privdrop.ErrRoot):
		return fmt.Sprintf("%q is root (uid 0); apps never run as root", name)
	}
	return err.Error()
}

// unknownUser reports whether err says the user database has no such
// name or uid (as opposed to a lookup that failed).
func unknownUser(err error) bool {
	var name user.UnknownUserError
	var id user.UnknownUserIdError
	return errors.As(err, &name) || errors.As(err, &id)
}

// Proxy is [proxy]: the front proxy that receives HTTP(S).
type Proxy struct {
	// Listen and TLSListen are host:port addresses ("" host: every
	// address, IPv4 and IPv6). At least one of them is non-empty.
	Listen    []string
	TLSListen []string
	// User runs the proxy process; never root.
	User string
	// TrustedProxies may set X-Forwarded-For and X-Request-Id; empty
	// unless set.
	TrustedProxies []netip.Prefix
	// ProxyProtocol are the peers whose connections, on every listener,
	// must begin with a PROXY protocol header (v1 or v2) naming the
	// client; nobody else may send one. Empty unless set.
	ProxyProtocol []netip.Prefix
	// AccessLog is an absolute path, or "" for no access log.
	AccessLog string
	// DefaultApp ("user/app") answers requests whose Host no app claims;
	// "" leaves them 404 (R1).
	DefaultApp string
	// Limits protect the workers and the proxy from slow or hostile
	// clients; complete, as DefaultProxyLimits under the file's keys.
	Limits ProxyLimits
	// ACME is [proxy] acme: automatic certificates for the domains apps
	// claim (T4); nil when off.
	ACME *ACME
}

// ProxyLimits are the [proxy] keys that bound what a client may hold:
// connections, and the time a request body may take. Each field holds
// its value or its default; where a key allows 0, 0 means off.
type ProxyLimits struct {
	// BufferRequestBody: a request body up to this size is read whole,
	// in memory, before a worker thread is taken, so a slow client never
	// holds one. 0: bodies are not read ahead in memory.
	BufferRequestBody int64
	// RequestSpoolLimit: a larger body is read whole into an unnamed
	// temporary file first, while the proxy's spooled bodies together
	// stay under this many bytes; a body that would pass it streams to
	// the worker as it arrives. 0: bodies are never spooled.
	RequestSpoolLimit int64
	// ClientBodyTimeout bounds each wait for the next bytes of a request
	// body (nginx's client_body_timeout).
	ClientBodyTimeout time.Duration
	// ClientBodyMinRate, in bytes per second, is the least a body must
	// average once ClientBodyTimeout has passed (mod_reqtimeout's
	// MinRate). 0: no minimum.
	ClientBodyMinRate int64
	// SendTimeout bounds each wait for the client to take more of a
	// response (nginx's send_timeout).
	SendTimeout time.Duration
	// KeepaliveTimeout closes a keep-alive connection idle this long.
	KeepaliveTimeout time.Duration
	// MaxConnections caps the open client connections; more are
	// refused as they arrive.
	MaxConnections int
	// MaxConnectionsPerIP caps them per client address (an IPv6 /64);
	// trusted_proxies are exempt. 0: no per-address cap.
	MaxConnectionsPerIP int
}

// Built-in values of the [proxy] limits: they hold against the slow and
// hostile clients of docs/admin-guide.md ("Limits against slow
// clients").
const (
	DefaultBufferRequestBody   = 1 * MiB
	DefaultRequestSpoolLimit   = 1 * GiB
	DefaultClientBodyTimeout   = 60 * time.Second
	DefaultClientBodyMinRate   = 500 // bytes per second, Apache's mod_reqtimeout's
	DefaultSendTimeout         = 60 * time.Second
	DefaultKeepaliveTimeout    = 75 * time.Second
	DefaultMaxConnections      = 10_000
	DefaultMaxConnectionsPerIP = 512
)

// DefaultProxyLimits is every limit at its default.
var DefaultProxyLimits = ProxyLimits{
	BufferRequestBody:   DefaultBufferRequestBody,
	RequestSpoolLimit:   DefaultRequestSpoolLimit,
	ClientBodyTimeout:   DefaultClientBodyTimeout,
	ClientBodyMinRate:   DefaultClientBodyMinRate,
	SendTimeout:         DefaultSendTimeout,
	KeepaliveTimeout:    DefaultKeepaliveTimeout,
	MaxConnections:      DefaultMaxConnections,
	MaxConnectionsPerIP: DefaultMaxConnectionsPerIP,
}

var (
	bufferRequestBodyRange   = sizeRange{lo: 1, hi: 256 * MiB, zero: "off"}
	requestSpoolLimitRange   = sizeRange{lo: 1, hi: PiB, zero: "off"}
	clientBodyTimeoutRange   = durRange{lo: time.Second, hi: time.Hour}
	clientBodyMinRateRange   = sizeRange{lo: 1, hi: GiB, zero: "no minimum"}
	sendTimeoutRange         = durRange{lo: time.Second, hi: time.Hour}
	keepaliveTimeoutRange    = durRange{lo: time.Second, hi: time.Hour}
	maxConnectionsRange      = intRange{lo: 1, hi: 1_000_000}
	maxConnectionsPerIPRange = intRange{lo: 0, hi: 1_000_000, zero: "no limit"}
)

// Validate checks limits set other than from a file (pyhostd serve's
// flags); flag spells each key as the caller names it ("--send-timeout").
func (l ProxyLimits) Validate(flag func(key string) string) error {
	// The ranges' own contains, as the tunables' flags use (tunables.go),
	// and a duration written as the docs write it ("25h", not "25h0m0s").
	size := func(key string, n int64, r sizeRange) error {
		if r.contains(n) {
			return nil
		}
		return fmt.Errorf("%s: must be %s, got %s", flag(key), r, FormatSize(n))
	}
	dur := func(key string, d time.Duration, r durRange) error {
		if r.contains(d) {
			return nil
		}
		return fmt.Errorf("%s: must be %s, got %s", flag(key), r, formatDuration(d))
	}
	integer := func(key string, n int, r intRange) error {
		if r.contains(int64(n)) {
			return nil
		}
		return fmt.Errorf("%s: must be %s, got %d", flag(key), r, n)
	}
	return errors.Join(
		size("buffer_request_body", l.BufferRequestBody, bufferRequestBodyRange),
		size("request_spool_limit", l.RequestSpoolLimit, requestSpoolLimitRange),
		dur("client_body_timeout", l.ClientBodyTimeout, clientBodyTimeoutRange),
		size("client_body_min_rate", l.ClientBodyMinRate, clientBodyMinRateRange),
		dur("send_timeout", l.SendTimeout, sendTimeoutRange),
		dur("keepalive_timeout", l.KeepaliveTimeout, keepaliveTimeoutRange),
		integer("max_connections", l.MaxConnections, maxConnectionsRange),
		integer("max_connections_per_ip", l.MaxConnectionsPerIP, maxConnectionsPerIPRange),
	)
}

// TLSCert is one [[tls]] table: a certificate chain and its key, absolute
// paths. SNI picks among them.
type TLSCert struct {
	Cert string
	Key  string
}

// Daemon is [daemon].
type Daemon struct {
	StateDir string // absolute
	LogDir   string // absolute; per-app logs are LogDir/USER/APP.log
	// DataDir keeps what must outlive a restart or a reboot: which app
	// holds each domain (claims.json). Absolute.
	DataDir       string
	ControlSocket string // absolute
	// MetricsListen is the host:port of the Prometheus endpoint; "": off.
	MetricsListen string
	// PIDFile, when set, is where the daemon writes its pid once it
	// serves (absolute); "": none. The instance lock, not this file,
	// keeps a second daemon out.
	PIDFile string
	// LogFormat is the daemon's own log on stderr: LogText or LogJSON.
	LogFormat string
	// AccessLogPerApp also writes each app's access lines to
	// LogDir/USER/APP.access.log, readable by the app's owner.
	AccessLogPerApp bool
}

// Formats of the daemon's own log ([daemon] log_format).
const (
	LogText = "text"
	LogJSON = "json"
)

// AppDirs is [apps]: where app files are found.
type AppDirs struct {
	// UserDir is relative to each permitted user's home (the file's
	// "~/.config/pyhost/apps" is ".config/pyhost/apps"); see UserDirOf.
	UserDir string
	// AdminDir is absolute; its root-owned app files name their user.
	AdminDir string
}

// UserDirOf is the app directory of the user whose home is home.
func (a AppDirs) UserDirOf(home string) string { return filepath.Join(home, a.UserDir) }

// UserPolicy is one [users.NAME] table: the domains the user's apps may
// claim (see DomainAllowed) and the limits on them all (see CheckQuota).
// A limit left unset, or 0, is no limit, as 0 is for an app's
// memory_limit and max_body.
type UserPolicy struct {
	// Domains are lowercase patterns: exact names and "*.example.com"
	// wildcards. Nil: the user may claim no domain.
	Domains []string
	Quota
	// AllowUnsandboxed lets the user's apps say sandbox = false (C5).
	AllowUnsandboxed bool
}

// Built-in values of the admin file's keys.
const (
	DefaultProxyUser     = "pyhost"
	DefaultStateDir      = "/run/pyhost"
	DefaultLogDir        = "/var/log/pyhost"
	DefaultDataDir       = "/var/lib/pyhost"
	DefaultControlSocket = "/run/pyhost/control.sock"
	DefaultUserDir       = "~/.config/pyhost/apps"
	DefaultAdminDir      = "/etc/pyhost/apps.d"
)

// DefaultListen is where the proxy listens for HTTP when listen is unset.
var DefaultListen = []string{":80"}

var (
	maxAppsRange      = intRange{lo: 0, hi: 10_000, zero: "no limit"}
	maxProcessesRange = intRange{lo: 0, hi: 100_000, zero: "no limit"}
	maxMemoryRange    = sizeRange{lo: 16 * MiB, hi: PiB, zero: "no limit"}
)

type rawAdmin struct {
	Proxy    toml.Primitive `toml:"proxy"`
	TLS      toml.Primitive `toml:"tls"`
	Daemon   toml.Primitive `toml:"daemon"`
	Apps     toml.Primitive `toml:"apps"`
	Defaults toml.Primitive `toml:"defaults"`
	Users    toml.Primitive `toml:"users"`
}

type rawProxy struct {
	Listen         value `toml:"listen"`
	TLSListen      value `toml:"tls_listen"`
	User           value `toml:"user"`
	TrustedProxies value `toml:"trusted_proxies"`
	ProxyProtocol  value `toml:"proxy_protocol"`
	AccessLog      value `toml:"access_log"`
	DefaultApp     value `toml:"default_app"`

	BufferRequestBody   value `toml:"buffer_request_body"`
	RequestSpoolLimit   value `toml:"request_spool_limit"`
	ClientBodyTimeout   value `toml:"client_body_timeout"`
	ClientBodyMinRate   value `toml:"client_body_min_rate"`
	SendTimeout         value `toml:"send_timeout"`
	KeepaliveTimeout    value `toml:"keepalive_timeout"`
	MaxConnections      value `toml:"max_connections"`
	MaxConnectionsPerIP value `toml:"max_connections_per_ip"`

	ACME toml.Primitive `toml:"acme"`
}

type rawTLS struct {
	Cert value `toml:"cert"`
	Key  value `toml:"key"`
}

type rawDaemon struct {
	StateDir        value `toml:"state_dir"`
	LogDir          value `toml:"log_dir"`
	DataDir         value `toml:"data_dir"`
	ControlSocket   value `toml:"control_socket"`
	MetricsListen   value `toml:"metrics_listen"`
	PIDFile         value `toml:"pid_file"`
	LogFormat       value `toml:"log_format"`
	AccessLogPerApp value `toml:"access_log_per_app"`
}

type rawApps struct {
	UserDir  value `toml:"user_dir"`
	AdminDir value `toml:"admin_dir"`
}

type rawUser struct {
	Domains      value `toml:"domains"`
	MaxApps      value `toml:"max_apps"`
	MaxProcesses value `toml:"max_processes"`
	MaxMemory    value `toml:"max_memory"`
	// AllowUnsandboxed lets the user's app files say sandbox = false.
	AllowUnsandboxed value `toml:"allow_unsandboxed"`
}

var adminSections = map[string][]string{
	"proxy":    tomlKeys(rawProxy{}),
	"tls":      tomlKeys(rawTLS{}),
	"daemon":   tomlKeys(rawDaemon{}),
	"apps":     tomlKeys(rawApps{}),
	"defaults": tunableKeys,
}

var adminSchema = schema{
	known: func(parent []string) []string {
		switch {
		case len(parent) == 0:
			return tomlKeys(rawAdmin{})
		case len(parent) == 1:
			return adminSections[parent[0]] // users: nil, any name
		case len(parent) == 2 && parent[0] == "users":
			return tomlKeys(rawUser{})
		case len(parent) == 2 && parent[0] == "proxy" && parent[1] == "acme":
			return tomlKeys(rawACME{})
		}
		return nil
	},
	home: func(name string) string {
		for _, section := range []string{"proxy", "daemon", "apps", "defaults"} {
			if contains(adminSections[section], name) {
				return "in [" + section + "]"
			}
		}
		switch {
		case contains(adminSections["tls"], name):
			return "in a [[tls]] table"
		case contains(tomlKeys(rawUser{}), name):
			return "in a [users.NAME] table"
		case contains(appKeys, name):
			return "in an app file, not in the admin file"
		}
		return ""
	},
}

// LoadAdmin reads and parses the admin file at path.
func LoadAdmin(path string) (Admin, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Admin{}, fmt.Errorf("read admin file: %w", err)
	}
	return ParseAdmin(path, data)
}

// ParseAdmin builds the Admin that the admin file at path, with content
// data, describes. It reads nothing itself. Every problem found is
// returned in one Errors.
func ParseAdmin(path string, data []byte) (Admin, error) {
	var raw rawAdmin
	c, ok := decode(path, data, MaxAdminFileSize, &raw, adminSchema)
	if !ok {
		return Admin{}, c.err()
	}
	c.unknownKeys()
	a := Admin{Path: path}
	a.Proxy = c.proxy(raw.Proxy)
	a.Daemon = c.daemon(raw.Daemon)
	if a.Proxy.AccessLog == defaultAccessLog {
		a.Proxy.AccessLog = filepath.Join(a.Daemon.LogDir, "access.log")
	}
	a.TLS = c.tls(raw.TLS)
	a.Apps = c.apps(raw.Apps)
	a.Defaults = c.defaults(raw.Defaults)
	a.Users = c.users(raw.Users)
	c.undecodedKeys()
	a.lines = c.lines

	// With ACME the certificates come from the CA; without it, from
	// [[tls]]. ACME needs an HTTPS listener to serve what it gets.
	switch {
	case a.Proxy.ACME != nil && len(a.Proxy.TLSListen) == 0:
		c.add("proxy.acme", `needs tls_listen, the HTTPS listeners the certificates are for, like tls_listen = [":443"]`)
	case len(a.Proxy.TLSListen) > 0 && a.Proxy.ACME == nil && !c.md.IsDefined("tls") && !c.md.IsDefined("proxy", "acme"):
		c.add("proxy.tls_listen", "needs a certificate: add a [[tls]] table with cert and key, or [proxy] acme for automatic certificates")
	}
	if err := c.err(); err != nil {
		return Admin{}, err
	}
	return a, nil
}

// absPath reads an admin file path: absolute, cleaned.
func (c *checker) absPath(v value, p keyPath, def, example string) string {
	s, ok := c.str(v, p, "an absolute path, like "+strconv.Quote(example))
	if !ok {
		return def
	}
	if !filepath.IsAbs(s) {
		c.add(p.String(), "must be an absolute path, like %q, got %q", example, s)
		return def
	}
	return filepath.Clean(s)
}

// listenAddr checks a host:port to listen on.
func listenAddr(s string) string {
	like := `use host:port, like ":80", "0.0.0.0:80", "127.0.0.1:8080" or "[::]:443"`
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("%q is not host:port; %s", s, like)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("%q: the port must be a number from 1 to 65535; %s", s, like)
	}
	if host == "" {
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if !validHostname(strings.ToLower(host)) {
		return fmt.Sprintf("%q: %q is neither an IP address nor a host name; %s", s, host, like)
	}
	return ""
}

// addrList reads a list of addresses to listen on, def when unset; bad
// is true when an address was refused (so an empty result is no news).
func (c *checker) addrList(v value, p keyPath, def []string) (addrs []string, bad bool) {
	addrs = []string{}
	n := c.each(v, p, "host:port addresses", "a host:port address", `[":80"]`, func(s string, at keyPath) {
		if problem := listenAddr(s); problem != "" {
			c.add(at.String(), "%s", problem)
			return
		}
		if c.uniqueAddr(at, s) {
			addrs = append(addrs, s)
		}
	})
	if n < 0 {
		for _, s := range def {
			c.uniqueAddr(p, s)
		}
		return def, v.set
	}
	return addrs, len(addrs) < n
}

func (c *checker) daemon(prim toml.Primitive) Daemon {
	p := keyPath{}.key("daemon")
	d := Daemon{StateDir: DefaultStateDir, LogDir: DefaultLogDir, DataDir: DefaultDataDir, LogFormat: LogText}
	var r rawDaemon
	if !c.table(prim, p, &r, "a table: [daemon]") {
		d.ControlSocket = DefaultControlSocket
		return d
	}
	d.StateDir = c.absPath(r.StateDir, p.key("state_dir"), DefaultStateDir, DefaultStateDir)
	d.LogDir = c.absPath(r.LogDir, p.key("log_dir"), DefaultLogDir, DefaultLogDir)
	d.DataDir = c.absPath(r.DataDir, p.key("data_dir"), DefaultDataDir, DefaultDataDir)
	d.ControlSocket = c.absPath(r.ControlSocket, p.key("control_socket"), filepath.Join(d.StateDir, "control.sock"), DefaultControlSocket)
	if s, ok := c.str(r.MetricsListen, p.key("metrics_listen"), `host:port, like "127.0.0.1:9181", or "" for none`); ok && s != "" {
		if problem := listenAddr(s); problem != "" {
			c.add(p.key("metrics_listen").String(), "%s; or \"\" for no metrics endpoint", problem)
		} else if c.uniqueAddr(p.key("metrics_listen"), s) {
			d.MetricsListen = s
		}
	}
	if s, _ := r.PIDFile.v.(string); r.PIDFile.set && s != "" { // "": none
		d.PIDFile = c.absPath(r.PIDFile, p.key("pid_file"), "", "/run/pyhost/pyhostd.pid")
	}
	if s, ok := c.str(r.LogFormat, p.key("log_format"), `"text" or "json"`); ok {
		if s != LogText && s != LogJSON {
			c.add(p.key("log_format").String(), `must be "text" or "json", got %q`, s)
		} else {
			d.LogFormat = s
		}
	}
	if b, ok := c.boolean(r.AccessLogPerApp, p.key("access_log_per_app"), "true"); ok {
		d.AccessLogPerApp = b
	}
	return d
}

// defaultAccessLog marks an access_log left unset, until the log_dir it
// defaults into is known. (No valid path contains a NUL.)
const defaultAccessLog = "\x00default"

func (c *checker) proxy(prim toml.Primitive) Proxy {
	p := keyPath{}.key("proxy")
	px := Proxy{Listen: DefaultListen, TLSListen: []string{}, User: DefaultProxyUser, AccessLog: defaultAccessLog, Limits: DefaultProxyLimits}
	var r rawProxy
	if !c.table(prim, p, &r, "a table: [proxy]") {
		return px
	}
	var badListen, badTLS bool
	px.Listen, badListen = c.addrList(r.Listen, p.key("listen"), DefaultListen)
	px.TLSListen, badTLS = c.addrList(r.TLSListen, p.key("tls_listen"), []string{})
	if len(px.Listen) == 0 && len(px.TLSListen) == 0 && !badListen && !badTLS {
		c.add(p.key("listen").String(), "the proxy has nothing to listen on; give listen, like [\":80\"], or tls_listen")
	}
	if s, ok := c.str(r.User, p.key("user"), `a user name, like "pyhost"`); ok {
		switch {
		case !validUserName(s):
			c.add(p.key("user").String(), "%q is not a user name; use a name like %q", s, DefaultProxyUser)
		case s == "root" || s == "0":
			c.add(p.key("user").String(), "must not be root: the process that parses HTTP from the network runs unprivileged; use a user like %q", DefaultProxyUser)
		default:
			px.User = s
		}
	}
	c.each(r.TrustedProxies, p.key("trusted_proxies"), "IP addresses or CIDR prefixes", "an IP address or a CIDR prefix", `["127.0.0.1/32", "10.0.0.0/8"]`, func(s string, at keyPath) {
		pfx, problem := parsePrefix(s)
		if problem != "" {
			c.add(at.String(), "%s", problem)
			return
		}
		px.TrustedProxies = append(px.TrustedProxies, pfx)
	})
	c.each(r.ProxyProtocol, p.key("proxy_protocol"), "IP addresses or CIDR prefixes of load balancers", "an IP address or a CIDR prefix", `["10.0.0.0/8", "127.0.0.1/32"]`, func(s string, at keyPath) {
		pfx, problem := parsePrefix(s)
		if problem != "" {
			c.add(at.String(), "%s", problem)
			return
		}
		px.ProxyProtocol = append(px.ProxyProtocol, pfx)
	})
	if s, ok := c.str(r.AccessLog, p.key("access_log"), `an absolute path, or "" for none`); ok {
		switch {
		case s == "":
			px.AccessLog = ""
		case !filepath.IsAbs(s):
			c.add(p.key("access_log").String(), "must be an absolute path, like %q, or \"\" for none, got %q", "/var/log/pyhost/access.log", s)
		default:
			px.AccessLog = filepath.Clean(s)
		}
	}
	if s, ok := c.str(r.DefaultApp, p.key("default_app"), `"USER/APP", or "" for none`); ok && s != "" {
		user, app, found := strings.Cut(s, "/")
		if !found || !validUserName(user) || !validAppName(app) {
			c.add(p.key("default_app").String(), "must name an app as USER/APP, like %q (the app of alice's blog.toml), got %q", "alice/blog", s)
		} else {
			px.DefaultApp = s
		}
	}
	px.Limits = c.proxyLimits(&r, p)
	if c.md.IsDefined("proxy", "acme") {
		px.ACME = c.acme(r.ACME, p.key("acme"))
	}
	return px
}

func (c *checker) proxyLimits(r *rawProxy, p keyPath) ProxyLimits {
	l := DefaultProxyLimits
	if n, ok := c.size(r.BufferRequestBody, p.key("buffer_request_body"), bufferRequestBodyRange); ok {
		l.BufferRequestBody = n
	}
	if n, ok := c.size(r.RequestSpoolLimit, p.key("request_spool_limit"), requestSpoolLimitRange); ok {
		l.RequestSpoolLimit = n
	}
	if d, ok := c.duration(r.ClientBodyTimeout, p.key("client_body_timeout"), clientBodyTimeoutRange); ok {
		l.ClientBodyTimeout = d
	}
	if n, ok := c.size(r.ClientBodyMinRate, p.key("client_body_min_rate"), clientBodyMinRateRange); ok {
		l.ClientBodyMinRate = n
	}
	if d, ok := c.duration(r.SendTimeout, p.key("send_timeout"), sendTimeoutRange); ok {
		l.SendTimeout = d
	}
	if d, ok := c.duration(r.KeepaliveTimeout, p.key("keepalive_timeout"), keepaliveTimeoutRange); ok {
		l.KeepaliveTimeout = d
	}
	if n, ok := c.integer(r.MaxConnections, p.key("max_connections"), maxConnectionsRange); ok {
		l.MaxConnections = int(n)
	}
	if n, ok := c.integer(r.MaxConnectionsPerIP, p.key("max_connections_per_ip"), maxConnectionsPerIPRange); ok {
		l.MaxConnectionsPerIP = int(n)
	}
	return l
}

// ParseTrustedProxy reads one trusted_proxies entry (also the
// --trusted-proxy flag of pyhostd serve): see parsePrefix.
func ParseTrustedProxy(s string) (netip.Prefix, error) {
	pfx, problem := parsePrefix(s)
	if problem != "" {
		return netip.Prefix{}, errors.New(problem)
	}
	return pfx, nil
}

// parsePrefix reads a CIDR prefix, or a single address as its /32 or
// /128; a prefix with host bits set is refused, as a likely typo.
func parsePrefix(s string) (netip.Prefix, string) {
	like := `use an IP address or a CIDR prefix, like "127.0.0.1", "10.0.0.0/8" or "fd00::/8"`
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Sprintf("%q is not an IP address; %s", s, like)
		}
		return netip.PrefixFrom(a, a.BitLen()), ""
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Sprintf("%q is not a CIDR prefix; %s", s, like)
	}
	if m := pfx.Masked(); m != pfx {
		return netip.Prefix{}, fmt.Sprintf("%q has bits set past the /%d; did you mean %q?", s, pfx.Bits(), m.String())
	}
	return pfx, ""
}

func (c *checker) tls(prim toml.Primitive) []TLSCert {
	p := keyPath{}.key("tls")
	var elems []toml.Primitive
	if !c.table(prim, p, &elems, `an array of tables: [[tls]] with cert and key`) {
		return nil
	}
	var out []TLSCert
	for i, e := range elems {
		ep := p.index(i)
		var r rawTLS
		if !c.table(e, ep, &r, `a table with cert and key, like [[tls]] cert = "/etc/pyhost/tls/example.pem" key = "/etc/pyhost/tls/example.key"`) {
			continue
		}
		typo := c.reportedIn(ep)
		if !r.Cert.set && !typo {
			c.add(ep.String(), `needs cert, the certificate chain file, like cert = "/etc/pyhost/tls/example.pem"`)
		}
		if !r.Key.set && !typo {
			c.add(ep.String(), `needs key, the private key file, like key = "/etc/pyhost/tls/example.key"`)
		}
		cert := c.absPath(r.Cert, ep.key("cert"), "", "/etc/pyhost/tls/example.pem")
		key := c.absPath(r.Key, ep.key("key"), "", "/etc/pyhost/tls/example.key")
		if cert != "" && key != "" {
			out = append(out, TLSCert{Cert: cert, Key: key})
		}
	}
	return out
}

func (c *checker) apps(prim toml.Primitive) AppDirs {
	p := keyPath{}.key("apps")
	a := AppDirs{UserDir: strings.TrimPrefix(DefaultUserDir, "~/"), AdminDir: DefaultAdminDir}
	var r rawApps
	if !c.table(prim, p, &r, "a table: [apps]") {
		return a
	}
	if s, ok := c.str(r.UserDir, p.key("user_dir"), `a path in each user's home, like "~/.config/pyhost/apps"`); ok {
		rel := filepath.Clean(strings.TrimPrefix(s, "~/"))
		switch {
		case !strings.HasPrefix(s, "~/") || rel == "." || rel == ".." || strings.HasPrefix(rel, "../"):
			c.add(p.key("user_dir").String(), "must be a directory in each user's home, starting with \"~/\", like %q, got %q", DefaultUserDir, s)
		default:
			a.UserDir = rel
		}
	}
	a.AdminDir = c.absPath(r.AdminDir, p.key("admin_dir"), DefaultAdminDir, DefaultAdminDir)
	return a
}

func (c *checker) defaults(prim toml.Primitive) Defaults {
	p := keyPath{}.key("defaults")
	d := BuiltinDefaults()
	var r rawTunables
	if !c.table(prim, p, &r, "a table: [defaults]") {
		return d
	}
	c.readTunables(&r, p, &d.App)
	// A tasks_max the defaults' own processes and threads do not fit
	// in would refuse every app file that sets none of the three, each
	// naming a key it does not hold: the admin's mistake, said here.
	if problem := tasksProblem(d.App, "an app of the defaults"); problem != "" {
		c.add(p.key("tasks_max").String(), "%s", problem)
	}
	if s, ok := c.str(r.Python, p.key("python"), `a command name like "python3" or an absolute path`); ok {
		if !validCommand(s) && !filepath.IsAbs(s) {
			c.add(p.key("python").String(), "must be a command name looked up on PATH, like %q, or an absolute path, like %q, got %q", "python3", "/usr/bin/python3.12", s)
		} else {
			d.Python = filepath.Clean(s)
		}
	}
	return d
}

func (c *checker) users(prim toml.Primitive) map[string]UserPolicy {
	p := keyPath{}.key("users")
	var raw map[string]toml.Primitive
	if !c.table(prim, p, &raw, "tables, one per user: [users.alice]") || len(raw) == 0 {
		return nil
	}
	names := make([]string, 0, len(raw))
	for n := range raw {
		names = append(names, n)
	}
	sort.Strings(names)
	out := map[string]UserPolicy{}
	for _, name := range names {
		up := p.key(name)
		switch {
		case name == "root" || name == "0":
			c.add(up.String(), "root may not deploy apps: apps never run as root")
			c.skipKey(up)
			continue
		case !validUserName(name):
			c.add(up.String(), "%q is not a user name; use the login name, like [users.alice]", name)
			c.skipKey(up)
			continue
		}
		var r rawUser
		if !c.table(raw[name], up, &r, "a table: [users."+quoteKey(name)+"] with domains, max_apps, max_processes, max_memory") {
			continue
		}
		var u UserPolicy
		u.Domains = c.domainList(r.Domains, up.key("domains"), "domain patterns", "a domain pattern", `["alice.example.com", "*.alice.example.com"]`)
		if n, ok := c.integer(r.MaxApps, up.key("max_apps"), maxAppsRange); ok {
			u.MaxApps = int(n)
		}
		if n, ok := c.integer(r.MaxProcesses, up.key("max_processes"), maxProcessesRange); ok {
			u.MaxProcesses = int(n)
		}
		if n, ok := c.size(r.MaxMemory, up.key("max_memory"), maxMemoryRange); ok {
			u.MaxMemory = n
		}
		if on, ok := c.boolean(r.AllowUnsandboxed, up.key("allow_unsandboxed"), "true"); ok {
			u.AllowUnsandboxed = on
		}
		out[name] = u
	}
	return out
}

// uniqueAddr reports false, with the problem, for an address a listener
// of the admin file uses already.
func (c *checker) uniqueAddr(p keyPath, addr string) bool {
	if c.addrs == nil {
		c.addrs = map[string]bool{}
	}
	if c.addrs[addr] {
		c.add(p.String(), "%q is used by another listener already; give each listener its own address", addr)
		return false
	}
	c.addrs[addr] = true
	return true
}
