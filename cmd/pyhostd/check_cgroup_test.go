package main

import (
	"strings"
	"testing"

	"github.com/pyhost/pyhost/cgroup"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/privdrop"
)

// Without cgroups, check says so and warns of every limit asked for.
func TestReportCgroupsNone(t *testing.T) {
	var b strings.Builder
	admin := config.Admin{Users: map[string]config.UserPolicy{"alice": {Quota: config.Quota{MaxMemory: 1 << 30}}, "bob": {}}}
	apps := []config.App{
		{Name: "blog", Cred: privdrop.Credential{Username: "alice"}, Limits: cgroup.Limits{MemoryMax: 512 << 20, TasksMax: 64}},
		{Name: "shop", Cred: privdrop.Credential{Username: "bob"}},
	}
	reportCgroups(&b, cgroup.Host{}, admin, apps)
	got := b.String()
	for _, want := range []string{
		"cgroups: none;",
		"warning: [users.alice] max_memory: memory_max is not enforced",
		"warning: alice/blog: memory_max is not enforced",
		"warning: alice/blog: tasks_max is not enforced",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "bob") {
		t.Errorf("bob asks for no limit, yet:\n%s", got)
	}
}
