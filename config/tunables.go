package config

import (
	"fmt"
	"reflect"
	"strconv"
	"time"

	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/proxymsg"
)

// The tunables are the keys an app file and the admin file's [defaults]
// share. This table is the one place they are spelled out: a row gives
// the key, how its value is read and checked, its built-in default, its
// App field, whether `pyhostd serve` has a flag for it (--KEY, "_"
// written "-") and whether the proxy enforces it (its field in the
// channel's App). Decoding and validation (readTunables), [defaults],
// BuiltinDefaults, the serve flags (AddServeFlags), the proxy's part of
// the routing table (RouteTunables) and the docs test all read it.
//
// Adding a tunable is a row here and its App field (and, for the proxy,
// its proxymsg.App field); the TOML decoder needs a tagged field in
// rawTunables too, which init checks. python is not a row: its path
// rules differ between app files and [defaults], and serve looks it up.
var tunables = []tunable{
	tune("processes", intKind(processesRange), DefaultProcesses,
		func(a *App) *int { return &a.Processes }, "worker processes").serve(),
	tune("threads", intKind(threadsRange), DefaultThreads,
		func(a *App) *int { return &a.Threads }, "threads per worker process").serve(),
	tune("max_requests", intKind(maxRequestsRange), 0,
		func(a *App) *int { return &a.MaxRequests }, "recycle a worker after about this many requests (0: never)").serve(),
	tune("queue_limit", intKind(queueLimitRange), DefaultQueueLimit,
		func(a *App) *int { return &a.QueueLimit }, "how many requests may wait for a free thread (more: 503)").serve().
		proxy(func(r *proxymsg.App) *int { return &r.QueueLimit }),
	tune("memory_limit", sizeKind(memoryLimitRange), 0,
		func(a *App) *int64 { return &a.MemoryLimit }, `recycle a worker whose RSS passes this size ("300MiB"; default: no limit)`).serve(),
	tune("max_body", sizeKind(maxBodyRange), DefaultMaxBody,
		func(a *App) *int64 { return &a.MaxBody }, "largest request body (413 above)").serve().
		proxy(func(r *proxymsg.App) *int64 { return &r.MaxBody }),
	tune("request_timeout", durationKind(requestTimeoutRange), DefaultRequestTimeout,
		func(a *App) *time.Duration { return &a.RequestTimeout }, "answer 504 and recycle the worker when the app is silent this long (0: no limit)").serve().
		proxy(func(r *proxymsg.App) *time.Duration { return &r.RequestTimeout }),
	tune("graceful_timeout", durationKind(gracefulTimeoutRange), DefaultGracefulTimeout,
		func(a *App) *time.Duration { return &a.GracefulTimeout }, "how long a stopping worker may finish its requests").serve(),
	tune("startup_timeout", durationKind(startupTimeoutRange), DefaultStartupTimeout,
		func(a *App) *time.Duration { return &a.StartupTimeout }, "how long a new worker may take to import the app").serve().
		proxy(func(r *proxymsg.App) *time.Duration { return &r.StartupTimeout }),
	tune("idle_timeout", durationKind(idleTimeoutRange), 0,
		func(a *App) *time.Duration { return &a.IdleTimeout }, "stop the workers after this long without a request; the next one starts them (0: never)").serve(),
	tune("queue_timeout", durationKind(queueTimeoutRange), DefaultQueueTimeout,
		func(a *App) *time.Duration { return &a.QueueTimeout }, "how long a request may wait for a free thread (then 503)").serve().
		proxy(func(r *proxymsg.App) *time.Duration { return &r.QueueTimeout }),
	tune("https_only", boolKind("https_only = true"), false,
		func(a *App) *bool { return &a.HTTPSOnly }, "answer a plain-HTTP request with a 308 to its https URL").
		proxy(func(r *proxymsg.App) *bool { return &r.HTTPSOnly }),
	tune("hsts", hstsKind(), "",
		func(a *App) *string { return &a.HSTS }, "the Strict-Transport-Security value of https responses").
		proxy(func(r *proxymsg.App) *string { return &r.HSTS }),
	// The containment keys (limits.go).
	tune("memory_max", sizeKind(memoryMaxRange), 0,
		func(a *App) *int64 { return &a.Limits.MemoryMax }, "the app's memory above which the kernel OOM-kills in it"),
	tune("memory_high", sizeKind(memoryMaxRange), 0,
		func(a *App) *int64 { return &a.Limits.MemoryHigh }, "the app's memory above which the kernel throttles and reclaims"),
	tune("cpu_weight", weightKind(), 0,
		func(a *App) *int { return &a.Limits.CPUWeight }, "the app's share of contended CPU"),
	tune("io_weight", weightKind(), 0,
		func(a *App) *int { return &a.Limits.IOWeight }, "the app's share of contended disk I/O"),
	tune("cpu_max", cpuMaxKind(), cgroup.CPUMax{},
		func(a *App) *cgroup.CPUMax { return &a.Limits.CPUMax }, "the app's CPU cap, a percentage of one CPU"),
	tune("tasks_max", tasksMaxKind(), 0,
		func(a *App) *int64 { return &a.Limits.TasksMax }, "the most processes and threads the app may run"),
}

