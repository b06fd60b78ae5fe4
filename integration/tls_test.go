package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCA signs the certificates a test serves; clients trust only it.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pyhost test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert, key, pool}
}

// issue writes a certificate for names (valid for a day; its serial
// tells one issue from the next) and its key into dir as NAME.pem and
// NAME.key, the key readable by root only, and returns the two paths.
func (ca *testCA) issue(t *testing.T, dir, name string, names ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// client trusts ca, connects to addr whatever a URL's host (so URLs
// name the site: https://ann.tls.test/ is its SNI and Host), and speaks
// HTTP/2 when h2 is set (else HTTP/1.1 over TLS).
func (ca *testCA) client(addr string, h2 bool) *http.Client {
	var d net.Dialer
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca.pool},
		ForceAttemptHTTP2: h2,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// servedCert is the certificate addr serves for SNI name (verified
// against ca unless name is "", when it is only read).
func (ca *testCA) servedCert(t *testing.T, addr, name string) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool, ServerName: name, InsecureSkipVerify: name == ""})
	if err != nil {
		t.Fatalf("handshake with %s as %q: %v", addr, name, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// tlsApp answers with what the app sees (GET), the size and SHA-256 of
// a body (POST), and on /stream a chunk, then (once the file "release"
// exists beside it) a second one.
func tlsApp(label string) string {
	return fmt.Sprintf(`import hashlib, json, os, time
HERE = os.path.dirname(os.path.abspath(__file__))
def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/big":
        body = b"x" * (3 << 20)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        def gen():
            yield b"first;"
            deadline = time.time() + 20
            while not os.path.exists(os.path.join(HERE, "release")) and time.time() < deadline:
                time.sleep(0.01)
            yield b"second"
        return gen()
    if environ["REQUEST_METHOD"] == "POST":
        h, n = hashlib.sha256(), 0
        while True:
            b = environ["wsgi.input"].read(65536)
            if not b:
                break
            h.update(b)
            n += len(b)
        body = ("%%d %%s" %% (n, h.hexdigest())).encode()
    else:
        keys = ("wsgi.url_scheme", "HTTPS", "SERVER_PROTOCOL", "REMOTE_ADDR", "SERVER_PORT")
        seen = {k: environ.get(k) for k in keys}
        seen["label"] = %q
        body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`, label)
}

// seen is what tlsApp reports for a GET.
func seenBy(t *testing.T, c *http.Client, url string) map[string]*string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var seen map[string]*string
	if err := json.Unmarshal(b, &seen); err != nil {
		t.Fatalf("GET %s: %d %q: %v", url, resp.StatusCode, b, err)
	}
	return seen
}

func str(p *string) string {
	if p == nil {
		return "<none>"
	}
	return *p
}

// writeTLSAdmin replaces pyhost.toml with the harness's config plus
// tls_listen on tlsAddr, proxyKeys in [proxy], and a [[tls]] table per
// pair (cert, key).
func (d *sysd) writeTLSAdmin(tlsAddr string, pairs [][2]string, proxyKeys, extra string) {
	d.t.Helper()
	conf := strings.Replace(d.adminConfig(extra), "[proxy]\n", fmt.Sprintf("[proxy]\ntls_listen = [%q]\n%s", tlsAddr, proxyKeys), 1)
	for _, p := range pairs {
		conf += fmt.Sprintf("\n[[tls]]\ncert = %q\nkey = %q\n", p[0], p[1])
	}
	if err := os.WriteFile(d.admin, []byte(conf), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// TestHTTPSSystem: pyhostd run with tls_listen and two users' domains,
// each with its own certificate: SNI picks each, a name nothing covers
// gets the first pair; HTTP/2 and HTTP/1.1 over TLS reach the apps with
// wsgi.url_scheme https, HTTPS=on and the protocol spoken; a 3 MiB POST,
// a streamed response and 100 concurrent streams on one connection over
// HTTP/2; a renewed certificate is served after reload-config while a
// connection opened before it goes on; a broken one keeps the old.
func TestHTTPSSystem(t *testing.T) {
	t.Parallel()
	const ann, bob = "pyh-tls-ann", "pyh-tls-bob"
	users := fmt.Sprintf("[users.%s]\ndomains = [\"ann.tls.test\"]\n[users.%s]\ndomains = [\"bob.tls.test\"]\n", ann, bob)
	ua, ub := makeUser(t, ann), makeUser(t, bob)
	d := newSysd(t, users)
	deployNamed(t, ua, "site", "ann", `"ann.tls.test"`, "")
	writeOwned(t, ua, filepath.Join(userApps(ua), "site.toml"), "domains = [\"ann.tls.test\"]\nscript = \"wsgi.py\"\ndirectory = \"~/site\"\nthreads = 8\nmax_body = \"4MiB\"\n", 0o644)
	writeOwned(t, ua, filepath.Join(ua.home, "site", "wsgi.py"), tlsApp("ann"), 0o644)
	deployNamed(t, ub, "site", "bob", `"bob.tls.test"`, "https_only = true\nhsts = \"max-age=63072000; includeSubDomains\"")
	writeOwned(t, ub, filepath.Join(ub.home, "site", "wsgi.py"), tlsApp("bob"), 0o644)
	os.Remove(filepath.Join(ua.home, "site", "release"))

	ca := newTestCA(t)
	tlsDir := filepath.Join(d.base, "tls")
	os.MkdirAll(tlsDir, 0o700)
	certA, keyA := ca.issue(t, tlsDir, "ann", "ann.tls.test")
	certB, keyB := ca.issue(t, tlsDir, "bob", "bob.tls.test")
	tlsAddr := freePort(t)
	d.writeTLSAdmin(tlsAddr, [][2]string{{certA, keyA}, {certB, keyB}}, "", users)
	d.start()

	// SNI.
	if cn := ca.servedCert(t, tlsAddr, "ann.tls.test").Subject.CommonName; cn != "ann.tls.test" {
		t.Errorf("ann.tls.test served %s", cn)
	}
	if cn := ca.servedCert(t, tlsAddr, "bob.tls.test").Subject.CommonName; cn != "bob.tls.test" {
		t.Errorf("bob.tls.test served %s", cn)
	}
	if cn := ca.servedCert(t, tlsAddr, "").Subject.CommonName; cn != "ann.tls.test" {
		t.Errorf("no SNI served %s, want the first [[tls]] pair", cn)
	}

	// What the apps see, over HTTP/2 and HTTP/1.1.
	h2 := ca.client(tlsAddr, true)
	seen := seenBy(t, h2, "https://ann.tls.test/")
	if str(seen["label"]) != "ann" || str(seen["wsgi.url_scheme"]) != "https" || str(seen["HTTPS"]) != "on" || str(seen["SERVER_PROTOCOL"]) != "HTTP/2.0" {
		t.Errorf("over HTTP/2 the app saw %v", strOf(seen))
	}
	seen = seenBy(t, ca.client(tlsAddr, false), "https://bob.tls.test/")
	if str(seen["label"]) != "bob" || str(seen["wsgi.url_scheme"]) != "https" || str(seen["HTTPS"]) != "on" || str(seen["SERVER_PROTOCOL"]) != "HTTP/1.1" {
		t.Errorf("over HTTP/1.1 and TLS bob's app saw %v", strOf(seen))
	}
	if code, body := d.get("ann.tls.test", "/"); code != 200 || !strings.Contains(body, `"wsgi.url_scheme": "http"`) || !strings.Contains(body, `"HTTPS": null`) || !strings.Contains(body, `"SERVER_PROTOCOL": "HTTP/1.1"`) {
		t.Errorf("plain HTTP: %d %s", code, body)
	}

	// https_only and hsts (T5): bob's plain-HTTP requests get a 308 to
	// the first TLS listener, but ACME's challenge path; HSTS on https
	// responses only, and only for bob.
	_, tlsPort, _ := net.SplitHostPort(tlsAddr)
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	plainGet := func(host, path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+d.addr+path, nil)
		req.Host = host
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := plainGet("bob.tls.test", "/x?y=1"); resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://bob.tls.test:"+tlsPort+"/x?y=1" {
		t.Errorf("https_only over plain HTTP: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := plainGet("bob.tls.test", "/.well-known/acme-challenge/token"); resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") != "" {
		t.Errorf("the ACME challenge path over plain HTTP: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := plainGet("ann.tls.test", "/"); resp.StatusCode != 200 {
		t.Errorf("ann over plain HTTP: %d", resp.StatusCode)
	}
	for host, want := range map[string]string{"bob.tls.test": "max-age=63072000; includeSubDomains", "ann.tls.test": ""} {
		resp, err := h2.Get("https://" + host + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("Strict-Transport-Security"); resp.StatusCode != 200 || got != want {
			t.Errorf("%s over https: %d, HSTS %q, want %q", host, resp.StatusCode, got, want)
		}
	}

	// A 3 MiB POST over HTTP/2.
	body := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16)
	sum := sha256.Sum256(body)
	resp, err := h2.Post("https://ann.tls.test/upload", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("%d %s", len(body), hex.EncodeToString(sum[:])); resp.Proto != "HTTP/2.0" || string(got) != want {
		t.Errorf("POST 3 MiB: %s %q, want %q", resp.Proto, got, want)
	}

	// The limits hold over HTTP/2: a body over max_body is 413; a large
	// response arrives whole.
	resp, err = h2.Post("https://ann.tls.test/upload", "application/octet-stream", bytes.NewReader(make([]byte, 5<<20)))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("POST 5 MiB over max_body 4MiB: %d", resp.StatusCode)
	}
	resp, err = h2.Get("https://ann.tls.test/big")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 3<<20 || resp.ProtoMajor != 2 {
		t.Errorf("GET 3 MiB over HTTP/2: %d bytes, %v, %s", n, err, resp.Proto)
	}

	// A streamed response arrives in pieces: the first before the app
	// may send the second.
	resp, err = h2.Get("https://ann.tls.test/stream")
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, len("first;"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first;" {
		t.Errorf("the first piece: %q %v", first, err)
	}
	writeOwned(t, ua, filepath.Join(ua.home, "site", "release"), "", 0o644)
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(rest) != "second" {
		t.Errorf("the second piece: %q", rest)
	}
	// A client that cancels a stream mid-response costs that stream only.
	os.Remove(filepath.Join(ua.home, "site", "release"))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://ann.tls.test/stream", nil)
	if resp, err = h2.Do(req); err != nil {
		t.Fatal(err)
	}
	io.ReadFull(resp.Body, first)
	cancel()
	resp.Body.Close()
	writeOwned(t, ua, filepath.Join(ua.home, "site", "release"), "", 0o644)
	if seen := seenBy(t, h2, "https://ann.tls.test/"); str(seen["label"]) != "ann" {
		t.Errorf("after a cancelled stream: %v", strOf(seen))
	}

	// 100 concurrent streams on one connection.
	conns := map[string]bool{}
	var mu sync.Mutex
	errs := make(chan error, 100)
	for range 100 {
		go func() {
			req, _ := http.NewRequest("GET", "https://ann.tls.test/", nil)
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
				mu.Lock()
				conns[i.Conn.LocalAddr().String()] = true
				mu.Unlock()
			}}))
			resp, err := h2.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
					err = fmt.Errorf("%s %d", resp.Proto, resp.StatusCode)
				}
			}
			errs <- err
		}()
	}
	for range 100 {
		if err := <-errs; err != nil {
			t.Errorf("one of 100 streams: %v", err)
		}
	}
	if len(conns) != 1 {
		t.Errorf("100 requests used %d connections, want 1", len(conns))
	}

	// curl --http2, when this curl has HTTP/2.
	if out, err := exec.Command("curl", "-V").Output(); err != nil || !strings.Contains(string(out), "HTTP2") {
		t.Log("curl with HTTP2 not installed: skipped curl --http2")
	} else {
		caFile := filepath.Join(d.base, "ca.pem")
		os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o644)
		_, port, _ := net.SplitHostPort(tlsAddr)
		out, err := exec.Command("curl", "-sS", "--http2", "--cacert", caFile, "--resolve", "bob.tls.test:"+port+":127.0.0.1",
			"-w", "\n%{http_version}", "https://bob.tls.test:"+port+"/").CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"SERVER_PROTOCOL": "HTTP/2.0"`) || !strings.HasSuffix(string(out), "\n2") {
			t.Errorf("curl --http2: %v\n%s", err, out)
		}
	}

	// Renewal: a new certificate in the same files, reload-config; the
	// connection opened before goes on, new handshakes get the new one.
	before := ca.servedCert(t, tlsAddr, "ann.tls.test").SerialNumber
	ca.issue(t, tlsDir, "ann", "ann.tls.test")
	out, err := d.pyctl("", "reload-config")
	if err != nil || !strings.Contains(out, "certificates loaded: 2 [[tls]] pairs") {
		t.Fatalf("reload-config after renewal: %v\n%s", err, out)
	}
	if after := ca.servedCert(t, tlsAddr, "ann.tls.test").SerialNumber; after.Cmp(before) == 0 {
		t.Error("the renewed certificate is not served after reload-config")
	}
	reused := false
	req, _ = http.NewRequest("GET", "https://ann.tls.test/", nil)
	req = req.WithContext(httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}))
	resp, err = h2.Do(req)
	if err != nil {
		t.Fatalf("the connection opened before the reload: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !reused || resp.StatusCode != 200 {
		t.Errorf("after the reload: status %d, connection reused %v; want the old connection to go on", resp.StatusCode, reused)
	}

	// A broken certificate: reported with its file, the old one stays.
	bobBefore := ca.servedCert(t, tlsAddr, "bob.tls.test").SerialNumber
	os.WriteFile(certB, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"), 0o644)
	out, err = d.pyctl("", "reload-config")
	if err == nil || !strings.Contains(out, certB) || !strings.Contains(out, "the certificates in use stay") {
		t.Errorf("reload-config with a broken certificate: %v\n%s", err, out)
	}
	if now := ca.servedCert(t, tlsAddr, "bob.tls.test").SerialNumber; now.Cmp(bobBefore) != 0 {
		t.Error("a broken certificate replaced the running one")
	}
	if seen := seenBy(t, ca.client(tlsAddr, true), "https://bob.tls.test/"); str(seen["label"]) != "bob" {
		t.Errorf("bob after the refused reload: %v", strOf(seen))
	}

	// pyhostd check (T7): a missing file and a key that is not the
	// certificate's are errors, each with its file.
	missing := filepath.Join(tlsDir, "missing.pem")
	d.writeTLSAdmin(tlsAddr, [][2]string{{certA, keyA}, {missing, keyA}, {certA, keyB}}, "", users)
	out, err = d.check()
	if err == nil || !strings.Contains(out, "tls[1]: [[tls]] open "+missing+": no such file or directory") ||
		!strings.Contains(out, "tls[2]: [[tls]] "+keyB+" is not the key of "+certA) {
		t.Errorf("pyhostd check with a missing file and a mismatched key: %v\n%s", err, out)
	}
}

func strOf(m map[string]*string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = str(v)
	}
	return out
}

var servingHTTPSRE = regexp.MustCompile(`on https://([0-9.:]+)/`)

