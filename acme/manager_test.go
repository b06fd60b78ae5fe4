package acme

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mholt/acmez/v3/acme"
)

func TestNewRejects(t *testing.T) {
	for what, cfg := range map[string]Config{
		"no directory":         {},
		"both challenges off":  {Dir: t.TempDir(), DisableHTTP01: true, DisableTLSALPN01: true},
		"plain-http CA":        {Dir: t.TempDir(), CA: "http://ca.example.com/dir"},
		"CA that is not a URL": {Dir: t.TempDir(), CA: "ca.example.com"},
	} {
		if m, err := New(cfg); err == nil {
			m.Close()
			t.Errorf("%s: New accepted %+v", what, cfg)
		}
	}
}

// unreachableCA is a Manager whose CA refuses connections: everything the
// proxy calls must still answer at once, and the failure must show in Status
// with the name.
func unreachableCA(t *testing.T) *Manager {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	m, err := New(Config{CA: "https://" + addr + "/dir", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func TestServingNeverWaitsOnTheCA(t *testing.T) {
	m := unreachableCA(t)
	const name = "slow.pyhost.example.com"
	m.SetNames([]string{name, name, "SLOW.pyhost.example.com."}) // one name
	if st := m.Status(); len(st) != 1 || st[0].Name != name || !st[0].Managed || st[0].Obtained {
		t.Fatalf("status = %+v", st)
	}
	hello := &tls.ClientHelloInfo{ServerName: name, SupportedProtos: []string{"h2", "http/1.1"}}
	if c, err := m.GetCertificate(hello); c != nil || err != nil {
		t.Fatalf("GetCertificate before obtaining = %v, %v; want nil, nil (fall back)", c, err)
	}
	other := &tls.ClientHelloInfo{ServerName: "other.example.com"}
	if c, err := m.GetCertificate(other); c != nil || err != nil {
		t.Fatalf("GetCertificate for an unmanaged name = %v, %v", c, err)
	}
	challenge := &tls.ClientHelloInfo{ServerName: name, SupportedProtos: []string{ALPNProto}}
	if c, err := m.GetCertificate(challenge); c != nil || err == nil {
		t.Fatalf("GetCertificate for a challenge nobody presented = %v, %v; want an error", c, err)
	}
	rec := httptest.NewRecorder()
	if m.HTTPChallenge(rec, httptest.NewRequest(http.MethodGet, "http://"+name+challengePath+"unknown", nil)) {
		t.Fatal("HTTPChallenge answered an unknown token")
	}
	eventually(t, 10*time.Second, "the failure recorded in Status", func() bool {
		st := m.Status()
		return len(st) == 1 && st[0].LastError != nil && !st[0].LastErrorAt.IsZero()
	})
	// Setting the same names again changes nothing; an empty set stops all.
	m.SetNames([]string{name})
	if st := m.Status(); len(st) != 1 || st[0].LastError == nil {
		t.Fatalf("status after the same names again = %+v", st)
	}
	m.SetNames(nil)
	if st := m.Status(); len(st) != 0 {
		t.Fatalf("status after SetNames(nil) = %+v", st)
	}
	m.Close()
	m.Close() // idempotent
	m.SetNames([]string{name})
	if st := m.Status(); len(st) != 0 {
		t.Fatalf("SetNames after Close started managing: %+v", st)
	}
}

func TestChallengeAnswers(t *testing.T) {
	m, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	ch := acme.Challenge{
		Type:             acme.ChallengeTypeHTTP01,
		Token:            "tok",
		KeyAuthorization: "tok.thumb",
		Identifier:       acme.Identifier{Type: "dns", Value: "a.pyhost.example.com"},
	}
	if err := (http01{m.chal}).Present(ctx, ch); err != nil {
		t.Fatal(err)
	}
	get := func(method, host, path string) (bool, string) {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(method, "http://"+host+path, nil)
		return m.HTTPChallenge(rec, r), rec.Body.String()
	}
	if ok, body := get(http.MethodGet, "a.pyhost.example.com", challengePath+"tok"); !ok || body != "tok.thumb" {
		t.Fatalf("answer = %v %q", ok, body)
	}
	if ok, _ := get(http.MethodGet, "A.pyhost.example.com:80", challengePath+"tok"); !ok {
		t.Fatal("no answer with a port and another case in Host")
	}
	if ok, _ := get(http.MethodGet, "b.pyhost.example.com", challengePath+"tok"); ok {
		t.Fatal("token answered for another host")
	}
	if ok, _ := get(http.MethodPost, "a.pyhost.example.com", challengePath+"tok"); ok {
		t.Fatal("token answered to a POST")
	}
	if ok, _ := get(http.MethodGet, "a.pyhost.example.com", "/tok"); ok {
		t.Fatal("token answered outside the challenge path")
	}
	(http01{m.chal}).CleanUp(ctx, ch)
	if ok, _ := get(http.MethodGet, "a.pyhost.example.com", challengePath+"tok"); ok {
		t.Fatal("token answered after clean-up")
	}

	ch.Type = acme.ChallengeTypeTLSALPN01
	if err := (tlsALPN01{m.chal}).Present(ctx, ch); err != nil {
		t.Fatal(err)
	}
	hello := &tls.ClientHelloInfo{ServerName: "a.pyhost.example.com", SupportedProtos: []string{ALPNProto}}
	c, err := m.GetCertificate(hello)
	if err != nil || c == nil {
		t.Fatalf("challenge certificate = %v, %v", c, err)
	}
	// A browser offering acme-tls/1 among others is not a validator.
	hello.SupportedProtos = []string{"h2", ALPNProto}
	if c, err := m.GetCertificate(hello); c != nil || err != nil {
		t.Fatalf("ordinary hello got %v, %v", c, err)
	}
	if got := m.NextProtos(); len(got) != 1 || got[0] != ALPNProto {
		t.Fatalf("NextProtos = %q", got)
	}
}