// A tunable is one row of the table; spec is the only implementation.
// The interface erases the row's Go type, so that rows of int, size,
// duration and string keys sit in one slice.
type tunable interface {
	name() string
	// flagName is serve's flag, "" when it has none.
	flagName() string
	// decode checks v, the file's value at p, and sets it on a; a bad
	// value is reported and a keeps what it had.
	decode(c *checker, v value, p keyPath, a *App)
	// setDefault sets the built-in default on a.
	setDefault(a *App)
	// bindFlag adds serve's flag to fs, with def's value as its default;
	// canFlag says whether the row's kind has flags at all.
	bindFlag(fs FlagSet, def *App) flagRead
	canFlag() bool
	// ends are the ends of the key's range as docs/config.md writes
	// them, "" for a kind without one.
	ends() [2]string
	// inRange says why a's value is outside the key's range, nil if it
	// is in it (or the key's kind has no range to check).
	inRange(a *App) error
	// route sets the value on the proxy's view of the app, if it has one.
	route(r *proxymsg.App, a *App)
}

// spec is a row for a key whose App field is of type T.
type spec[T any] struct {
	key   string
	kind  kind[T]
	def   T
	field func(*App) *T
	doc   string // one line; serve's usage of its flag
	flag  bool
	wire  func(*proxymsg.App) *T // nil: the proxy does not need the key
}

// tune makes the row of key, read as kind, def when unset, stored at
// field.
func tune[T any](key string, k kind[T], def T, field func(*App) *T, doc string) *spec[T] {
	return &spec[T]{key: key, kind: k, def: def, field: field, doc: doc}
}

// serve gives the key a `pyhostd serve` flag, named after it.
func (s *spec[T]) serve() *spec[T] { s.flag = true; return s }

// proxy sends the key to the proxy, in the routing table's app.
func (s *spec[T]) proxy(wire func(*proxymsg.App) *T) *spec[T] { s.wire = wire; return s }

func (s *spec[T]) name() string { return s.key }

func (s *spec[T]) flagName() string {
	if !s.flag {
		return ""
	}
	return flagName(s.key)
}

func (s *spec[T]) decode(c *checker, v value, p keyPath, a *App) {
	if x, ok := s.kind.parse(c, v, p.key(s.key)); ok {
		*s.field(a) = x
	}
}

func (s *spec[T]) setDefault(a *App) { *s.field(a) = s.def }

func (s *spec[T]) bindFlag(fs FlagSet, def *App) flagRead {
	name := s.flagName()
	read := s.kind.flag(fs, name, s.doc, *s.field(def))
	return flagRead{flag: name, set: func(a *App) error {
		x, err := read()
		if err == nil && s.kind.in != nil {
			// The key's one range, as in a file (issue 13 review:
			// --request-timeout 25h was taken, the same in a file not).
			err = s.kind.in(x)
		}
		if err != nil {
			return fmt.Errorf("--%s: %w", name, err)
		}
		*s.field(a) = x
		return nil
	}}
}

