package config

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pyhost/pyhost/privdrop"
)

// shortPathCheck makes PathCheckTimeout and stopGrace short for a test.
func shortPathCheck(t *testing.T) {
	t.Helper()
	d, g := PathCheckTimeout, stopGrace
	t.Cleanup(func() { PathCheckTimeout, stopGrace = d, g })
	PathCheckTimeout, stopGrace = 50*time.Millisecond, 50*time.Millisecond
}

// A user whose path check never answers (a path on a hung NFS mount)
// must not stall a scan (a boot, a reload-config) for ever: that user's
// files are refused naming the timeout, the other users' apps load.
// Before the bound, DiscoverBatch waited as long as the check did.
func TestDiscoverBatchHungUserLosesOnlyTheirs(t *testing.T) {
	shortPathCheck(t)
	ts := newTenants(t, "[users.alice]\ndomains = [\"*.alice.test\"]\n[users.bob]\ndomains = [\"*.bob.test\"]\n")
	ts.file("alice", "a1", scriptFile("a1.alice.test", "one.py"))
	ts.file("alice", "a2", scriptFile("a2.alice.test", "two.py"))
	ts.file("bob", "b1", scriptFile("b1.bob.test", "one.py"))
	hung := make(chan struct{})
	defer close(hung) // the abandoned check ends with the test
	check := func(cred privdrop.Credential, wants []map[string]uint32) []error {
		if cred.Username == "alice" {
			<-hung
		}
		return make([]error, len(wants))
	}

	d := DiscoverBatch(ts.admin, ts.lookup, check, Scan{})
	if got := keysOf(d); !reflect.DeepEqual(got, []string{"bob/b1"}) {
		t.Errorf("loaded %v, want bob/b1 alone", got)
	}
	for k, script := range map[string]string{"alice/a1": "/tmp/one.py", "alice/a2": "/tmp/two.py"} {
		err := refusedFor(d, k)
		if !errors.Is(err, ErrPathCheckTimeout) {
			t.Errorf("%s refused for %v, want ErrPathCheckTimeout", k, err)
			continue
		}
		for _, want := range []string{"within 50ms", "as user alice", script} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q lacks %q", k, err, want)
			}
		}
	}
}

// With a check that honours its context (privdrop.CheckManyAsUserContext,
// which kills its helper), the scan stops the hung check at the bound and
// waits for it to return: nothing of it is left.
func TestDiscoverBatchContextStopsHungCheck(t *testing.T) {
	shortPathCheck(t)
	stopGrace = time.Minute // the check returns at once when stopped
	ts := newTenants(t, "[users.alice]\ndomains = [\"*.alice.test\"]\n[users.bob]\ndomains = [\"*.bob.test\"]\n")
	ts.file("alice", "a1", scriptFile("a1.alice.test", "one.py"))
	ts.file("bob", "b1", scriptFile("b1.bob.test", "one.py"))
	var stopped []string
	check := func(ctx context.Context, cred privdrop.Credential, wants []map[string]uint32) []error {
		if cred.Username == "alice" {
			<-ctx.Done()
			stopped = append(stopped, cred.Username) // read after the scan: returned
		}
		return make([]error, len(wants))
	}

	d := DiscoverBatchContext(context.Background(), ts.admin, ts.lookup, check, Scan{})
	if got := keysOf(d); !reflect.DeepEqual(got, []string{"bob/b1"}) {
		t.Errorf("loaded %v, want bob/b1 alone", got)
	}
	if err := refusedFor(d, "alice/a1"); !errors.Is(err, ErrPathCheckTimeout) {
		t.Errorf("alice/a1 refused for %v, want ErrPathCheckTimeout", err)
	}
	if !reflect.DeepEqual(stopped, []string{"alice"}) {
		t.Errorf("stopped checks %v, want alice's, returned before the scan did", stopped)
	}
}
