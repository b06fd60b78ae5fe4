package config

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/proxymsg"
)

// The table and the decoder's raw struct name the same keys, each once;
// init panics otherwise, and this says which.
func TestTunablesTableIsRawTunables(t *testing.T) {
	var keys []string
	for _, tu := range tunables {
		keys = append(keys, tu.name())
	}
	keys = append(keys, "python")
	slices.Sort(keys)
	if want := tomlKeys(rawTunables{}); !slices.Equal(keys, want) {
		t.Errorf("table keys %v, rawTunables %v", keys, want)
	}
}

// The built-in defaults, written out: a row's default that moves is a
// change every app sees, so it shows here.
func TestBuiltinDefaults(t *testing.T) {
	want := Defaults{App{
		Python:          "python3",
		Processes:       1,
		Threads:         4,
		MaxBody:         1 << 30,
		QueueLimit:      1024,
		RequestTimeout:  60 * time.Second,
		GracefulTimeout: 15 * time.Second,
		StartupTimeout:  30 * time.Second,
		QueueTimeout:    30 * time.Second,
	}}
	if got := BuiltinDefaults(); !reflect.DeepEqual(got, want) {
		t.Errorf("BuiltinDefaults() = %+v\nwant %+v", got.App, want.App)
	}
	if !(Defaults{}).isZero() || BuiltinDefaults().isZero() {
		t.Error("isZero: the zero Defaults, and only it, is zero")
	}
}

// Every key the proxy enforces reaches the routing table's app; none
// other is there.
func TestRouteTunables(t *testing.T) {
	a := App{QueueTimeout: time.Second, StartupTimeout: 2 * time.Second, QueueLimit: 3, RequestTimeout: 4 * time.Second,
		MaxBody: 5, HTTPSOnly: true, HSTS: "max-age=6", Processes: 7, MemoryLimit: 8 << 20,
		Limits: cgroup.Limits{MemoryMax: 9 << 20}}
	var r proxymsg.App
	a.RouteTunables(&r)
	want := proxymsg.App{QueueTimeout: time.Second, StartupTimeout: 2 * time.Second, QueueLimit: 3, RequestTimeout: 4 * time.Second,
		MaxBody: 5, HTTPSOnly: true, HSTS: "max-age=6"}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("RouteTunables: %+v\nwant %+v", r, want)
	}
}

// Every field of the channel's App named like a tunable (its json tag is
// the key) is routed, from the App field of the same name; no other is
// touched. A tunable added to the wire but not to its row fails here.
func TestRouteTunablesCoversTheWire(t *testing.T) {
	var a App
	n := 0
	fillDistinct(reflect.ValueOf(&a).Elem(), &n)
	var r proxymsg.App
	a.RouteTunables(&r)
	keys := map[string]bool{}
	for _, tu := range tunables {
		keys[tu.name()] = true
	}
	rv, av := reflect.ValueOf(r), reflect.ValueOf(a)
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Type().Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		got := rv.Field(i)
		switch {
		case !keys[tag]:
			if !got.IsZero() {
				t.Errorf("proxymsg.App.%s (%s) is no tunable, but RouteTunables set it", f.Name, tag)
			}
		case !av.FieldByName(f.Name).IsValid():
			t.Errorf("proxymsg.App.%s is the tunable %s, but App has no field %s", f.Name, tag, f.Name)
		case !reflect.DeepEqual(got.Interface(), av.FieldByName(f.Name).Interface()):
			t.Errorf("proxymsg.App.%s = %v, want App.%s, %v: the row of %s does not route it", f.Name, got, f.Name, av.FieldByName(f.Name), tag)
		}
	}
}

// fillDistinct sets every int, string and bool inside v to a value no
// other has (bools to true).
func fillDistinct(v reflect.Value, n *int) {
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fillDistinct(v.Field(i), n)
			}
		}
	case reflect.Int, reflect.Int64:
		*n++
		v.SetInt(int64(*n))
	case reflect.Uint32:
		*n++
		v.SetUint(uint64(*n))
	case reflect.String:
		*n++
		v.SetString(strings.Repeat("x", *n))
	case reflect.Bool:
		v.SetBool(true)
	}
}

