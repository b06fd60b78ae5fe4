package master

import (
	"slices"
	"testing"

	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/proxy"
)

// An admin's GODEBUG reaches the proxy, so schedtrace=0 in the unit's
// environment turns the proxy's sysmon setting off (docs/design.md).
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
		t.Fatalf("with schedtrace=0 from the admin the proxy would still start again with its own")
	}
	// Without one, the proxy adds its own.
	if _, again := proxy.SysmonEnv(proxyEnv(cred, func(string) string { return "" })); !again {
		t.Fatalf("without the admin's GODEBUG the proxy would not set sysmon's")
	}
}
