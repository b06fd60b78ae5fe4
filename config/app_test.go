package config

import "testing"

func TestUmaskBits(t *testing.T) {
	for _, c := range []struct {
		umask string
		want  uint32
	}{{"", 0o027}, {"022", 0o022}, {"0077", 0o077}, {"000", 0}} {
		if got := (App{Umask: c.umask}).UmaskBits(); got != c.want {
			t.Errorf("%q: %o, want %o", c.umask, got, c.want)
		}
	}
	for _, bad := range []string{"27", "028", "1777", "abc", "00000"} {
		if _, ok := parseUmask(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}
