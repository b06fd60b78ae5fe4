package applog

import (
	"context"
	"path/filepath"
	"testing"
)

func TestAppendRaw(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "blog.access.log"), -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Append([]byte("one\ntwo\n"))
	l.Append(nil)
	l.Append([]byte("three\n"))
	var got []string
	if err := l.Tail(context.Background(), 10, false, func(s string) error { got = append(got, s); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != "one" || got[2] != "three" {
		t.Errorf("lines %q", got)
	}
}