func (s *spec[T]) ends() [2]string { return s.kind.ends }

func (s *spec[T]) inRange(a *App) error {
	if s.kind.in == nil {
		return nil
	}
	return s.kind.in(*s.field(a))
}

func (s *spec[T]) route(r *proxymsg.App, a *App) {
	if s.wire != nil {
		*s.wire(r) = *s.field(a)
	}
}

// A kind reads values of one sort: parse from a file (checked, a
// problem reported at p), flag from the command line (nil for a sort
// serve has no flag of). flag adds the flag, with def as its default,
// and returns what reads its value once the command line is parsed.
// in says why a value is outside the key's range (the one parse checks
// a file's value against), nil when it is in; nil for a sort that has
// no flag, whose values only come from parse. ends are the range's
// ends as docs/config.md writes them ("100ms", "24h"), for its test.
type kind[T any] struct {
	parse func(c *checker, v value, p keyPath) (T, bool)
	flag  func(fs FlagSet, name, usage string, def T) func() (T, error)
	in    func(T) error
	ends  [2]string
}

func intKind(r intRange) kind[int] {
	return kind[int]{
		parse: func(c *checker, v value, p keyPath) (int, bool) {
			n, ok := c.integer(v, p, r)
			return int(n), ok
		},
		flag: func(fs FlagSet, name, usage string, def int) func() (int, error) {
			n := new(int)
			fs.IntVar(n, name, def, usage)
			return func() (int, error) { return *n, nil }
		},
		in: func(n int) error {
			if !r.contains(int64(n)) {
				return fmt.Errorf("must be %s, got %d", r, n)
			}
			return nil
		},
		ends: [2]string{strconv.FormatInt(r.lo, 10), strconv.FormatInt(r.hi, 10)},
	}
}

// sizeKind reads sizes; the flag is a string ("300MiB"), parsed when
// it is read, so that a bad one is reported as "--max-body: ...".
func sizeKind(r sizeRange) kind[int64] {
	return kind[int64]{
		parse: func(c *checker, v value, p keyPath) (int64, bool) { return c.size(v, p, r) },
		flag: func(fs FlagSet, name, usage string, def int64) func() (int64, error) {
			s := new(string)
			shown := ""
			if def != 0 {
				shown = FormatSize(def)
			}
			fs.StringVar(s, name, shown, usage)
			return func() (int64, error) { return ParseSize(*s) }
		},
		in: func(n int64) error {
			if !r.contains(n) {
				return fmt.Errorf("must be %s, got %s", r, FormatSize(n))
			}
			return nil
		},
		ends: [2]string{FormatSize(r.lo), FormatSize(r.hi)},
	}
}

func durationKind(r durRange) kind[time.Duration] {
	return kind[time.Duration]{
		parse: func(c *checker, v value, p keyPath) (time.Duration, bool) { return c.duration(v, p, r) },
		flag: func(fs FlagSet, name, usage string, def time.Duration) func() (time.Duration, error) {
			d := new(time.Duration)
			fs.DurationVar(d, name, def, usage)
			return func() (time.Duration, error) { return *d, nil }
		},
		in: func(d time.Duration) error {
			if !r.contains(d) {
				return fmt.Errorf("must be %s, got %s", r, formatDuration(d))
			}
			return nil
		},
		ends: [2]string{formatDuration(r.lo), formatDuration(r.hi)},
	}
}

// boolKind reads true or false; example shows one in a message.
func boolKind(example string) kind[bool] {
	return kind[bool]{parse: func(c *checker, v value, p keyPath) (bool, bool) { return c.boolean(v, p, example) }}
}

func hstsKind() kind[string] {
	return kind[string]{parse: func(c *checker, v value, p keyPath) (string, bool) {
		s, ok := c.str(v, p, `a Strict-Transport-Security value, like "max-age=63072000; includeSubDomains", or "" for none`)
		if !ok {
			return "", false
		}
		if problem := hstsProblem(s); problem != "" {
			c.add(p.String(), "%s", problem)
			return "", false
		}
		return s, true
	}}
}

