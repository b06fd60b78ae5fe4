package proxy

import (
	"slices"
	"testing"
)

func TestSysmonEnv(t *testing.T) {
	cases := []struct {
		name   string
		env    []string
		want   []string
		change bool
	}{
		{"no GODEBUG", []string{"PATH=/bin", "HOME=/"}, []string{"PATH=/bin", "HOME=/", "GODEBUG=" + sysmonGODEBUG}, true},
		{"empty GODEBUG", []string{"GODEBUG=", "PATH=/bin"}, []string{"GODEBUG=" + sysmonGODEBUG, "PATH=/bin"}, true},
		{"other settings kept", []string{"GODEBUG=madvdontneed=1,gctrace=1"}, []string{"GODEBUG=madvdontneed=1,gctrace=1," + sysmonGODEBUG}, true},
		{"schedtrace already set", []string{"GODEBUG=gctrace=1,schedtrace=1000", "PATH=/bin"}, []string{"GODEBUG=gctrace=1,schedtrace=1000", "PATH=/bin"}, false},
		{"the first of duplicates counts", []string{"GODEBUG=gctrace=1", "GODEBUG=schedtrace=5"}, []string{"GODEBUG=gctrace=1," + sysmonGODEBUG}, true},
		{"a name that only ends in GODEBUG", []string{"XGODEBUG=schedtrace=1"}, []string{"XGODEBUG=schedtrace=1", "GODEBUG=" + sysmonGODEBUG}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := slices.Clone(c.env)
			got, change := SysmonEnv(in)
			if change != c.change || !slices.Equal(got, c.want) {
				t.Errorf("SysmonEnv(%q) = %q, %v; want %q, %v", c.env, got, change, c.want, c.change)
			}
			if !slices.Equal(in, c.env) {
				t.Errorf("SysmonEnv changed its argument: %q", in)
			}
		})
	}
	// Applied twice, the second leaves it: the started-again proxy does
	// not start itself a third time.
	once, _ := SysmonEnv([]string{"GODEBUG=gctrace=1"})
	if _, again := SysmonEnv(once); again {
		t.Errorf("SysmonEnv(%q) wants another start", once)
	}
}
