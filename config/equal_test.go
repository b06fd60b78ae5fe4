package config

import (
	"reflect"
	"testing"
	"time"

	"github.com/pyhost/pyhost/privdrop"
)

// Equal compares every field of App, and of the structs it holds by
// value: each one changed alone makes two Apps differ. A field added to
// App and not to Equal fails here (master's reload-config would leave an
// app alone whose file changed only that field).
func TestAppEqualSeesEveryField(t *testing.T) {
	base := App{
		Name: "blog", Cred: privdrop.Credential{UID: 1000, GID: 1000, Groups: []uint32{1000}, Username: "alice", Home: "/home/alice"},
		Python: "python3", Directory: "/srv/blog", Module: "app", Callable: "application",
		Domains: []string{"blog.test"}, Processes: 1, Threads: 1,
		GracefulTimeout: time.Second, StartupTimeout: 5 * time.Second,
		Sandbox: &Sandbox{},
	}
	if !base.Equal(base) {
		t.Fatal("an App differs from itself")
	}
	same := base
	same.Env, base.Env = map[string]string{}, nil
	if !base.Equal(same) {
		t.Error("a nil and an empty Env differ; they say the same")
	}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		for i := range v.NumField() {
			f, name := v.Field(i), path+v.Type().Field(i).Name
			if f.Kind() == reflect.Struct {
				walk(f, name+".")
				continue
			}
			old := reflect.New(f.Type()).Elem()
			old.Set(f)
			f.Set(changedValue(t, name, f))
			a := reflect.ValueOf(&base).Elem().Interface().(App)
			f.Set(old)
			if base.Equal(a) {
				t.Errorf("%s changed alone: Equal says the Apps are the same", name)
			}
		}
	}
	walk(reflect.ValueOf(&base).Elem(), "")
	// The sandbox is a pointer, which the walk above only sets to nil:
	// each of its fields too, changed in a copy of its own.
	sb := reflect.ValueOf(base.Sandbox).Elem()
	for i := range sb.NumField() {
		cp := *base.Sandbox
		f, name := reflect.ValueOf(&cp).Elem().Field(i), "Sandbox."+sb.Type().Field(i).Name
		f.Set(changedValue(t, name, f))
		other := base
		other.Sandbox = &cp
		if base.Equal(other) {
			t.Errorf("%s changed alone: Equal says the Apps are the same", name)
		}
	}
}

// changedValue is a value of f's type other than f's.
func changedValue(t *testing.T, name string, f reflect.Value) reflect.Value {
	v := reflect.New(f.Type()).Elem()
	switch f.Kind() {
	case reflect.String:
		v.SetString(f.String() + "x")
	case reflect.Bool:
		v.SetBool(!f.Bool())
	case reflect.Int, reflect.Int64:
		v.SetInt(f.Int() + int64(time.Second))
	case reflect.Uint32:
		v.SetUint(f.Uint() + 1)
	case reflect.Slice:
		v = reflect.Append(f, reflect.New(f.Type().Elem()).Elem())
	case reflect.Map:
		v = reflect.MakeMap(f.Type())
		v.SetMapIndex(reflect.ValueOf("CHANGED"), reflect.ValueOf("1"))
	case reflect.Pointer:
		if f.IsNil() {
			v = reflect.New(f.Type().Elem())
		} // else: nil
	default:
		t.Fatalf("%s: a field of kind %s; teach changedValue and App.Equal about it", name, f.Kind())
	}
	return v
}