// readTunables reads the tunable keys of r (at p) over a.
func (c *checker) readTunables(r *rawTunables, p keyPath, a *App) {
	for _, t := range tunables {
		t.decode(c, r.get(t.name()), p, a)
	}
}

// RouteTunables sets on r the keys the proxy enforces for the app
// (queue_timeout, max_body, …; the rows with a proxy field).
func (a App) RouteTunables(r *proxymsg.App) {
	for _, t := range tunables {
		t.route(r, &a)
	}
}

// rawIndex is the field of rawTunables that holds each key, by its toml
// tag: the decoder fills a struct, and the table names keys.
var rawIndex = func() map[string]int {
	m := map[string]int{}
	t := reflect.TypeFor[rawTunables]()
	for i := 0; i < t.NumField(); i++ {
		m[t.Field(i).Tag.Get("toml")] = i
	}
	return m
}()

// get is the value the file wrote for key.
func (r *rawTunables) get(key string) value {
	return reflect.ValueOf(r).Elem().Field(rawIndex[key]).Interface().(value)
}

// The table and rawTunables must name the same keys (python aside), and
// every serve flag must have a kind that can be one: a mismatch is a
// bug that would otherwise read a key as another or drop it silently.
func init() {
	seen := map[string]bool{"python": true}
	for _, t := range tunables {
		if _, ok := rawIndex[t.name()]; !ok || seen[t.name()] {
			panic("config: tunable " + t.name() + " has no field of its own in rawTunables")
		}
		seen[t.name()] = true
		if t.flagName() != "" && !t.canFlag() {
			panic("config: tunable " + t.name() + " has a serve flag but its kind has none")
		}
	}
	if len(seen) != len(rawIndex) {
		panic("config: rawTunables has a key the tunables table lacks")
	}
}

func (s *spec[T]) canFlag() bool { return s.kind.flag != nil }

// FlagSet is the part of a *pflag.FlagSet (cobra's flags) the serve
// flags use.
type FlagSet interface {
	IntVar(p *int, name string, value int, usage string)
	StringVar(p *string, name string, value string, usage string)
	DurationVar(p *time.Duration, name string, value time.Duration, usage string)
}

// ServeFlags are `pyhostd serve`'s flags for the tunables, one per row
// that has one, each defaulting to the built-in value.
type ServeFlags struct {
	reads []flagRead
}

type flagRead struct {
	flag string
	// set sets the flag's value on a; an error for a value that does
	// not parse.
	set func(a *App) error
}

// AddServeFlags adds the tunables' flags to fs.
func AddServeFlags(fs FlagSet) *ServeFlags {
	def := BuiltinDefaults().App
	f := &ServeFlags{}
	for _, t := range tunables {
		if t.flagName() != "" {
			f.reads = append(f.reads, t.bindFlag(fs, &def))
		}
	}
	return f
}

// Apply sets on a the flags changed reports given (flags override an
// app file's keys), in the table's order; the first that does not parse,
// or whose value is outside its key's range, is the error, naming the
// flag. It does not validate the rest of a.
func (f *ServeFlags) Apply(a *App, changed func(flag string) bool) error {
	for _, r := range f.reads {
		if changed(r.flag) {
			if err := r.set(a); err != nil {
				return err
			}
		}
	}
	return nil
}

// Check is Apply's error, a changing nothing: serve checks its flags
// before it reads the app they apply to.
func (f *ServeFlags) Check(changed func(flag string) bool) error {
	return f.Apply(&App{}, changed)
}

// Values are the flags over the built-in defaults, given or not; a flag
// whose value does not parse keeps its default (Apply reports it).
func (f *ServeFlags) Values() App {
	a := BuiltinDefaults().App
	for _, r := range f.reads {
		_ = r.set(&a)
	}
	return a
}

// flagName is serve's flag for key: "max_body" is --max-body.
func flagName(key string) string {
	b := []byte(key)
	for i, c := range b {
		if c == '_' {
			b[i] = '-'
		}
	}
	return string(b)
}