// serve's flags, as they were spelled by hand before the table: names,
// types and defaults are what --help shows, and must not move.
func TestServeFlags(t *testing.T) {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	sf := AddServeFlags(fs)
	want := map[string][2]string{ // type, default
		"processes":        {"int", "1"},
		"threads":          {"int", "4"},
		"max-requests":     {"int", "0"},
		"queue-limit":      {"int", "1024"},
		"memory-limit":     {"string", ""},
		"max-body":         {"string", "1GiB"},
		"request-timeout":  {"duration", "1m0s"},
		"graceful-timeout": {"duration", "15s"},
		"startup-timeout":  {"duration", "30s"},
		"idle-timeout":     {"duration", "0s"},
		"queue-timeout":    {"duration", "30s"},
	}
	n := 0
	fs.VisitAll(func(f *pflag.Flag) {
		n++
		w, ok := want[f.Name]
		if !ok {
			t.Errorf("flag --%s: not one of serve's", f.Name)
			return
		}
		if got := [2]string{f.Value.Type(), f.DefValue}; got != w {
			t.Errorf("flag --%s: type and default %q, want %q", f.Name, got, w)
		}
	})
	if n != len(want) {
		t.Errorf("%d flags, want %d", n, len(want))
	}

	if err := fs.Parse([]string{"--processes", "3", "--max-body", "2MiB", "--idle-timeout", "5m"}); err != nil {
		t.Fatal(err)
	}
	app := App{Processes: 9, Threads: 9, MaxBody: 9, IdleTimeout: 9, MemoryLimit: 9}
	if err := sf.Apply(&app, fs.Changed); err != nil {
		t.Fatal(err)
	}
	if app.Processes != 3 || app.Threads != 9 || app.MaxBody != 2<<20 || app.IdleTimeout != 5*time.Minute || app.MemoryLimit != 9 {
		t.Errorf("after Apply: %+v; want only the flags given changed", app)
	}

	fs = pflag.NewFlagSet("serve", pflag.ContinueOnError)
	sf = AddServeFlags(fs)
	if err := fs.Parse([]string{"--memory-limit", "lots"}); err != nil {
		t.Fatal(err)
	}
	err := sf.Apply(&App{}, fs.Changed)
	_, parseErr := ParseSize("lots")
	if err == nil || err.Error() != "--memory-limit: "+parseErr.Error() {
		t.Errorf("bad --memory-limit: %v, want \"--memory-limit: %v\"", err, parseErr)
	}
}

// docs/config.md marks each tunable of the app-file table *tunable*:
// exactly the rows of the table (and python). docs/cli.md lists each
// serve flag.
func TestTunablesAreDocumented(t *testing.T) {
	data, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	marked := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "| `") && strings.Contains(line, "(*tunable*)") {
			key, _, _ := strings.Cut(strings.TrimPrefix(line, "| `"), "`")
			marked[key] = true
		}
	}
	for _, tu := range tunables {
		if !marked[tu.name()] {
			t.Errorf("docs/config.md: the app-file table does not mark %s (*tunable*)", tu.name())
		}
		delete(marked, tu.name())
	}
	delete(marked, "python")
	for k := range marked {
		t.Errorf("docs/config.md marks %s (*tunable*), which is no row of the tunables table", k)
	}

	cli, err := os.ReadFile("../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, tu := range tunables {
		if f := tu.flagName(); f != "" && !strings.Contains(string(cli), "`--"+f+" ") {
			t.Errorf("docs/cli.md does not list serve's --%s", f)
		}
	}
}