// TestServeTLS: pyhostd serve --tls-cert/--tls-key makes --listen
// HTTPS (HTTP/2 and HTTP/1.1), and one flag without the other is
// refused.
func TestServeTLS(t *testing.T) {
	t.Parallel()
	dir := writeApp(t, map[string]string{"wsgi.py": tlsApp("express")})
	ca := newTestCA(t)
	certFile, keyFile := ca.issue(t, dir, "local", "127.0.0.1", "localhost")
	s := launch(t, dir, serveArgs("--tls-cert", certFile, "--tls-key", keyFile, "wsgi.py")...)
	addr := servingHTTPSRE.FindStringSubmatch(s.waitLine(servingHTTPSRE, 30*time.Second))[1]
	for _, h2 := range []bool{true, false} {
		seen := seenBy(t, ca.client(addr, h2), "https://localhost/")
		want := map[bool]string{true: "HTTP/2.0", false: "HTTP/1.1"}[h2]
		if str(seen["label"]) != "express" || str(seen["wsgi.url_scheme"]) != "https" || str(seen["HTTPS"]) != "on" || str(seen["SERVER_PROTOCOL"]) != want {
			t.Errorf("serve --tls-cert, %s: the app saw %v", want, strOf(seen))
		}
	}
	if cert := ca.servedCert(t, addr, ""); cert.Subject.CommonName != "127.0.0.1" {
		t.Errorf("no SNI: served %s", cert.Subject.CommonName)
	}
	// Plain HTTP on the HTTPS port is not served as a request.
	if code, _, err := getAt(addr, "localhost", "/", nil); err == nil && code == 200 {
		t.Error("plain HTTP was answered 200 on the HTTPS listener")
	}

	half := launch(t, dir, serveArgs("--tls-cert", certFile, "wsgi.py")...)
	if err := half.waitExit(30 * time.Second); err == nil || !strings.Contains(half.out.String(), "--tls-cert needs --tls-key") {
		t.Errorf("--tls-cert alone: %v\n%s", err, half.out)
	}
}
