package master

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/proxymsg"
)

// ACMEDirName is the directory under data_dir where the proxy keeps the
// ACME account and certificates (docs/acme.md).
const ACMEDirName = "acme"

// ACMESetup is [proxy] acme of admin as the proxy gets it, nil when off:
// the CA root read here, as root, and DATA_DIR/acme made the proxy
// user's (prepareACMEDir). The names to certify are not in it: the
// proxy takes them from each routing table, the domains of the apps the
// master admitted under these same Patterns.
func ACMESetup(admin config.Admin, proxy privdrop.Credential) (*proxymsg.ACME, error) {
	a := admin.Proxy.ACME
	if a == nil {
		return nil, nil
	}
	out := &proxymsg.ACME{
		Email:            a.Email,
		CA:               a.CA,
		Dir:              filepath.Join(admin.Daemon.DataDir, ACMEDirName),
		Patterns:         acmePatterns(admin.Users),
		DisableHTTP01:    !a.Offers(config.ChallengeHTTP01),
		DisableTLSALPN01: !a.Offers(config.ChallengeTLSALPN01),
	}
	if a.CARoot != "" {
		pem, err := ReadACMERoot(a.CARoot)
		if err != nil {
			return nil, err
		}
		out.CARootPEM = pem
	}
	if err := prepareACMEDir(admin.Daemon.DataDir, out.Dir, proxy); err != nil {
		return nil, err
	}
	return out, nil
}

// ReadACMERoot reads [proxy] acme ca_root and checks it holds at least
// one certificate: pyhostd check, run and reload-config judge it alike.
func ReadACMERoot(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("[proxy] acme ca_root: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("[proxy] acme ca_root: %s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("[proxy] acme ca_root: %s: %w", path, err)
	}
	if len(b) > 1<<20 || !x509.NewCertPool().AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("[proxy] acme ca_root: %s holds no PEM certificate", path)
	}
	return b, nil
}

// acmePatterns is every user's domain patterns, once each, sorted: the
// proxy's own check of a name before it asks the CA (config.DomainAllowed
// over these). A name an app claimed passed its owner's patterns, so it
// passes the union; the union is the check that holds even if the
// routing table carried a name no admin pattern allows.
func acmePatterns(users map[string]config.UserPolicy) []string {
	var out []string
	for _, u := range users {
		out = append(out, u.Domains...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// prepareACMEDir makes dir (DATA_DIR/acme) a directory of the proxy's
// user, mode 0700, which only that user (and root) can enter, and lets
// the proxy's user through dataDir to it: data_dir is made 0711 (search,
// no listing; the claims ledger in it stays 0600). A data_dir made 0700
// by an older version is fixed up here. The master never reads dir.
func prepareACMEDir(dataDir, dir string, proxy privdrop.Credential) error {
	fi, err := os.Stat(dataDir)
	if err != nil {
		return fmt.Errorf("[proxy] acme: data_dir: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o011 != 0o011 {
		if err := os.Chmod(dataDir, perm|0o011); err != nil {
			return fmt.Errorf("[proxy] acme: data_dir: %w", err)
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("[proxy] acme: %w", err)
	}
	n, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("[proxy] acme: %w", err)
	}
	if !n.IsDir() {
		return fmt.Errorf("[proxy] acme: %s is not a directory; move it away", dir)
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(dir, int(proxy.UID), int(proxy.GID)); err != nil {
			return fmt.Errorf("[proxy] acme: %w", err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("[proxy] acme: %w", err)
	}
	return nil
}

// acmeSettings is the ACME config the proxy should run with now; nil
// when off, or when it cannot be prepared (logged: the proxy then serves
// its [[tls]] certificates alone).
func (m *Master) acmeSettings() *proxymsg.ACME {
	a, err := m.catalog.ACME()
	if err != nil {
		m.log.Error("automatic certificates are off until this is fixed", "error", err)
		return nil
	}
	return a
}

// reloadACME sends the ACME settings in force to the proxy (reload-config,
// after the admin config was adopted). The proxy keeps its certificate
// manager when only the patterns changed, and makes a new one when the
// account or the CA did.
func (m *Master) reloadACME(progress func(string)) {
	a := m.acmeSettings()
	m.proxyMu.Lock()
	defer m.proxyMu.Unlock()
	if m.proxyCh == nil {
		return // the next proxy's Setup carries them
	}
	if err := m.proxyCh.Send(proxymsg.Message{ACME: &proxymsg.ACMEConfig{ACME: a}}); err != nil {
		m.log.Warn("cannot send the ACME settings to the proxy; its successor gets them", "error", err)
		return
	}
	if a != nil && progress != nil {
		progress(fmt.Sprintf("automatic certificates from %s", a.CA))
	}
}
