package master

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pyhost/pyhost/acme"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/privdrop"
)

func TestACMEDefaultCA(t *testing.T) {
	if config.DefaultACMECA != acme.LetsEncrypt {
		t.Fatalf("config.DefaultACMECA %q is not acme.LetsEncrypt %q", config.DefaultACMECA, acme.LetsEncrypt)
	}
}

// The proxy's policy is every user's patterns, once each.
func TestACMEPatterns(t *testing.T) {
	got := acmePatterns(map[string]config.UserPolicy{
		"alice": {Domains: []string{"alice.example.com", "*.alice.example.com"}},
		"bob":   {Domains: []string{"shop.example.org", "alice.example.com"}},
		"carol": {},
	})
	want := []string{"*.alice.example.com", "alice.example.com", "shop.example.org"}
	if !slices.Equal(got, want) {
		t.Fatalf("acmePatterns = %q, want %q", got, want)
	}
	if got := acmePatterns(nil); len(got) != 0 {
		t.Fatalf("no users: %q", got)
	}
}

// ACMESetup: off without [proxy] acme; with it, DATA_DIR/acme made 0700
// and the proxy user's, a data_dir of 0700 (an older version's) opened
// to 0711, the challenges as disable flags, and a CA root with no
// certificate refused.
func TestACMESetup(t *testing.T) {
	me := privdrop.Credential{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	admin := config.Admin{Daemon: config.Daemon{DataDir: data}, Users: map[string]config.UserPolicy{"alice": {Domains: []string{"*.alice.example.com"}}}}
	if a, err := ACMESetup(admin, me); a != nil || err != nil {
		t.Fatalf("off: %v, %v", a, err)
	}
	admin.Proxy.ACME = &config.ACME{Email: "h@example.com", CA: "https://ca.example.com/dir", Challenges: []string{config.ChallengeTLSALPN01}}
	a, err := ACMESetup(admin, me)
	if err != nil {
		t.Fatal(err)
	}
	if a.Dir != filepath.Join(data, "acme") || !a.DisableHTTP01 || a.DisableTLSALPN01 || a.Email != "h@example.com" || !slices.Equal(a.Patterns, []string{"*.alice.example.com"}) {
		t.Fatalf("ACMESetup = %+v", a)
	}
	for dir, mode := range map[string]os.FileMode{data: 0o711, a.Dir: 0o700} {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v, %v; want mode %v", dir, fi.Mode(), err, mode)
		}
	}
	root := filepath.Join(t.TempDir(), "root.pem")
	os.WriteFile(root, []byte("not a certificate"), 0o600)
	admin.Proxy.ACME.CARoot = root
	if _, err := ACMESetup(admin, me); err == nil {
		t.Fatal("a CA root with no certificate was accepted")
	}
}
