package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pyhost/pyhost/cgroup"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// Golden files: testdata/appfile/NAME.toml is parsed as alice's
// ~/.config/pyhost/apps/NAME.toml, testdata/admin/NAME.toml as
// /etc/pyhost/pyhost.toml; NAME.golden holds every error message, or
// "OK" and the resulting value. `go test ./config -run Golden -update`
// rewrites them; review the diff.

func TestGoldenAppFiles(t *testing.T) {
	golden(t, "testdata/appfile", func(name string, data []byte) string {
		app, meta, err := ParseAppFile(appDir+"/"+name, data, alice, Defaults{})
		if err != nil {
			checkErrors(t, name, err)
			return err.Error() + "\n"
		}
		return "OK\n" + dump(app, "") + "User: " + meta.User + "\n"
	})
}

func TestGoldenAdminFiles(t *testing.T) {
	golden(t, "testdata/admin", func(name string, data []byte) string {
		a, err := ParseAdmin(DefaultAdminFile, data)
		if err != nil {
			checkErrors(t, name, err)
			return err.Error() + "\n"
		}
		return "OK\n" + dump(a, "")
	})
}

func golden(t *testing.T, dir string, run func(name string, data []byte) string) {
	t.Helper()
	inputs, err := filepath.Glob(filepath.Join(dir, "*.toml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs in %s: %v", dir, err)
	}
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		got := run(filepath.Base(in), data)
		file := strings.TrimSuffix(in, ".toml") + ".golden"
		if *update {
			if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("%s: %v (run with -update to create it)", in, err)
			continue
		}
		if got != string(want) {
			t.Errorf("%s: output differs from %s (run with -update and review the diff)\ngot:\n%s\nwant:\n%s", in, file, got, want)
		}
	}
}

// checkErrors checks the invariants of every error the parsers return.
func checkErrors(t *testing.T, name string, err error) {
	t.Helper()
	var es Errors
	if !errors.As(err, &es) || len(es) == 0 {
		t.Errorf("%s: error %T is not a non-empty Errors", name, err)
		return
	}
	for i, e := range es {
		if e.Msg == "" || e.File == "" || i > 0 && e.Line < es[i-1].Line && e.Line != 0 {
			t.Errorf("%s: bad error %d: %#v", name, i, e)
		}
	}
}

// dump renders a value one field a line, durations and sizes readable.
func dump(v any, indent string) string {
	var b bytes.Buffer
	rv := reflect.ValueOf(v)
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		f, fv := rt.Field(i), rv.Field(i)
		if !f.IsExported() {
			continue
		}
		switch {
		case f.Type == reflect.TypeFor[Defaults]():
			fmt.Fprintf(&b, "%s%s:\n%s", indent, f.Name, dump(viewDefaults(fv.Interface().(Defaults)), indent+"  "))
		case fv.Kind() == reflect.Struct && f.Type.PkgPath() == rt.PkgPath():
			fmt.Fprintf(&b, "%s%s:\n%s", indent, f.Name, dump(fv.Interface(), indent+"  "))
		case fv.Kind() == reflect.Map && fv.Type().Elem().Kind() == reflect.Struct:
			fmt.Fprintf(&b, "%s%s:\n", indent, f.Name)
			keys := fv.MapKeys()
			sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
			for _, k := range keys {
				fmt.Fprintf(&b, "%s  %s:\n%s", indent, k, dump(fv.MapIndex(k).Interface(), indent+"    "))
			}
		case fv.Type() == reflect.TypeOf(time.Duration(0)):
			fmt.Fprintf(&b, "%s%s: %s\n", indent, f.Name, fv.Interface())
		default:
			fmt.Fprintf(&b, "%s%s: %+v\n", indent, f.Name, fv.Interface())
		}
	}
	return b.String()
}

// defaultsView is what Defaults holds, the fields it had before it became
// an App (of which it sets only these), in the goldens' order.
type defaultsView struct {
	Python          string
	Processes       int
	Threads         int
	MemoryLimit     int64
	MaxRequests     int
	MaxBody         int64
	QueueLimit      int
	RequestTimeout  time.Duration
	GracefulTimeout time.Duration
	StartupTimeout  time.Duration
	IdleTimeout     time.Duration
	QueueTimeout    time.Duration
	HTTPSOnly       bool
	HSTS            string
	Limits          cgroup.Limits
}

func viewDefaults(d Defaults) defaultsView {
	return defaultsView{d.Python, d.Processes, d.Threads, d.MemoryLimit, d.MaxRequests, d.MaxBody, d.QueueLimit,
		d.RequestTimeout, d.GracefulTimeout, d.StartupTimeout, d.IdleTimeout, d.QueueTimeout, d.HTTPSOnly, d.HSTS, d.Limits}
}
