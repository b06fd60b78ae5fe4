package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/master"
)

// writePair writes a self-signed certificate for names, valid until
// notAfter, and its key into dir as NAME.pem and NAME.key.
func writePair(t *testing.T, dir, name string, notAfter time.Time, names ...string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: notAfter.Add(-90 * 24 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(k)
	cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return cert, key
}

// T7: check (and run) judge the [[tls]] pairs as they would be loaded.
func TestCheckTLS(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	month := 30 * 24 * time.Hour
	goodCert, goodKey := writePair(t, dir, "good", now.Add(3*month), "alice.example.com", "*.alice.example.com")
	soonCert, soonKey := writePair(t, dir, "soon", now.Add(48*time.Hour), "bob.example.com")
	oldCert, oldKey := writePair(t, dir, "old", now.Add(-time.Hour), "old.example.com")
	_, otherKey := writePair(t, dir, "other", now.Add(month), "other.example.com")
	apps := []config.App{
		app("alice", "blog", "blog.alice.example.com", "/"),
		app("alice", "api", "alice.example.com", "/api"),
		app("bob", "site", "bob.example.com", "/"),
		app("bob", "shop", "shop.bob.example.com", "/"),
	}
	parse := func(tlsListen string, pairs ...[2]string) config.Admin {
		t.Helper()
		src := "[proxy]\nuser = \"www-data\"\n" + tlsListen + "\n"
		for _, p := range pairs {
			src += fmt.Sprintf("[[tls]]\ncert = %q\nkey = %q\n", p[0], p[1])
		}
		admin, err := config.ParseAdmin(config.DefaultAdminFile, []byte(src+users))
		if err != nil {
			t.Fatal(err)
		}
		return admin
	}
	listen := `tls_listen = [":443"]`

	problems, warnings := checkTLS(parse(listen, [2]string{goodCert, goodKey}, [2]string{soonCert, soonKey}), apps, config.ReadCertPair, now)
	if problems != nil || len(warnings) != 2 ||
		!strings.Contains(warnings[0].Error(), ":8: tls[1].cert: "+soonCert+" expires on ") || !strings.HasSuffix(warnings[0].Error(), "renew it") ||
		!strings.Contains(warnings[1].Error(), "no [[tls]] certificate covers shop.bob.example.com (app bob/shop)") {
		t.Errorf("good and soon: %v %v", problems, warnings)
	}
	// Without tls_listen nothing is served over TLS: no coverage warning.
	if problems, warnings := checkTLS(parse("", [2]string{goodCert, goodKey}), apps, config.ReadCertPair, now); problems != nil || warnings != nil {
		t.Errorf("no tls_listen: %v %v", problems, warnings)
	}
	_, warnings = checkTLS(parse(listen, [2]string{oldCert, oldKey}), apps[:0], config.ReadCertPair, now)
	if len(warnings) != 1 || !strings.Contains(warnings[0].Error(), oldCert+" expired on ") {
		t.Errorf("expired: %v", warnings)
	}
	missing := filepath.Join(dir, "missing.pem")
	problems, _ = checkTLS(parse(listen, [2]string{goodCert, goodKey}, [2]string{missing, goodKey}, [2]string{goodCert, otherKey}), apps, config.ReadCertPair, now)
	if len(problems) != 2 ||
		!strings.Contains(problems[0].Error(), ":7: tls[1]: [[tls]] open "+missing+": no such file or directory") ||
		!strings.Contains(problems[1].Error(), ":10: tls[2]: [[tls]] "+otherKey+" is not the key of "+goodCert) {
		t.Errorf("a missing file and a mismatched key: %v", problems)
	}

	// run refuses exactly these, with the rest of the admin file's.
	admin := parse(listen, [2]string{missing, goodKey})
	s := checkSystemWith(admin, apps, fakeLookup, files.lstat)
	if len(s.Certs) != 1 || len(s.refusals()) != 1 || s.Problems != nil {
		t.Errorf("checkSystem: %+v", s)
	}
}

func TestServeListen(t *testing.T) {
	listen, tlsListen, certs, err := serveListen(serveFlags{listen: "127.0.0.1:8000"})
	if err != nil || len(listen) != 1 || tlsListen != nil || certs != nil {
		t.Errorf("plain: %v %v %v %v", listen, tlsListen, certs, err)
	}
	dir := t.TempDir()
	_, key := writePair(t, dir, "c", time.Now().Add(24*time.Hour), "localhost")
	t.Chdir(dir)
	listen, tlsListen, certs, err = serveListen(serveFlags{listen: "127.0.0.1:8443", tlsCert: "c.pem", tlsKey: key})
	if err != nil || listen != nil || len(tlsListen) != 1 || tlsListen[0] != "127.0.0.1:8443" || len(certs) != 1 ||
		certs[0].Cert != filepath.Join(dir, "c.pem") || certs[0].Key != key {
		t.Errorf("HTTPS: %v %v %v %v", listen, tlsListen, certs, err)
	}
	for _, f := range []serveFlags{{tlsCert: "c.pem"}, {tlsKey: "k.pem"}} {
		if _, _, _, err := serveListen(f); err == nil || !strings.Contains(err.Error(), "needs --tls-") {
			t.Errorf("%+v: %v", f, err)
		}
	}
}

// [proxy] acme in check: a domain ACME can obtain needs no [[tls]] pair
// (a wildcard or special-use one still warns, saying why); no listener
// on 80 or 443 for the challenges offered warns; a ca_root without a
// certificate is a problem.
func TestCheckACME(t *testing.T) {
	parse := func(src string) config.Admin {
		t.Helper()
		admin, err := config.ParseAdmin(config.DefaultAdminFile, []byte("[proxy]\nuser = \"www-data\"\n"+src+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		return admin
	}
	apps := []config.App{
		app("alice", "blog", "blog.alice.example.com", "/"),
		app("alice", "all", "*.shop.alice.example.com", "/"),
		app("bob", "dev", "bob.test", "/"),
	}
	admin := parse("listen = [\":80\"]\ntls_listen = [\":443\"]\nacme = {}")
	problems, warnings := checkTLS(admin, apps, config.ReadCertPair, time.Now())
	if problems != nil || len(warnings) != 2 || !strings.Contains(warnings.Error(), "*.shop.alice.example.com") || !strings.Contains(warnings.Error(), "wildcard") ||
		!strings.Contains(warnings.Error(), "bob.test") || strings.Contains(warnings.Error(), "blog.alice.example.com") {
		t.Errorf("checkTLS with acme: %v / %v", problems, warnings)
	}
	if w := acmeWarnings(admin); w != nil {
		t.Errorf("ports 80 and 443: %v", w)
	}
	for src, warn := range map[string]bool{
		"listen = [\":8080\"]\ntls_listen = [\":443\"]\nacme = {}":                                false,
		"listen = [\":80\"]\ntls_listen = [\":8443\"]\nacme = {}":                                 false,
		"listen = [\":8080\"]\ntls_listen = [\":8443\"]\nacme = {}":                               true,
		"listen = [\":80\"]\ntls_listen = [\":8443\"]\nacme = { challenges = [\"tls-alpn-01\"] }": true,
		"listen = [\":8080\"]\ntls_listen = [\":443\"]\nacme = { challenges = [\"http-01\"] }":    true,
		"listen = [\":8080\"]\ntls_listen = [\":8443\"]\n[[tls]]\ncert = \"/c\"\nkey = \"/k\"":    false,
	} {
		if w := acmeWarnings(parse(src)); (w != nil) != warn || warn && w[0].Key != "proxy.acme" {
			t.Errorf("%s:\nwarnings %v, want a warning: %v", src, w, warn)
		}
	}

	dir := t.TempDir()
	root := filepath.Join(dir, "root.pem")
	os.WriteFile(root, []byte("no certificate here"), 0o644)
	admin = parse(fmt.Sprintf("tls_listen = [\":443\"]\nacme = { ca_root = %q }", root))
	if p := acmeProblems(admin, master.ReadACMERoot); len(p) != 1 || p[0].Key != "proxy.acme.ca_root" || !strings.Contains(p[0].Msg, "holds no PEM certificate") {
		t.Errorf("a ca_root with no certificate: %v", p)
	}
	cert, _ := writePair(t, dir, "root", time.Now().Add(time.Hour), "ca.example.com")
	admin = parse(fmt.Sprintf("tls_listen = [\":443\"]\nacme = { ca_root = %q }", cert))
	if p := acmeProblems(admin, master.ReadACMERoot); p != nil {
		t.Errorf("a good ca_root: %v", p)
	}
	admin = parse(fmt.Sprintf("tls_listen = [\":443\"]\nacme = { ca_root = %q }", filepath.Join(dir, "missing.pem")))
	if p := acmeProblems(admin, master.ReadACMERoot); len(p) != 1 || !strings.Contains(p[0].Msg, "no such file") {
		t.Errorf("a missing ca_root: %v", p)
	}
}

// serve's HTTPS files are named by serve's flags: a broken or missing
// --tls-cert or --tls-key is refused before anything starts, with no word
// of the admin file's [[tls]] table, which serve's user never wrote.
func TestServeTLSFlagErrors(t *testing.T) {
	dir := t.TempDir()
	cert, key := writePair(t, dir, "good", time.Now().Add(30*24*time.Hour), "localhost")
	_, otherKey := writePair(t, dir, "other", time.Now().Add(30*24*time.Hour), "localhost")
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a PEM file\n"), 0o644)
	for _, tc := range []struct {
		name, cert, key string
		want            []string // in the error; none: no error
	}{
		{"good", cert, key, nil},
		{"key alone", "", key, []string{"--tls-key needs --tls-cert"}},
		{"cert alone", cert, "", []string{"--tls-cert needs --tls-key"}},
		{"broken cert", garbage, key, []string{"--tls-cert", garbage, "certificate"}},
		{"broken key", cert, garbage, []string{"--tls-key", garbage}},
		{"missing key", cert, filepath.Join(dir, "gone.key"), []string{"--tls-key", "gone.key", "no such file"}},
		{"not the cert's key", cert, otherKey, []string{"--tls-key", otherKey, "is not the key of"}},
		{"a directory", dir, key, []string{"--tls-cert", "not a regular file"}},
	} {
		_, tlsListen, certs, err := serveListen(serveFlags{listen: "127.0.0.1:8443", tlsCert: tc.cert, tlsKey: tc.key})
		if tc.want == nil {
			if err != nil || len(tlsListen) != 1 || len(certs) != 1 {
				t.Errorf("%s: %v (tls on %v, certs %v)", tc.name, err, tlsListen, certs)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", tc.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "[[tls]]") {
			t.Errorf("%s: %q speaks of [[tls]], an admin file's table", tc.name, err)
		}
	}
}
