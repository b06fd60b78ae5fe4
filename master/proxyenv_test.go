package master

import (
	"slices"
	"testing"

	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/proxy"
)

// The proxy starts with the sysmon setting (proxy/sysmon.go), and an
// admin's GODEBUG reaches it, so schedtrace=0 in the unit's environment
// turns that setting off (docs/design.md).
func TestProxyEnvPassesGODEBUG(t *testing.T) {
	cred := privdrop.Credential{Username: "pyhost", Home: "/nonexistent"}
	env := proxyEnv(cred, func(k string) string {
		return map[string]string{"GODEBUG": "schedtrace=0", "SECRET": "x"}[k]
	})
	if !slices.Contains(env, "GODEBUG=schedtrace=0") {
		t.Fatalf("proxy env %q lacks the daemon's GODEBUG", env)
	}
	if slices.ContainsFunc(env, func(kv string) bool { return kv == "SECRET=x" }) {
		t.Fatalf("proxy env %q carries a variable it does not name", env)
	}
	if _, again := proxy.SysmonEnv(env); again {
		t.Fatalf("with schedtrace=0 from the admin the proxy would still get its own setting")
	}
	// Without one, the proxy gets its own.
	env = proxyEnv(cred, func(string) string { return "" })
	if !slices.Contains(env, "GODEBUG=schedtrace=2147483647") {
		t.Fatalf("proxy env %q lacks the sysmon setting", env)
	}
}