// docDefault is how docs/config.md writes a row's built-in default in
// its Default column: a number bare, a size or duration quoted ("1GiB",
// "60s"), 0 bare for "none".
func docDefault(t *testing.T, tu tunable) string {
	switch s := tu.(type) {
	case *spec[int]:
		return strconv.Itoa(s.def)
	case *spec[int64]:
		if s.def == 0 {
			return "0"
		}
		return `"` + FormatSize(s.def) + `"`
	case *spec[time.Duration]:
		if s.def == 0 {
			return "0"
		}
		if s.def%time.Second == 0 {
			return fmt.Sprintf(`"%ds"`, s.def/time.Second) // "60s", not "1m0s"
		}
		return `"` + s.def.String() + `"`
	case *spec[bool]:
		return "`" + strconv.FormatBool(s.def) + "`"
	case *spec[string]:
		return "`" + strconv.Quote(s.def) + "`"
	case *spec[cgroup.CPUMax]:
		if s.def == (cgroup.CPUMax{}) {
			return "`\"max\"`"
		}
	}
	t.Fatalf("%s: teach docDefault its default's type %T", tu.name(), tu)
	return ""
}

// The Default column of docs/config.md's app-file table says each
// tunable's built-in default, as the table has it: a default moved in
// the table and not in the reference (or the other way) fails here.
// cpu_weight and io_weight are unset by default, which leaves the
// kernel's own weight (100) in force: the reference says that number.
func TestTunableDefaultsAreDocumented(t *testing.T) {
	data, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	column := map[string]string{} // key → its Default cell
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "| `") || !strings.Contains(line, "(*tunable*)") {
			continue
		}
		cells := strings.Split(line, "|")
		key := strings.Trim(strings.TrimSpace(cells[1]), "`")
		column[key] = strings.TrimSpace(cells[3])
	}
	kernel := map[string]string{"cpu_weight": "100", "io_weight": "100"}
	for _, tu := range tunables {
		cell, ok := column[tu.name()]
		if !ok {
			continue // TestTunablesAreDocumented says so
		}
		want := docDefault(t, tu)
		if k, ok := kernel[tu.name()]; ok && want == "0" {
			want = k
		}
		if strings.HasPrefix(want, `"`) {
			want = "`" + want + "`"
		}
		if got, _, _ := strings.Cut(cell, " "); strings.TrimSuffix(got, ",") != want {
			t.Errorf("docs/config.md: %s's default is %s; the tunables table's is %s", tu.name(), cell, want)
		}
	}
}

// A serve flag is held to its key's one range, as the key in an app
// file or [defaults] is, and the error names the flag (serve took
// --request-timeout 25h and --max-body 2TiB, which every file refuses).
// The floors are low enough for what tests and developers run (a 300 ms
// request_timeout, a 500 ms graceful_timeout), in files too.
func TestServeFlagsRanges(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // the whole error; "" for none
	}{
		{[]string{"--processes", "300"}, "--processes: must be an integer from 1 to 256, got 300"},
		{[]string{"--threads", "0"}, "--threads: must be an integer from 1 to 1024, got 0"},
		{[]string{"--queue-limit", "0"}, "--queue-limit: must be an integer from 1 to 1000000, got 0"},
		{[]string{"--max-requests", "-1"}, "--max-requests: must be an integer from 0 (never) to 1000000000, got -1"},
		{[]string{"--max-body", "2TiB"}, `--max-body: must be 0 (no limit) or a size from 1B to 1TiB, like "512MiB", got 2TiB`},
		{[]string{"--memory-limit", "1KiB"}, `--memory-limit: must be 0 (no limit) or a size from 16MiB to 1TiB, like "512MiB", got 1KiB`},
		{[]string{"--request-timeout", "25h"}, `--request-timeout: must be 0 (no limit) or a duration from 100ms to 24h, like "30s", got 25h`},
		{[]string{"--request-timeout", "50ms"}, `--request-timeout: must be 0 (no limit) or a duration from 100ms to 24h, like "30s", got 50ms`},
		{[]string{"--graceful-timeout", "0"}, `--graceful-timeout: must be a duration from 100ms to 1h, like "30s", got 0s`},
		{[]string{"--startup-timeout", "500ms"}, `--startup-timeout: must be a duration from 1s to 1h, like "30s", got 500ms`},
		{[]string{"--idle-timeout", "500ms"}, `--idle-timeout: must be 0 (never) or a duration from 1s to 720h, like "30s", got 500ms`},
		{[]string{"--queue-timeout", "0"}, `--queue-timeout: must be a duration from 1ms to 1h, like "30s", got 0s`},
		{[]string{"--request-timeout", "0", "--max-body", "0", "--memory-limit", "0", "--idle-timeout", "0"}, ""},
		{[]string{"--processes", "256", "--request-timeout", "24h", "--max-body", "1TiB"}, ""},
		{[]string{"--request-timeout", "300ms", "--graceful-timeout", "500ms"}, ""},
	} {
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		sf := AddServeFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		got := ""
		if err := sf.Check(fs.Changed); err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%v:\n got %q\nwant %q", tc.args, got, tc.want)
		}
	}
}

