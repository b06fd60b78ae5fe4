package master

import (
	"errors"
	"os/user"
	"strings"
	"testing"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
)

// pyctl check on an express daemon is answered the same to every uid
// that reaches its socket, one with no passwd entry (a container's)
// too: it has no policy to check by. It answered such a uid with the
// failed lookup ("user: unknown userid 4242424"), a reason about the
// caller where there is one about the daemon. Everything else such a
// uid may do is what any uid may: the serve user's app is not theirs.
func TestExpressCheckForAUidWithoutPasswd(t *testing.T) {
	const nobodyKnows = 4242424
	if _, err := user.LookupId("4242424"); err == nil {
		t.Skip("uid 4242424 has a passwd entry here")
	}
	m, _ := newTestMaster(t, NewExpress(testApp(alice, "blog")))
	c := control.Caller{UID: nobodyKnows}
	if err := m.Check(ctxBg, c, "/srv/x.toml"); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("check for a uid with no passwd entry: %v, want ErrNoPolicy (%v)", err, ErrNoPolicy)
	}
	if rows, err := m.Status(ctxBg, c, ""); err != nil || len(rows) != 0 {
		t.Errorf("status for a uid with no passwd entry: %v, %v; want no app, no error", rows, err)
	}
	if err := m.Act(ctxBg, c, control.ActionStop, "blog", noLines); !errors.Is(err, control.ErrNoSuchApp) {
		t.Errorf("stop for a uid with no passwd entry: %v, want no such app", err)
	}
}

// A tenant's check of an admin_dir file, or of another tenant's file,
// is answered as what it is, a file that is not theirs to check (access
// denied, saying why), not as a file the daemon would refuse: the
// daemon runs it.
func TestCheckOfAnAdminDirFileIsNoRefusal(t *testing.T) {
	cat := systemCatalog()
	m, _ := newTestMaster(t, cat)
	for _, c := range []struct {
		path, why string
		err       error
	}{
		{"/etc/pyhost/apps.d/site.toml", "a file of admin_dir (/etc/pyhost/apps.d): the admin deploys it", config.ErrAdminDir},
		{"/home/bob/.config/pyhost/apps/shop.toml", "is not owned by the app's owner (you, uid 1) but by bob (uid 1001)", config.ErrNotYours},
	} {
		cat.checkErr = &config.Error{File: c.path, Msg: c.why, Err: c.err}
		err := m.Check(ctxBg, aliceC, c.path)
		var rerr *control.ReloadError
		if !errors.Is(err, control.ErrAccessDenied) || errors.As(err, &rerr) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("alice checking %s: %v, want access denied saying why", c.path, err)
		}
	}
}
