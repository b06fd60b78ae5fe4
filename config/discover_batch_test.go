package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pyhost/pyhost/privdrop"
)

// batchRecorder is a BatchPathChecker that records its calls and fails
// the sets naming a path in bad, or every set of a user in broken.
type batchRecorder struct {
	calls  []string // one user name per call
	sets   int
	bad    map[string]bool
	broken map[string]bool
}

func (r *batchRecorder) check(cred privdrop.Credential, wants []map[string]uint32) []error {
	r.calls = append(r.calls, cred.Username)
	r.sets += len(wants)
	errs := make([]error, len(wants))
	for i, w := range wants {
		if r.broken[cred.Username] {
			errs[i] = errors.New("as user " + cred.Username + ": helper died")
			continue
		}
		for p := range w {
			if r.bad[p] {
				errs[i] = errors.New("cannot read " + p)
			}
		}
	}
	return errs
}

func scriptFile(domain, script string) string {
	return "domains = [\"" + domain + "\"]\nscript = \"" + script + "\"\ndirectory = \"/tmp\"\n"
}

// One call per user for all of its apps, each app answered on its own:
// the app whose path fails is refused with its own reason, its
// neighbours load.
func TestDiscoverBatchOneCallPerUserPerAppVerdicts(t *testing.T) {
	ts := newTenants(t, "[users.alice]\ndomains = [\"*.alice.test\"]\n[users.bob]\ndomains = [\"*.bob.test\"]\n")
	ts.file("alice", "a1", scriptFile("a1.alice.test", "one.py"))
	ts.file("alice", "a2", scriptFile("a2.alice.test", "two.py"))
	ts.file("alice", "a3", scriptFile("a3.alice.test", "three.py"))
	ts.file("bob", "b1", scriptFile("b1.bob.test", "one.py"))
	rec := &batchRecorder{bad: map[string]bool{"/tmp/two.py": true}}

	d := DiscoverBatch(ts.admin, ts.lookup, rec.check, Scan{})
	if !reflect.DeepEqual(rec.calls, []string{"alice", "bob"}) || rec.sets != 4 {
		t.Errorf("calls %v for %d sets, want one each for alice and bob, 4 sets", rec.calls, rec.sets)
	}
	if got := keysOf(d); !reflect.DeepEqual(got, []string{"alice/a1", "alice/a3", "bob/b1"}) {
		t.Errorf("loaded %v, want every app but alice/a2 (refused %v)", got, d.Refused)
	}
	if err := refusedFor(d, "alice/a2"); err == nil || !strings.Contains(err.Error(), "cannot read /tmp/two.py") {
		t.Errorf("alice/a2 refused for %v, want its own path's failure", err)
	}
	if len(d.Refused) != 1 {
		t.Errorf("refused %v, want alice/a2 alone", d.Refused)
	}
}

// A user whose check fails as a whole loses their own apps, with the
// reason, and nobody else's.
func TestDiscoverBatchBrokenUserLosesOnlyTheirs(t *testing.T) {
	ts := newTenants(t, "[users.alice]\ndomains = [\"*.alice.test\"]\n[users.bob]\ndomains = [\"*.bob.test\"]\n")
	ts.file("alice", "a1", scriptFile("a1.alice.test", "one.py"))
	ts.file("alice", "a2", scriptFile("a2.alice.test", "two.py"))
	ts.file("bob", "b1", scriptFile("b1.bob.test", "one.py"))
	rec := &batchRecorder{broken: map[string]bool{"alice": true}}

	d := DiscoverBatch(ts.admin, ts.lookup, rec.check, Scan{})
	if got := keysOf(d); !reflect.DeepEqual(got, []string{"bob/b1"}) {
		t.Errorf("loaded %v, want bob/b1 alone", got)
	}
	for _, k := range []string{"alice/a1", "alice/a2"} {
		if err := refusedFor(d, k); err == nil || !strings.Contains(err.Error(), "helper died") {
			t.Errorf("%s refused for %v, want the helper's failure", k, err)
		}
	}
}

// A checker that answers fewer sets than it was asked about refuses the
// unanswered apps rather than letting them in unchecked.
func TestDiscoverBatchShortAnswerRefuses(t *testing.T) {
	ts := newTenants(t, "[users.alice]\ndomains = [\"*.alice.test\"]\n")
	ts.file("alice", "a1", scriptFile("a1.alice.test", "one.py"))
	ts.file("alice", "a2", scriptFile("a2.alice.test", "two.py"))
	short := func(_ privdrop.Credential, wants []map[string]uint32) []error { return make([]error, len(wants)-1) }

	d := DiscoverBatch(ts.admin, ts.lookup, short, Scan{})
	if got := keysOf(d); !reflect.DeepEqual(got, []string{"alice/a1"}) {
		t.Errorf("loaded %v, want alice/a1 alone", got)
	}
	if err := refusedFor(d, "alice/a2"); err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Errorf("alice/a2 refused for %v, want no answer", err)
	}
}

// Discover with a PathChecker says what DiscoverBatch does, one set at
// a time.
func TestDiscoverOneByOneSameVerdicts(t *testing.T) {
	ts := newTenants(t, "[users.alice]\ndomains = [\"*.alice.test\"]\n")
	ts.file("alice", "a1", scriptFile("a1.alice.test", "one.py"))
	ts.file("alice", "a2", scriptFile("a2.alice.test", "two.py"))
	rec := &batchRecorder{bad: map[string]bool{"/tmp/one.py": true}}
	var calls int
	one := func(cred privdrop.Credential, want map[string]uint32) error {
		calls++
		return rec.check(cred, []map[string]uint32{want})[0]
	}
	d := Discover(ts.admin, ts.lookup, one, Scan{})
	if got := keysOf(d); !reflect.DeepEqual(got, []string{"alice/a2"}) || calls != 2 {
		t.Errorf("loaded %v after %d checks, want alice/a2 after 2", got, calls)
	}
}