// One range per key: a value is taken from a file, [defaults] and a
// serve flag alike, or refused by all three (and by App.Validate). For
// each row with a flag, its range's ends and just past them.
func TestOneRangePerKey(t *testing.T) {
	cases := []struct {
		key, value string // the file's TOML value; the flag's is value unquoted
		ok         bool
	}{
		{"processes", "1", true}, {"processes", "257", false},
		{"request_timeout", `"100ms"`, true}, {"request_timeout", `"99ms"`, false}, {"request_timeout", `"24h"`, true}, {"request_timeout", `"25h"`, false},
		{"graceful_timeout", `"100ms"`, true}, {"graceful_timeout", `"99ms"`, false},
		{"startup_timeout", `"1s"`, true}, {"startup_timeout", `"999ms"`, false},
		{"idle_timeout", `"1s"`, true}, {"idle_timeout", `"999ms"`, false},
		{"memory_limit", `"16MiB"`, true}, {"memory_limit", `"15MiB"`, false},
		{"max_body", `"1TiB"`, true}, {"max_body", `"1025GiB"`, false},
	}
	for _, c := range cases {
		_, _, fileErr := ParseAppFile(appPath, []byte("app = \"m:app\"\n"+c.key+" = "+c.value+"\n"), alice, Defaults{})
		_, adminErr := ParseAdmin("/etc/pyhost/pyhost.toml", []byte("[defaults]\n"+c.key+" = "+c.value+"\n"))
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		sf := AddServeFlags(fs)
		if err := fs.Parse([]string{"--" + flagName(c.key), strings.Trim(c.value, `"`)}); err != nil {
			t.Fatal(err)
		}
		flagErr := sf.Check(fs.Changed)
		for what, err := range map[string]error{"app file": fileErr, "[defaults]": adminErr, "serve flag": flagErr} {
			if (err == nil) != c.ok {
				t.Errorf("%s = %s in a %s: %v, want ok %v", c.key, c.value, what, err, c.ok)
			}
		}
	}
}

// The valid-values column of docs/config.md's app-file table says each
// tunable's range as the table has it ("0 (no limit), or 100ms to 24h"):
// a floor lowered in the code and not in the reference (or the other
// way) fails here. docs/cli.md gives each serve flag's range too.
func TestTunableRangesAreDocumented(t *testing.T) {
	data, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := os.ReadFile("../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	column := map[string]string{} // key → its valid-values cell
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "| `") || !strings.Contains(line, "(*tunable*)") {
			continue
		}
		cells := strings.Split(line, "|")
		column[strings.Trim(strings.TrimSpace(cells[1]), "`")] = strings.TrimSpace(cells[4])
	}
	for _, tu := range tunables {
		e := tu.ends()
		if e[0] == "" {
			continue
		}
		want := e[0] + " to " + e[1]
		if cell := column[tu.name()]; !strings.Contains(cell, want) {
			t.Errorf("docs/config.md: %s's valid values are %q; the tunables table's range is %s", tu.name(), cell, want)
		}
		if f := tu.flagName(); f != "" {
			_, line, _ := strings.Cut(string(cli), "| `--"+f+" ")
			line, _, _ = strings.Cut(line, "\n")
			if !strings.Contains(line, want) {
				t.Errorf("docs/cli.md: --%s's line does not give its range, %s", f, want)
			}
		}
	}
}
